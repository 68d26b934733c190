"""torchrun-aware process groups, device choice and per-rank data shards.

`init_distributed()` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT) and falls back to a single process; nccl on GPUs, gloo on CPU. Only rank 0
writes files. Training shards are drawn by `ShardedInfiniteSampler`, whose position is a
pure function of the iteration, so a resumed run draws exactly what an unbroken one would.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly one-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # we created the process group, so we destroy it

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """`auto`: this rank's GPU when CUDA is available, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    return dev


def init_distributed(device: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Join torchrun's process group (or reuse one already set up); one process otherwise."""
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        return DistInfo(rank, world, local, local_world, pick_device(device, local), owns_group=False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return DistInfo(device=pick_device(device, 0))
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    dev = pick_device(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s))
    if dev.type == "cpu":
        # One process per core group: without this every rank starts a thread per core.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return DistInfo(rank, world, local, local_world, dev, owns_group=True)


def shutdown(info: DistInfo) -> None:
    if info.owns_group and dist.is_initialized():
        # No rank may tear gloo down while a peer is still inside a collective: that races the
        # peer's background threads and can abort it (SIGABRT) at exit.
        dist.barrier()
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_gather_objects(info: DistInfo, obj: Any) -> list[Any]:
    """Every rank's object, in rank order (a one-element list without a process group)."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(info: DistInfo, obj: Any) -> Any:
    """Rank 0's object on every rank."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_flag(info: DistInfo, *flags: bool) -> list[bool]:
    """For each flag, whether any rank raised it (one small all-reduce)."""
    if not info.distributed:
        return [bool(f) for f in flags]
    t = torch.tensor([float(f) for f in flags], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def draw_seed(seed: int, rank: int, position: int) -> int:
    """A 63-bit seed for the augmentation of one draw (SplitMix64 of its coordinates)."""
    x = (seed * 0x9E3779B97F4A7C15 + rank * 0xBF58476D1CE4E5B9 + position) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (x ^ (x >> 31)) >> 1


class ShardedInfiniteSampler(torch.utils.data.Sampler):
    """Endless (index, augmentation seed) draws for one rank.

    Epoch e is a permutation of the data set (seeded by seed and e), padded to a multiple of
    the world size by repeating its head, and rank r takes positions r, r + W, ... (as
    DistributedSampler does), so ranks see disjoint shards of each epoch. `start` skips the
    first draws: a run resumed at iteration i starts at i * per-rank batch.
    """

    def __init__(self, size: int, *, rank: int = 0, world_size: int = 1, seed: int = 0, start: int = 0):
        if size < 1:
            raise ValueError("cannot sample from an empty data set")
        self.size, self.rank, self.world_size = size, rank, world_size
        self.seed, self.start = seed, start
        self.per_rank = math.ceil(size / world_size)

    def epoch_indices(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        perm = torch.randperm(self.size, generator=g).tolist()
        total = self.per_rank * self.world_size
        perm += perm[: total - len(perm)]
        return perm[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start
        epoch, offset = divmod(position, self.per_rank)
        while True:
            for index in self.epoch_indices(epoch)[offset:]:
                yield index, draw_seed(self.seed, self.rank, position)
                position += 1
            epoch, offset = epoch + 1, 0


class SeededDraws(torch.utils.data.Dataset):
    """Wrap a dataset with `reseed(seed)` so that a key (index, seed) fixes the augmentation."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        self.dataset.reseed(seed)
        return self.dataset[index]


def shard(items: list[Any], info: DistInfo) -> list[Any]:
    """This rank's share of a list for evaluation: every item on exactly one rank, no padding."""
    return items[info.rank :: info.world_size]
