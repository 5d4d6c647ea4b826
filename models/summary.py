"""Model statistics: parameter counts, GFLOPs, and the per-layer table in the seeds' format."""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def count_parameters(model: nn.Module) -> tuple[int, int, int]:
    """``(parameter tensors, parameters, trainable parameters)`` — the seeds' "layers" are tensors."""
    params = list(model.parameters())
    return len(params), sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def gflops(model: nn.Module, img_size: int, ch: int = 3) -> float:
    """Forward GFLOPs (2 x multiply-accumulates of conv/matmul) at ``img_size`` x ``img_size``."""
    from torch.utils.flop_counter import FlopCounterMode

    m = copy.deepcopy(model).eval()
    p = next(model.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        m(torch.zeros(1, ch, img_size, img_size, device=p.device, dtype=p.dtype))
    return counter.get_total_flops() / 1e9


def model_info(model: nn.Module, img_size: int | None = 640) -> dict[str, Any]:
    layers, n_p, n_g = count_parameters(model)
    info = {"layers": layers, "parameters": n_p, "gradients": n_g}
    if img_size:
        info["gflops"] = gflops(model, img_size)
        info["img_size"] = img_size
    return info


def format_table(model: nn.Module) -> list[str]:
    """``from  n  params  module  arguments`` lines, one per YAML row (the seeds' layout)."""
    lines = [f"{'':>3}{'from':>18}{'n':>3}{'params':>10}  {'module':<40}{'arguments':<30}"]
    for i, row in enumerate(model.rows):
        lines.append(f"{i:>3}{str(row['from']):>18}{row['n']:>3}{row['params']:10.0f}  "
                     f"{row['module']:<40}{str(row['args']):<30}")
    return lines


def summary_line(info: dict[str, Any]) -> str:
    s = f"Model Summary: {info['layers']} layers, {info['parameters']} parameters, {info['gradients']} gradients"
    if "gflops" in info:
        s += f", {info['gflops']:.1f} GFLOPs at {info['img_size']}"
    return s


def print_table(model: nn.Module, img_size: int | None = 640) -> None:
    for line in format_table(model):
        print(line)
    print(summary_line(model_info(model, img_size)))
