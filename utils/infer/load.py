"""A trained checkpoint made ready to run: fused, in eval mode, with its class names."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from utils.train.checkpoint import CheckpointError, load_model


def load_fused(weights: str | Path) -> tuple[nn.Module, dict]:
    """Checkpoint -> ``(Conv+BN fused eval model on the CPU, checkpoint dict)``; a malformed
    checkpoint is a CheckpointError that names the file and the first line of what went wrong."""
    try:
        model, ckpt = load_model(weights, device="cpu")
    except (KeyError, RuntimeError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{weights}: checkpoint does not hold a usable model "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return model.fuse().eval(), ckpt


def load_detector(weights: str, device: torch.device, half: bool) -> tuple[nn.Module, dict]:
    """Checkpoint -> ``(fused eval model on device, checkpoint dict)`` as detect.py and test.py run it."""
    model, ckpt = load_fused(weights)
    # NHWC convolutions: measured 1.27-1.75x faster fused inference on CPU (RESULTS.md)
    model = model.to(device).eval().to(memory_format=torch.channels_last)
    model = model.half() if half else model
    if device.type == "cuda":  # first CUDA calls (cuDNN autotuning) would distort the speed summary
        with torch.inference_mode():
            model(torch.zeros(1, 3, 64, 64, device=device, dtype=next(model.parameters()).dtype))
    return model, ckpt


def class_names(ckpt: dict, nc: int) -> list[str]:
    """The checkpoint's ``names`` (a list, or a dict keyed by index) when it has ``nc`` of them,
    else ``['0', '1', ...]``."""
    names = ckpt.get("names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    return list(names) if isinstance(names, (list, tuple)) and len(names) == nc else [str(i) for i in range(nc)]
