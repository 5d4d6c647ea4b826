"""Optimiser construction, learning-rate schedules and warm-up (all driven by the Hyp object).

Schedules give a multiplier of ``lr0`` as a function of the epoch (seed 003's recipes included):

* ``linear``: from 1 down to ``lrf`` at the last epoch (yolov5's default).
* ``cosine``: ``lrf + (1 - lrf) * (1 + cos(pi * epoch / epochs)) / 2`` (cosine annealing with
  ``eta_max = lr0``, ``eta_min = lr0 * lrf``, ``T_max = epochs``).
* ``poly``: ``(1 - epoch / epochs) ** lr_power`` (darknet's polynomial decay; seed 004: power 4).
* ``step``: ``lr0`` until the first ``(epoch, lr)`` entry of ``lr_steps``, then that lr, etc.
  (seed 003: 1e-4, 5e-5 from epoch 30, 1e-5 from epoch 50).

Warm-up runs for ``warmup_epochs`` worth of iterations (at least ``warmup_min_iters``, as yolov5):
weights and BN lrs rise from 0, bias lr falls from ``warmup_bias_lr``, SGD momentum rises from
``warmup_momentum``, and the batches accumulated per optimiser step rise from 1 to ``nbs / batch``,
all linearly.
The lr is set from these pure functions every iteration, so there is no scheduler state to save.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from utils.config import Hyp


def lr_factor(hyp: Hyp, epochs: int, epoch: float) -> float:
    """Multiplier of ``hyp.lr0`` at ``epoch`` (0-based) of ``epochs``."""
    if hyp.lr_schedule == "linear":
        return (1 - epoch / epochs) * (1.0 - hyp.lrf) + hyp.lrf
    if hyp.lr_schedule == "cosine":
        return hyp.lrf + (1 - hyp.lrf) * (1 + math.cos(math.pi * epoch / epochs)) / 2
    if hyp.lr_schedule == "poly":
        return max(1 - epoch / epochs, 0.0) ** hyp.lr_power
    lr = hyp.lr0
    for start, value in sorted(hyp.lr_steps):
        if epoch >= start:
            lr = value
    return lr / hyp.lr0


def build_optimizer(model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """Three parameter groups: 0 = BN/norm weights (no decay), 1 = conv/linear weights (decay),
    2 = biases (no decay; the group warm-up treats specially)."""
    norm, weights, biases = [], [], []
    norm_types = tuple(v for k, v in nn.__dict__.items() if "Norm" in k and isinstance(v, type))
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if pname == "bias":
                biases.append(p)
            elif isinstance(module, norm_types):
                norm.append(p)
            else:
                weights.append(p)
    # foreach=True: one multi-tensor call per group instead of a Python loop over ~200 tensors; on CPU
    # the same per-tensor arithmetic (bitwise-equal steps, tests/utils/train/test_schedule.py) in 2/3 of
    # the time -- torch enables it by default on CUDA only. (fused=True is faster still but rounds
    # differently, so it would move every measured trajectory.)
    if name == "SGD":
        opt = torch.optim.SGD(norm, lr=lr, momentum=momentum, nesterov=True, foreach=True)
    elif name == "Adam":
        opt = torch.optim.Adam(norm, lr=lr, betas=(momentum, 0.999), foreach=True)
    elif name == "AdamW":
        opt = torch.optim.AdamW(norm, lr=lr, betas=(momentum, 0.999), weight_decay=0.0, foreach=True)
    else:
        raise ValueError(f"optimizer must be SGD, Adam or AdamW, got {name!r}")
    opt.add_param_group({"params": weights, "weight_decay": weight_decay})
    opt.add_param_group({"params": biases, "weight_decay": 0.0})
    return opt


def warmup_iterations(hyp: Hyp, batches_per_epoch: int) -> int:
    """``warmup_epochs`` worth of batches, at least ``warmup_min_iters`` (yolov5: 100) when warm-up is on."""
    if hyp.warmup_epochs <= 0:
        return 0
    return max(int(round(hyp.warmup_epochs * batches_per_epoch)), hyp.warmup_min_iters)


def accumulation_at(ni: int, warmup_iters: int, accumulate: int) -> int:
    """Batches per optimiser step at global iteration ``ni``: during warm-up it rises linearly from
    1 to ``accumulate`` (rounded, as yolov5), so the first batches step at once; afterwards ``accumulate``."""
    if ni >= warmup_iters or accumulate <= 1:
        return accumulate
    return max(1, int(round(float(np.interp(ni, [0, warmup_iters], [1, accumulate])))))


def set_lr(optimizer: torch.optim.Optimizer, hyp: Hyp, epochs: int, epoch: int, ni: int, nw: int) -> None:
    """Set every group's lr (and SGD momentum) for global iteration ``ni`` in ``epoch``."""
    target = hyp.lr0 * lr_factor(hyp, epochs, epoch)
    for j, group in enumerate(optimizer.param_groups):
        lr = target
        if ni < nw:
            start = hyp.warmup_bias_lr if j == 2 else 0.0
            lr = float(np.interp(ni, [0, nw], [start, target]))
            if "momentum" in group:
                group["momentum"] = float(np.interp(ni, [0, nw], [hyp.warmup_momentum, hyp.momentum]))
        elif "momentum" in group:
            group["momentum"] = hyp.momentum
        group["lr"] = lr


def mosaic_on(hyp: Hyp, epochs: int, epoch: int) -> bool:
    """Whether 0-based ``epoch`` of an ``epochs``-long run may draw mosaics: not in the last
    ``hyp.close_mosaic`` epochs (YOLOv8's close_mosaic), where training sees whole images as
    validation does."""
    return epoch < epochs - hyp.close_mosaic


def validates(epoch: int, epochs: int, val_interval: int, noval: bool = False) -> bool:
    """Whether 0-based ``epoch`` of an ``epochs``-long run ends with a validation: the last epoch always,
    before it every ``val_interval``-th (epochs val_interval, 2 * val_interval, ... counted from 1, as
    darknet's ``-map`` every 4 epochs; 1: every epoch, as yolov5), none under ``noval``."""
    return epoch + 1 >= epochs or (not noval and (epoch + 1) % val_interval == 0)
