"""Distributed training helpers for ``torchrun`` (one process per device; gloo on CPU, NCCL on CUDA)."""
from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist


def world() -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)`` from torchrun's environment; ``(-1, -1, 1)`` when single-process."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return -1, -1, 1
    return int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ["WORLD_SIZE"])


def init(device: torch.device) -> None:
    """Join the process group (torchrun provides MASTER_ADDR/PORT, RANK, WORLD_SIZE)."""
    if dist.is_initialized():
        return
    # a long timeout: rank 0 may fetch a dataset (train.py --download) while the others wait at a barrier
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=timedelta(hours=3))


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup() -> None:
    """Leave the process group at the end of a torchrun run (a no-op when single-process)."""
    if dist.is_initialized():
        dist.destroy_process_group()
