"""Test-time augmentation (``test.py --augment``, ``detect.py --augment``): yolov5's recipe.

The network input batch runs three times: at scale 1, at 0.83 flipped left-right, and at 0.67
(yolov5's ``scales (1, 0.83, 0.67)`` and ``flips (None, lr, None)``). Each scaled pass is resized
with bilinear interpolation to ``(int(h * s), int(w * s))`` and padded on the right and bottom
with the letterbox grey up to a multiple of the model's largest stride. Every pass's decoded
boxes are mapped back to the input batch's pixels (divided by the pass's actual per-axis ratio
``h' / h``, ``w' / w``, then mirrored as ``x -> w - x`` where flipped) and the passes are
concatenated, so one NMS afterwards merges them.

Trimming (``trim=True``, the default; yolov5 does it too): the largest-scale pass drops the rows
of its coarsest level (its largest boxes, which the down-scaled passes see at a size closer to
training) and the smallest-scale pass drops the rows of its finest level (its smallest boxes,
objects shrunk below what that level resolves well). Models with one level are never trimmed.
Measured on the main job's seed-0 best.pt (shapes val, 100 images), mAP@0.5 / mAP@0.5:0.95: at
160 px plain 0.854 / 0.624, TTA 0.851 / 0.622 (untrimmed 0.845 / 0.622); at 192 px plain 0.881 /
0.641, TTA 0.883 / 0.659 (untrimmed 0.878 / 0.652). As in yolov5, TTA pays at a larger size.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from utils.data.augment import PAD_VALUE

TTA_SCALES: tuple[float, ...] = (1.0, 0.83, 0.67)
TTA_FLIPS: tuple[Optional[str], ...] = (None, "lr", None)
FLIP_DIMS = {"lr": -1, "ud": -2}


def scale_to_stride(x: torch.Tensor, scale: float, stride: int) -> tuple[torch.Tensor, tuple[float, float]]:
    """``[B, C, H, W]`` -> resized by ``scale`` (floor of each side, at least 1 pixel) and padded
    right/bottom with the letterbox grey to multiples of ``stride``; returns it and the actual
    ``(ratio_h, ratio_w)`` that maps input pixels to it (``x' = x * ratio_w``)."""
    h, w = x.shape[-2:]
    h1, w1 = max(1, int(h * scale)), max(1, int(w * scale))
    y = x if (h1, w1) == (h, w) else F.interpolate(x, size=(h1, w1), mode="bilinear", align_corners=False)
    ph, pw = math.ceil(h1 / stride) * stride - h1, math.ceil(w1 / stride) * stride - w1
    if ph or pw:
        y = F.pad(y, (0, pw, 0, ph), value=PAD_VALUE / 255.0)
    return y, (h1 / h, w1 / w)


def unmap_boxes(pred: torch.Tensor, ratio_hw: tuple[float, float], flip: Optional[str],
                shape_hw: tuple[int, int]) -> torch.Tensor:
    """Decoded rows ``[B, N, 5+nc]`` (``cx, cy, w, h`` in the pass's pixels) -> the same rows in
    the pixels of the un-scaled, un-flipped input of size ``shape_hw``. Returns a new tensor."""
    out = pred.clone()
    rh, rw = ratio_hw
    out[..., [0, 2]] /= rw
    out[..., [1, 3]] /= rh
    if flip == "lr":
        out[..., 0] = shape_hw[1] - out[..., 0]
    elif flip == "ud":
        out[..., 1] = shape_hw[0] - out[..., 1]
    return out


def level_rows(raw: Sequence[torch.Tensor]) -> list[int]:
    """Rows each level contributes to the decoded output: ``na * H * W`` of ``[B, na, H, W, no]``."""
    return [r.shape[1] * r.shape[2] * r.shape[3] for r in raw]


def trim_levels(pred: torch.Tensor, rows: list[int], drop: str) -> torch.Tensor:
    """Drop the ``"finest"`` (first) or ``"coarsest"`` (last) level's rows of a decoded pass."""
    if len(rows) < 2:
        return pred
    return pred[:, rows[0]:] if drop == "finest" else pred[:, :pred.shape[1] - rows[-1]]


def augmented_forward(model: nn.Module, x: torch.Tensor, scales: Sequence[float] = TTA_SCALES,
                      flips: Sequence[Optional[str]] = TTA_FLIPS, trim: bool = True,
                      stride: Optional[int] = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Eval-mode detector and input ``[B, 3, H, W]`` (float, [0, 1]) -> ``(pred, raw)`` like
    ``model(x)``: ``pred`` ``[B, N', 5+nc]`` holds every pass's decoded rows in ``x``'s pixels
    (pass order, trimmed as the module doc says); ``raw`` is the first pass's raw levels (the plain
    forward when the first pass is scale 1 unflipped, so validation losses stay comparable)."""
    if len(scales) != len(flips) or not scales:
        raise ValueError(f"augmented_forward: one flip per scale, got scales {scales} and flips {flips}")
    if any(f not in (None, *FLIP_DIMS) for f in flips):
        raise ValueError(f"augmented_forward: flips must be None, 'lr' or 'ud', got {flips}")
    stride = stride or int(model.stride.max())
    shape_hw = (x.shape[-2], x.shape[-1])
    big, small = max(range(len(scales)), key=lambda i: scales[i]), min(range(len(scales)), key=lambda i: scales[i])
    preds, first_raw = [], None
    for i, (s, f) in enumerate(zip(scales, flips)):
        xi, ratio = scale_to_stride(x.flip(FLIP_DIMS[f]) if f else x, s, stride)
        pred, raw = model(xi)
        first_raw = raw if first_raw is None else first_raw
        pred = unmap_boxes(pred, ratio, f, shape_hw)
        if trim and big != small:
            if i == big:
                pred = trim_levels(pred, level_rows(raw), "coarsest")
            elif i == small:
                pred = trim_levels(pred, level_rows(raw), "finest")
        preds.append(pred)
    return torch.cat(preds, 1), first_raw


def forward(model: nn.Module, x: torch.Tensor, augment: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``model(x)``, or :func:`augmented_forward` with yolov5's passes when ``augment``."""
    return augmented_forward(model, x) if augment else model(x)
