"""The training loop for one epoch and the one ``evaluate()`` that training and test.py share."""
from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from utils.config import Hyp
from utils.ema import ModelEMA, unwrap
from utils.metrics import DetectionMetrics, ImageDet, detection_metrics, ground_truth
from utils.nms import non_max_suppression, scale_boxes
from utils.schedule import accumulation_at, set_lr
from utils.tta import forward as tta_forward

LOGGER = logging.getLogger(__name__)
LOSS_NAMES = ("box", "obj", "cls")


class NonFiniteLossError(RuntimeError):
    """Too many consecutive non-finite losses; the caller reloads last.pt or stops."""


@dataclass(frozen=True)
class LoopSettings:
    """Fixed settings of the training loop (derived once from the options in train.py)."""
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


def preprocess(imgs: torch.Tensor, device: torch.device, half: bool = False) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> float in [0, 1] on ``device``."""
    x = imgs.to(device, non_blocking=True)
    return (x.half() if half else x.float()) / 255.0


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


def train_one_epoch(model: nn.Module, criterion, loader, optimizer, scaler, ema: Optional[ModelEMA],
                    hyp: Hyp, epoch: int, s: LoopSettings, state: LoopState, multi_scale=None,
                    first_batch_hook=None) -> dict[str, float]:
    """One pass over ``loader``; returns the mean of each named loss. ``first_batch_hook(imgs,
    targets)`` sees the first batch (for the training-mosaic plot)."""
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
        if multi_scale is not None:
            x = multi_scale(x, ni)
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
            _optimizer_step(model, optimizer, scaler, ema, hyp)
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


# ------------------------------------------------------------------------------------- evaluate
@dataclass(frozen=True)
class EvalSettings:
    conf_thres: float = 0.001
    iou_thres: float = 0.65
    nms: str = "nms"                # nms | diou
    max_det: int = 300
    multi_label: bool = True
    half: bool = False
    augment: bool = False           # test-time augmentation (utils/tta.py: 3 scales, one flipped)


@dataclass
class EvalResult:
    metrics: DetectionMetrics
    losses: dict[str, float]
    detections: dict[int, ImageDet]      # record index -> detections in original pixels
    speed_ms: dict[str, float]           # per image: preprocess, inference, nms


@torch.no_grad()
def evaluate(model: nn.Module, loader, records, names: list[str], settings: EvalSettings,
             device: torch.device, criterion=None, show_progress: bool = True) -> EvalResult:
    """Predict every image of ``loader``, map boxes back to original pixels, and score them with
    COCO semantics against ``records`` (indexed by the loader's record indices)."""
    model = unwrap(model)
    was_training = model.training
    model.eval()
    dets: dict[int, ImageDet] = {}
    loss_sum, batches = torch.zeros(len(LOSS_NAMES)), 0
    t = np.zeros(3)
    for imgs, targets, _, shapes, indices in tqdm(loader, desc="evaluate", disable=not show_progress,
                                                  bar_format="{l_bar}{bar:10}{r_bar}"):
        t0 = time.perf_counter()
        x = preprocess(imgs, device, settings.half)
        t1 = time.perf_counter()
        pred, raw = tta_forward(model, x, settings.augment)
        t2 = time.perf_counter()
        if criterion is not None:
            _, items = criterion([r.float() for r in raw], targets.to(device))
            loss_sum += torch.stack([items[k].float().cpu() for k in LOSS_NAMES])
            batches += 1
        out = non_max_suppression(pred.float(), settings.conf_thres, settings.iou_thres,
                                  multi_label=settings.multi_label, max_det=settings.max_det, nms=settings.nms)
        for det, shape, idx in zip(out, shapes, indices):
            boxes = scale_boxes(det[:, :4], tuple(x.shape[2:]), tuple(shape[0]), shape[1]).cpu().numpy()
            dets[idx] = ImageDet(boxes.astype(np.float64), det[:, 4].cpu().numpy(), det[:, 5].long().cpu().numpy())
        t += (t1 - t0, t2 - t1, time.perf_counter() - t2)
    order = sorted(dets, key=lambda i: (records[i].image_id, i))  # pycocotools breaks score ties by image id
    metrics = detection_metrics(ground_truth([records[i] for i in order]), [dets[i] for i in order],
                                len(names), names)
    model.train(was_training)
    n = max(len(order), 1)
    losses = {k: float(v) for k, v in zip(LOSS_NAMES, (loss_sum / max(batches, 1)).tolist())}
    return EvalResult(metrics, losses, dets, dict(zip(("preprocess", "inference", "nms"), (t * 1000 / n).tolist())))


def format_table(m: DetectionMetrics) -> str:
    """The yolov5-style table: Class, Images, Instances, P, R, mAP@.5, mAP@.5:.95."""
    lines = [f"{'Class':>20}{'Images':>11}{'Instances':>11}{'P':>11}{'R':>11}{'mAP@.5':>11}{'mAP@.5:.95':>11}"]
    for name, images, inst, p, r, ap50, ap in m.rows():
        lines.append(f"{name:>20}{images:>11}{inst:>11}{p:>11.3g}{r:>11.3g}{ap50:>11.3g}{ap:>11.3g}")
    return "\n".join(lines)


def results_row(epoch: int, train_losses: dict, result: EvalResult, lrs: list[float]) -> dict[str, Any]:
    """One ``results.csv`` row with yolov5's column names."""
    m = result.metrics
    row: dict[str, Any] = {"epoch": epoch}
    row.update({f"train/{k}_loss": train_losses[k] for k in LOSS_NAMES})
    row.update({"metrics/precision": m.mp, "metrics/recall": m.mr, "metrics/mAP_0.5": m.map50,
                "metrics/mAP_0.5:0.95": m.map})
    row.update({f"val/{k}_loss": result.losses[k] for k in LOSS_NAMES})
    row.update({f"x/lr{j}": lr for j, lr in enumerate(lrs)})
    return row


def is_finite_model(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in unwrap(model).state_dict().values() if v.dtype.is_floating_point)

