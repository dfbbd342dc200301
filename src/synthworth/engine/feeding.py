"""Feeding a Dataset to the training loop: batches read in one go, in a seeded order that any
position of any epoch can be re-created from (exact resume without replaying the data)."""

from __future__ import annotations

import numpy as np
import torch

from synthworth.data.dataset import Dataset


class TorchView(torch.utils.data.Dataset):
    """A Dataset as a map-style torch dataset whose batches are read in one go.

    ``__getitems__`` (used by ``DataLoader`` for a whole batch of indices) reads all rows with
    one sorted, memory-mapped fancy index instead of N single reads.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.__getitems__([i])

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        images = self.dataset.take(indices)  # (b, H, W, C) uint8
        labels = self.dataset.labels[np.asarray(indices)]
        return torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(labels)


def as_is(batch):
    """The collate function of a loader whose dataset returns whole batches."""
    return batch


class EpochBatchSampler:
    """Seeded batch order: epoch ``e`` is a permutation drawn from ``(seed, e)``, so any
    position of any epoch can be re-created on resume without replaying the data."""

    def __init__(self, size: int, batch_size: int, seed: int, drop_last: bool = True):
        self.size, self.batch_size, self.seed, self.drop_last = size, batch_size, seed, drop_last
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start_batch: int) -> None:
        self.epoch, self.start = epoch, start_batch

    def batches_per_epoch(self) -> int:
        full, rest = divmod(self.size, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() - self.start)

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        for b in range(self.start, self.batches_per_epoch()):
            yield order[b * self.batch_size:(b + 1) * self.batch_size].tolist()
