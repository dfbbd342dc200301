"""Shared fixtures: small images written into tmp_path by the tests, and a quiet, fast prepare().

Nothing here downloads anything: every source layout is rebuilt in miniature from Pillow images.
Classes get solid, well-separated colours so a test can check that each prepared image still sits
next to its own label after sorting, filtering, skipping and parallel decoding.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthworth.data.dataset import Dataset
from synthworth.data.prepare import PrepareConfig, prepare

# 'study run' and the demo default to one worker process per core; the suite's studies are tiny
# and some tests patch functions in this process, so they run serially unless a test asks for
# workers (tests/study/test_study_executors.py does, and checks the default without this).
os.environ.setdefault("SYNTHWORTH_WORKERS", "1")

# Solid colours far apart in RGB, so JPEG noise and resizing never make one look like another.
PALETTE = [
    (220, 30, 30), (30, 200, 40), (30, 40, 220), (230, 220, 30),
    (200, 40, 210), (30, 210, 210), (250, 140, 20), (120, 120, 120),
]


def _pixels(size: tuple[int, int], colour, seed: int | None) -> np.ndarray:
    w, h = size
    if colour is not None:
        return np.broadcast_to(np.asarray(colour, np.uint8), (h, w, 3)).copy()
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def make_image():
    """``make_image(path, size=(w, h), colour=None, seed=0, mode="RGB", **save_kwargs)``.

    Writes an image (solid ``colour``, or seeded noise when ``colour`` is None) and returns its
    path. The format follows the extension unless ``format=`` is given.
    """

    def make(path, size=(12, 10), colour=None, seed=0, mode="RGB", **save_kwargs) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(_pixels(size, colour, seed))
        if mode != "RGB":
            img = img.convert(mode)
        img.save(path, **save_kwargs)
        return path

    return make


@pytest.fixture
def class_tree(make_image):
    """``class_tree(root, {"cat": 3, "dog": 2}, ext=".png", colours=None, noise=False)``.

    One folder per class under ``root`` with that many images. Each class is one solid colour
    (``colours[name]`` or the next PALETTE entry in sorted order) unless ``noise`` is set, in
    which case every image is distinct seeded noise. Returns ``{class: colour}``.
    """

    def make(root, counts: dict[str, int], ext: str = ".png", colours=None, noise=False,
             size=(12, 10), seed=0) -> dict[str, tuple[int, int, int]]:
        root = Path(root)
        colours = dict(colours or {})
        for j, name in enumerate(sorted(counts)):
            colours.setdefault(name, PALETTE[j % len(PALETTE)])
            for k in range(counts[name]):
                make_image(root / name / f"img_{k:03d}{ext}", size=size,
                           colour=None if noise else colours[name], seed=seed + 1000 * j + k)
        return colours

    return make


@pytest.fixture
def run_prepare(tmp_path):
    """``run_prepare(out=None, *, overwrite=False, progress=False, **options)``.

    ``prepare()`` with ``workers=0`` (decoding in this process: fast and monkeypatchable)
    unless the test asks for workers; ``out`` defaults to ``tmp_path / "prepared"``.
    """

    def run(out=None, *, overwrite=False, progress=False, **options) -> Dataset:
        options.setdefault("workers", 0)
        if isinstance(options.get("path"), os.PathLike):
            options["path"] = str(options["path"])
        config = PrepareConfig(**options)
        return prepare(config, out if out is not None else tmp_path / "prepared",
                       overwrite=overwrite, progress=progress)

    return run


@pytest.fixture
def assert_colours():
    """``assert_colours(ds, {class: colour}, tol=12)``: every image's mean colour is its class's."""

    def check(ds: Dataset, colours: dict[str, tuple[int, int, int]], tol: float = 12) -> None:
        images = ds.take(np.arange(len(ds))).astype(np.float64)
        means = images.mean(axis=(1, 2))
        for i, label in enumerate(ds.labels):
            want = np.asarray(colours[ds.class_names[int(label)]], np.float64)
            assert np.abs(means[i] - want).max() <= tol, (
                f"image {i} labelled {ds.class_names[int(label)]} has mean colour {means[i]}, "
                f"expected about {want}")

    return check


@pytest.fixture
def animals10_download(class_tree, tmp_path):
    """The Kaggle Animals-10 layout: ROOT/translate.py and ROOT/raw-img/<italian class>/*.jpeg."""
    root = tmp_path / "animals10"
    colours = class_tree(root / "raw-img", {"cane": 3, "gatto": 2, "ragno": 4}, ext=".jpeg")
    (root / "translate.py").write_text("translate = {'cane': 'dog'}\n", encoding="utf-8")
    return root, colours


@pytest.fixture
def fruits_download(class_tree, tmp_path):
    """The Kaggle Fruits Classification layout: ROOT/Fruits Classification/{train,valid,test}/<Class>/."""
    root = tmp_path / "fruits"
    base = root / "Fruits Classification"
    colours = {"Apple": PALETTE[0], "Banana": PALETTE[3], "Grape": PALETTE[4]}
    counts = {"train": 5, "valid": 2, "test": 3}
    for split, n in counts.items():
        class_tree(base / split, {c: n for c in colours}, ext=".jpeg", colours=colours)
    return root, {c.lower(): v for c, v in colours.items()}, counts


@pytest.fixture
def celeba_download(make_image, tmp_path):
    """The Kaggle CelebA layout, 12 images: nested img_align_celeba folders and the csv files."""
    root = tmp_path / "celeba"
    images = root / "img_align_celeba" / "img_align_celeba"
    names = [f"{i:06d}.jpg" for i in range(1, 13)]
    partition = {n: str(p) for n, p in zip(names, [0] * 6 + [1] * 3 + [2] * 3)}
    smiling = {n: (1 if i % 3 == 0 else -1) for i, n in enumerate(names)}
    for i, name in enumerate(names):
        # Smiling faces bright, the others dark: the label can be checked from the pixels.
        make_image(images / name, size=(18, 22), colour=(230, 230, 230) if smiling[name] > 0 else (20, 20, 20))
    with open(root / "list_eval_partition.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id", "partition"])
        w.writerows([n, partition[n]] for n in names)
    attrs = ["5_o_Clock_Shadow", "Arched_Eyebrows", "Smiling", "Young"]
    with open(root / "list_attr_celeba.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id"] + attrs)
        w.writerows([n, -1, 1, smiling[n], 1] for n in names)
    with open(root / "list_bbox_celeba.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id", "x_1", "y_1", "width", "height"])
        w.writerows([n, 95, 71, 226, 313] for n in names)
    with open(root / "list_landmarks_align_celeba.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id", "lefteye_x", "lefteye_y"])
        w.writerows([n, 69, 109] for n in names)
    return root, partition, smiling


@pytest.fixture
def single_thread():
    """Torch on one thread for the duration of a test: tiny networks on a busy 2-core machine run
    several times faster without intra-op threading."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits16(tmp_path_factory):
    """The bundled digits at 16x16 grayscale (1,437 train / 360 test), prepared once per session."""
    return prepare(PrepareConfig(source="digits", size=16, fit="stretch", workers=0),
                   tmp_path_factory.mktemp("digits") / "digits16", progress=False)


def packed_subset(dataset, per_class: int, out):
    """``per_class`` training images of each class of ``dataset``, written as a packed folder."""
    from synthworth.data.compose import subset
    from synthworth.data.dataset import atomic_folder, write_packed

    part = subset(dataset.split("train"), per_class=per_class, seed=0)
    with atomic_folder(out, kind="dataset") as tmp:
        write_packed(tmp, part.take(range(len(part))), part.labels, part.splits, part.class_names,
                     [{} for _ in range(len(part))], {"kind": "test"})
    return Dataset.open(out)


@pytest.fixture(scope="session")
def pack_subset():
    """:func:`packed_subset`, for tests in other folders."""
    return packed_subset


@pytest.fixture(scope="session")
def digits_small(digits16, tmp_path_factory):
    """A 160-image labelled training Dataset (16 per class) written as its own packed folder."""
    return packed_subset(digits16, 16, tmp_path_factory.mktemp("digits-small") / "ds")


@pytest.fixture
def lock_holder():
    """``lock_holder(folder) -> process``: another process holds synthworth's output lock on
    ``folder`` (as a second synthworth command would) until it is killed or the test ends."""
    import subprocess
    import sys
    import textwrap

    procs = []

    def hold(folder) -> subprocess.Popen:
        code = textwrap.dedent(f"""
            import time
            from synthworth import safety
            with safety.output_lock({str(folder)!r}):
                print("locked", flush=True)
                time.sleep(120)
        """)
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 and an empty Hugging Face cache under tmp_path (never the user's)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("SYNTHWORTH_DINOV2_WEIGHTS", raising=False)
    # The library reads these once, at import: set its copies for this test too.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster of 2 CPUs, shared by the tests of one module."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def hf_datasets(tmp_path, monkeypatch):
    """`datasets`, offline, with its caches under tmp_path (never the home cache)."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-home" / "datasets"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    # The variables are read when `datasets` is first imported; set the flag for this test too.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    datasets.disable_progress_bars()
    return datasets


@pytest.fixture
def hf(hf_datasets, tmp_path):
    """``hf(folder, style)``: a folder loaded as the Hub would ("repository": the folder as a
    dataset repository, with its card) or as ``imagefolder`` (``data_dir=``); ``hf.datasets``."""
    def load(folder, style: str):
        cache = str(tmp_path / "hf-cache" / style)
        if style == "repository":
            return hf_datasets.load_dataset(str(folder), cache_dir=cache)
        return hf_datasets.load_dataset("imagefolder", data_dir=str(folder), cache_dir=cache)

    load.datasets = hf_datasets
    return load


class FakeRay:
    """The part of Ray's API the study's executor uses, run in this process: a task runs when it is
    submitted, and every ``options(...)`` request is recorded (``requests``). ``cluster`` is what
    ``cluster_resources()`` answers. For checking what synthworth asks of Ray without a cluster."""

    class RayError(Exception):
        pass

    class RayTaskError(RayError):
        def __init__(self, cause: BaseException):
            super().__init__(str(cause))
            self.cause = cause

    def __init__(self, cluster: dict[str, float]):
        from types import SimpleNamespace

        self.cluster = dict(cluster)
        self.requests: list[dict] = []
        self.sessions: list[tuple] = []  # (address, workers) of each ray_session opened
        self.exceptions = SimpleNamespace(RayError=self.RayError, RayTaskError=self.RayTaskError)

    def cluster_resources(self) -> dict[str, float]:
        return dict(self.cluster)

    def remote(self, fn):
        fake = self

        class Task:
            def options(self, **kwargs):
                fake.requests.append(kwargs)
                return self

            def remote(self, *args):
                ref = Ref()  # compared by identity, as Ray's object refs are
                try:
                    ref.value = fn(*args)
                except Exception as exc:  # noqa: BLE001 - Ray hands it back from get()
                    ref.error = exc
                return ref

        class Ref:
            value = error = None

        return Task()

    def wait(self, refs, num_returns=1):
        return list(refs[:num_returns]), list(refs[num_returns:])

    def get(self, ref):
        if ref.error is not None:
            raise self.RayTaskError(ref.error)
        return ref.value

    def cancel(self, ref, force=False):
        pass


@pytest.fixture
def fake_ray(monkeypatch):
    """``fake_ray(cluster)`` -> a :class:`FakeRay` that ``study run --executor ray`` uses instead of
    Ray (``synthworth.procs.import_ray`` and the executor's ``ray_session`` are patched)."""
    import contextlib

    import torch

    import synthworth.procs as procs
    import synthworth.study.executors as executors

    threads = torch.get_num_threads()  # the cells run here and set the thread count of this process

    def make(cluster: dict[str, float]) -> FakeRay:
        fake = FakeRay(cluster)

        @contextlib.contextmanager
        def session(address, workers):
            fake.sessions.append((address, workers))
            yield fake

        monkeypatch.setattr(procs, "import_ray", lambda: fake)
        monkeypatch.setattr(executors, "ray_session", session)
        return fake

    yield make
    torch.set_num_threads(threads)
