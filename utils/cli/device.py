"""Device selection shared by train.py, test.py and detect.py."""
from __future__ import annotations

import torch

from utils.config import ConfigError


def select_device(spec: str, local_rank: int = -1) -> torch.device:
    """``cpu``; ``0`` / ``0,1`` (first index) / ``cuda`` / ``cuda:N``; ``''`` = CUDA when available.

    Under DDP (``local_rank >= 0``) each process takes its local GPU. A CUDA request on a machine
    without CUDA is a ConfigError.
    """
    spec = str(spec).strip().lower()
    if spec == "cpu" or (spec == "" and not torch.cuda.is_available()):
        return torch.device("cpu")
    index = spec.split(":", 1)[1] if spec.startswith("cuda") and ":" in spec else (spec.split(",")[0] or "0")
    if spec != "cuda" and not index.isdigit():
        raise ConfigError(f"--device {spec!r}: expected cpu, an index like 0, or cuda:0")
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {spec}: CUDA is not available on this machine (use --device cpu)")
    if local_rank >= 0:
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    n = torch.cuda.device_count()
    if spec != "cuda" and int(index) >= n:
        raise ConfigError(f"--device {spec}: this machine has {n} CUDA device(s) (0-{n - 1})")
    return torch.device("cuda", 0 if spec == "cuda" else int(index))
