"""The training loop for one epoch: forward, loss, accumulated optimiser steps, EMA, and the NaN /
explosion guards (the evaluation that follows each epoch is utils/eval/evaluate.py)."""
from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from utils.config import Hyp
from utils.train.ema import ModelEMA, unwrap
from utils.eval.evaluate import LOSS_NAMES, preprocess
from utils.train.schedule import accumulation_at, set_lr

LOGGER = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Too many consecutive non-finite losses; the caller reloads last.pt or stops."""


@dataclass(frozen=True)
class LoopSettings:
    """Fixed settings of the training loop (derived once from the options: Trainer.settings())."""
    device: torch.device
    epochs: int
    accumulate: int                 # optimiser step every N batches after warm-up (nominal batch size)
    warmup_iters: int               # during warm-up the step interval rises from 1 to ``accumulate``
    amp_dtype: Optional[torch.dtype] = None   # torch.float16 / torch.bfloat16, None = fp32
    max_nonfinite: int = 3          # consecutive non-finite (or exploded) losses before NonFiniteLossError
    explode_factor: float = 100.0   # a loss this many times the running median counts as exploded
    show_progress: bool = True


@dataclass
class LoopState:
    """Mutable counters carried across epochs (and saved in checkpoints)."""
    iteration: int = 0              # global batch counter
    last_opt_step: int = -1
    nonfinite: int = 0
    skipped: list = field(default_factory=list)
    recent: list = field(default_factory=list)   # the last accepted batch losses (explosion guard)


EXPLODE_WINDOW, EXPLODE_MIN_HISTORY = 100, 10


def exploded(value: float, state: LoopState, factor: float) -> bool:
    """Whether a finite batch loss is ``factor`` times the median of the last accepted ones (after
    ``EXPLODE_MIN_HISTORY`` of them). A diverging run (lr far too high) grows its loss by orders of
    magnitude within a few steps while its weights stay finite for a while; the NaN guard alone
    lets it finish and save a best.pt. Accepted values enter the window, flagged ones do not."""
    if len(state.recent) >= EXPLODE_MIN_HISTORY and value > factor * float(np.median(state.recent)):
        return True
    state.recent.append(value)
    del state.recent[:-EXPLODE_WINDOW]
    return False


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """Device-agnostic autocast; a no-op context in fp32."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _optimizer_step(model, optimizer, scaler, ema: Optional[ModelEMA], hyp: Hyp) -> bool:
    """Unscale, clip, step (skipped when gradients are not finite). Returns whether it stepped."""
    scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), hyp.grad_clip if hyp.grad_clip > 0 else float("inf"))
    finite = bool(torch.isfinite(norm))
    if finite or scaler.is_enabled():   # the fp16 scaler skips inf steps itself and lowers its scale
        scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    if finite and ema is not None:
        ema.update(model)
    return finite


@dataclass
class TrainParts:
    """The built pieces an epoch trains (the Trainer builds them once; tests build their own)."""
    model: nn.Module
    criterion: Callable             # (predictions, targets [M, 6]) -> (loss, {name: loss item})
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler    # enabled for fp16 autocast only
    ema: Optional[ModelEMA] = None
    multi_scale: Optional[Callable] = None   # (imgs, iteration) -> resized imgs (utils.data.loader.MultiScale)


def train_one_epoch(parts: TrainParts, loader, hyp: Hyp, epoch: int, s: LoopSettings, state: LoopState,
                    first_batch_hook=None) -> dict[str, float]:
    """One pass over ``loader``; returns the mean of each named loss. ``first_batch_hook(imgs,
    targets)`` sees the first batch (for the training-mosaic plot)."""
    model, criterion, optimizer, scaler = parts.model, parts.criterion, parts.optimizer, parts.scaler
    model.train()
    sums = torch.zeros(len(LOSS_NAMES))
    seen = 0
    bar = tqdm(loader, total=len(loader), disable=not s.show_progress, leave=True,
               bar_format="{l_bar}{bar:10}{r_bar}", desc=f"{epoch + 1}/{s.epochs}")
    for i, (imgs, targets, paths, _, _) in enumerate(bar):
        if i == 0 and first_batch_hook is not None:
            first_batch_hook(imgs, targets)
        ni = state.iteration
        set_lr(optimizer, hyp, s.epochs, epoch, ni, s.warmup_iters)
        x = preprocess(imgs, s.device)
        if parts.multi_scale is not None:
            x = parts.multi_scale(x, ni)
        with autocast(s.device, s.amp_dtype):
            preds = model(x)
        loss, items = criterion([p.float() for p in preds], targets.to(s.device))
        state.iteration += 1
        value = float(loss.detach())
        if not np.isfinite(value) or exploded(value, state, s.explode_factor):
            _nonfinite(items, epoch, i, paths, optimizer, s, state, value)
            continue
        state.nonfinite = 0
        scaler.scale(loss).backward()
        last_batch_of_run = epoch == s.epochs - 1 and i == len(loader) - 1  # no gradient left unapplied
        if ni - state.last_opt_step >= accumulation_at(ni, s.warmup_iters, s.accumulate) or last_batch_of_run:
            _optimizer_step(model, optimizer, scaler, parts.ema, hyp)
            state.last_opt_step = ni
        sums += torch.stack([items[k].detach().float().cpu() for k in LOSS_NAMES])
        seen += 1
        if s.show_progress:
            mem = f"{torch.cuda.memory_reserved() / 1e9:.2f}G" if s.device.type == "cuda" else "-"
            bar.set_postfix_str(" ".join(f"{k}={v:.4f}" for k, v in zip(LOSS_NAMES, (sums / seen).tolist()))
                                + f" inst={len(targets)} size={x.shape[-1]} mem={mem}")
    return {k: float(v) for k, v in zip(LOSS_NAMES, (sums / max(seen, 1)).tolist())}


def _nonfinite(items: dict, epoch: int, batch: int, paths: list, optimizer, s: LoopSettings, state: LoopState,
               value: float) -> None:
    if np.isfinite(value):
        what = f"exploded loss {value:.3g} (over {s.explode_factor:g}x the running median {np.median(state.recent):.3g})"
    else:
        what = f"non-finite {'/'.join(k for k in LOSS_NAMES if not torch.isfinite(items[k])) or 'total'} loss"
    state.nonfinite += 1
    state.skipped.append((epoch, batch))
    optimizer.zero_grad(set_to_none=True)
    LOGGER.warning("%s at epoch %d batch %d (first image %s): step skipped (%d in a row)",
                   what, epoch + 1, batch, paths[0] if paths else "?", state.nonfinite)
    if state.nonfinite >= s.max_nonfinite:
        raise NonFiniteLossError(f"{state.nonfinite} consecutive bad batches ({what}) at epoch {epoch + 1} batch {batch}")


def is_finite_model(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in unwrap(model).state_dict().values() if v.dtype.is_floating_point)

