"""A seeded, optionally distributed sampler that yields ``(record index, sample seed, mosaic)`` keys.

Giving each sample its own seed (drawn in the main process) makes augmentation independent of
which worker process builds the sample, so a fixed seed reproduces the same batches with any
number of workers. Without :meth:`SeededSampler.set_epoch` the epoch advances by one at each
pass, so orders differ between epochs even when the training loop forgets to call it. The third
item says whether the sample may be a mosaic (:meth:`SeededSampler.set_mosaic`): it travels with the
key, so persistent worker processes see the switch without being rebuilt.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


class SeededSampler(Sampler):
    """Order (shuffled or ``order``) + one int seed per sample, sharded over ``world_size`` ranks.

    Args:
        n: dataset length.
        shuffle: permute the order every epoch (seeded by ``seed + epoch``).
        seed: base seed.
        rank: this process's rank (``-1`` or ``0`` with ``world_size`` 1: no sharding).
        world_size: number of processes; every rank gets ``ceil(n / world_size)`` samples (the
            order is padded by repeating its start, as ``DistributedSampler`` does).
        order: the unshuffled order (rectangular batches pass the aspect-ratio order).
        contiguous: shard in contiguous blocks instead of ``rank::world_size`` (keeps rect batches).
    """

    def __init__(self, n: int, shuffle: bool, seed: int = 0, rank: int = -1, world_size: int = 1,
                 order: np.ndarray | None = None, contiguous: bool = False):
        self.n, self.shuffle, self.seed = n, shuffle, int(seed)
        self.rank, self.world_size = max(rank, 0), max(world_size, 1)
        self.order = torch.as_tensor(order if order is not None else np.arange(n), dtype=torch.int64)
        self.contiguous = contiguous
        self.num_samples = math.ceil(n / self.world_size)
        self.epoch, self._explicit_epoch = 0, False
        self.mosaic = True

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._explicit_epoch = int(epoch), True

    def set_mosaic(self, on: bool) -> None:
        """Whether the samples of the next passes may be mosaics (hyp ``close_mosaic`` turns it off)."""
        self.mosaic = bool(on)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int, bool]]:
        g = torch.Generator()
        g.manual_seed(self.seed * 100_003 + self.epoch)
        order = self.order[torch.randperm(self.n, generator=g)] if self.shuffle else self.order
        seeds = torch.randint(0, 2**31 - 1, (self.n,), generator=g)
        total = self.num_samples * self.world_size
        if total > self.n:  # pad by repeating the start (DistributedSampler semantics)
            reps = math.ceil(total / self.n)
            order, seeds = order.repeat(reps)[:total], seeds.repeat(reps)[:total]
        if self.contiguous:
            sl = slice(self.rank * self.num_samples, (self.rank + 1) * self.num_samples)
        else:
            sl = slice(self.rank, total, self.world_size)
        if not self._explicit_epoch:
            self.epoch += 1
        return iter(zip(order[sl].tolist(), seeds[sl].tolist(), itertools.repeat(self.mosaic)))
