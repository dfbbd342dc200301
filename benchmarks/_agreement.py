"""The classifier-agreement score of digits generators (shared by the benchmarks).

A small CNN is trained on the REAL bundled digits train split, prepared by synthworth exactly as
the generators see it (16x16 grayscale, ``fit=stretch``, the ``digits`` data preset), and checked
on the real test split (it must reach >= 97 %). A generator is then scored by sampling N images
with class-balanced labels: the score is the share the classifier labels as the class each
image was generated for ("agreement"). 100 % means every sample is a recognisable digit of the
intended class; 10 % is chance.

Not a benchmark itself (the leading underscore keeps it apart from ``bench_*.py``).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

MIN_JUDGE_ACCURACY = 0.97


def prepare_digits(out: str | Path, size: int = 16):
    """The bundled digits as a synthworth Dataset at ``size`` (the ``digits`` data preset)."""
    from synthworth.data.prepare import PrepareConfig, prepare

    return prepare(PrepareConfig(source="digits", size=size, fit="stretch", resample="bicubic",
                                 test_fraction=0.2, seed=0, workers=0), out, progress=False)


def balanced_labels(n: int, num_classes: int) -> np.ndarray:
    """``n`` labels cycling through the classes (counts differ by at most one)."""
    return np.arange(n) % num_classes


class _Net(nn.Module):
    def __init__(self, channels: int, size: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * (size // 4) ** 2, 128),
                                  nn.ReLU(), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _to_input(images: np.ndarray) -> torch.Tensor:
    """(n, H, W, C) uint8 -> (n, C, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _all_shifts(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    """(S, n, C, H, W): every translation of ``x`` by up to ``max_shift`` pixels in x and y
    (the uncovered border is background, -1); index 0 is the unshifted image."""
    _, _, h, w = x.shape
    padded = nn.functional.pad(x, (max_shift,) * 4, value=-1.0)
    offsets = [(max_shift, max_shift)] + [(dy, dx) for dy in range(2 * max_shift + 1)
                                          for dx in range(2 * max_shift + 1) if (dy, dx) != (max_shift, max_shift)]
    return torch.stack([padded[:, :, dy:dy + h, dx:dx + w] for dy, dx in offsets])


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run with ``n`` torch threads (None: unchanged), then restore."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Judge:
    """A digits classifier trained on real images; :meth:`score` gives the agreement."""

    net: _Net
    class_names: list[str]
    resolution: int
    channels: int
    test_accuracy: float
    train_seconds: float

    @torch.no_grad()
    def predict(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.shape[1:] != (self.resolution, self.resolution, self.channels):
            raise ValueError(f"expected uint8 (n, {self.resolution}, {self.resolution}, {self.channels}) "
                             f"images, got {images.dtype} {images.shape}")
        self.net.eval()
        out = [self.net(_to_input(images[i:i + batch_size])).argmax(1).numpy()
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def score(self, images: np.ndarray, labels: np.ndarray) -> float:
        """Share of ``images`` classified as their intended ``labels``."""
        labels = np.asarray(labels)
        return float((self.predict(images) == labels).mean())

    def per_class(self, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        pred, labels = self.predict(images), np.asarray(labels)
        return {name: float((pred[labels == k] == k).mean()) if (labels == k).any() else float("nan")
                for k, name in enumerate(self.class_names)}

    def describe(self) -> str:
        return (f"agreement judge: CNN trained on the real digits train split in {self.train_seconds:.1f} s, "
                f"accuracy on the real test split {self.test_accuracy:.1%} (required >= {MIN_JUDGE_ACCURACY:.0%})")


def train_judge(dataset, *, epochs: int = 12, seed: int = 0, threads: int | None = 1) -> Judge:
    """Train the agreement classifier on ``dataset``'s train split; check it on its test split.
    One torch thread by default: this small network trains faster that way on a shared 2-core CPU."""
    t0 = time.perf_counter()
    train, test = dataset.split("train"), dataset.split("test")
    with torch_threads(threads):
        net = train_cnn(train.take(np.arange(len(train))), train.labels, dataset.num_classes,
                        epochs=epochs, seed=seed)
    judge = Judge(net, list(dataset.class_names), dataset.resolution, dataset.channels, 0.0,
                  time.perf_counter() - t0)
    judge.test_accuracy = judge.score(test.take(np.arange(len(test))), test.labels)
    if judge.test_accuracy < MIN_JUDGE_ACCURACY:
        raise RuntimeError(f"the agreement classifier reached only {judge.test_accuracy:.1%} on the real "
                           f"test split (needs >= {MIN_JUDGE_ACCURACY:.0%}); its scores would not mean much")
    return judge


def train_cnn(images: np.ndarray, labels: np.ndarray, num_classes: int, *, epochs: int = 12, seed: int = 0,
              batch_size: int = 64, max_shift: int = 1) -> _Net:
    """The judge's CNN trained on uint8 (n, H, W, C) ``images`` (random shifts of up to
    ``max_shift`` pixels as augmentation; Adam with a one-cycle schedule)."""
    x_train = _all_shifts(_to_input(images), max_shift)
    y_train = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = _Net(images.shape[-1], images.shape[1], num_classes)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    steps_per_epoch = -(-len(y_train) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(y_train), generator=gen)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            xb = x_train[torch.randint(0, len(x_train), (len(idx),), generator=gen), idx]
            loss = loss_fn(net(xb), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


@torch.no_grad()
def train_synthetic_test_real(images: np.ndarray, labels: np.ndarray, dataset, *, seed: int = 0,
                              threads: int | None = 1) -> float:
    """Accuracy on ``dataset``'s REAL test split of the judge's CNN trained on ``images`` only
    (train on synthetic, test on real: fidelity AND diversity; a generator that repeats one
    good digit per class scores high agreement but low here)."""
    test = dataset.split("test")
    with torch_threads(threads), torch.enable_grad():
        net = train_cnn(np.asarray(images), labels, dataset.num_classes, seed=seed)
    x = _to_input(test.take(np.arange(len(test))))
    return float((net(x).argmax(1).numpy() == test.labels).mean())


def score_generator(judge: Judge, generator, n: int, *, seed: int = 0,
                    **sample_options) -> tuple[float, float, np.ndarray]:
    """Sample ``n`` class-balanced images (labels ``balanced_labels(n, k)``) from ``generator``;
    (agreement, sampling seconds, images)."""
    labels = balanced_labels(n, len(judge.class_names))
    t0 = time.perf_counter()
    images = generator.sample(n, labels, seed=seed, **sample_options)
    seconds = time.perf_counter() - t0
    return judge.score(images, labels), seconds, images


def real_reference(dataset, n: int, *, seed: int = 0) -> float:
    """:func:`train_synthetic_test_real` on ``n`` class-balanced REAL training images: the
    figure a perfect generator's ``n`` images would reach."""
    train = dataset.split("train")
    rng = np.random.default_rng(seed)
    k = dataset.num_classes
    picks = [rng.permutation(np.flatnonzero(train.labels == c)) for c in range(k)]
    labels = balanced_labels(n, k)
    idx = np.array([picks[c][i // k] for i, c in enumerate(labels)])
    return train_synthetic_test_real(train.take(idx), labels, dataset, seed=seed)
