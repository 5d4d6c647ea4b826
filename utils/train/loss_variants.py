"""The YOLOv2 / YOLOv3 loss designs (seeds 003 and 004), selected in the hyp YAML.

:class:`utils.train.loss.YoloLoss` calls these when a hyp asks for them; with the defaults
(``assigner: ratio``, ``obj_ignore_iou: 0``, ``lambda_coord: 1``, ``lambda_noobj: 1``,
``obj_loss: bce``, ``obj_target: iou``, ``cls_loss: bce``) none of them runs and the loss is
yolov5's, unchanged.

* ``assigner: best_anchor``: each target goes to the one anchor, over all levels, whose shape
  (width and height, centres aligned) has the highest IoU with the target's (seed 003: "o is 1 for
  the anchor with the largest IoU"; YOLOv2 does the same among its 5 anchors), in the cell that
  holds its centre -- no neighbour cells, no ratio threshold;
* ``obj_ignore_iou > 0``: an unassigned prediction whose decoded box overlaps some target of its
  image with IoU above it gets no no-object loss (seed 003's ``Mask_ig``, 0.5; YOLOv2: 0.6);
* ``lambda_noobj``: weight of the no-object cells in the objectness term, ``lambda_coord``: weight
  of the box term (seed 003's formula);
* ``obj_loss: mse``: ``(sigmoid(t_o) - target)^2`` instead of BCE (YOLOv2 regresses objectness to
  the IoU); ``obj_target: one``: the assigned cells' target is 1 rather than the box quality;
* ``cls_loss: softmax``: cross entropy of a softmax over the classes (YOLOv2's region layer;
  pair it with the Detect decode ``region`` so inference scores are the same softmax).

The objectness term stays a mean over every cell of a level (as the default BCE), so the yolov5
gains keep their scale: ``mean(w * e)`` with ``w`` = 1 at assigned cells, ``lambda_noobj`` at the
others and 0 where ignored, and ``e`` the element-wise BCE or squared error.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from utils.ops.boxes import box_iou, cxcywh_to_xyxy, wh_iou

FOCAL_ALPHA = 0.25
VARIANT_DEFAULTS = {"assigner": "ratio", "obj_ignore_iou": 0.0, "lambda_coord": 1.0, "lambda_noobj": 1.0,
                    "obj_loss": "bce", "obj_target": "iou", "cls_loss": "bce"}


def bce_terms(logits: Tensor, target: Tensor, pos_weight: float, fl_gamma: float) -> Tensor:
    """Element-wise BCE on logits with a positive weight; focal (alpha 0.25, gamma ``fl_gamma``) if > 0."""
    pw = torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw, reduction="none")
    if fl_gamma > 0:
        p = logits.sigmoid()
        p_true = target * p + (1 - target) * (1 - p)
        alpha = target * FOCAL_ALPHA + (1 - target) * (1 - FOCAL_ALPHA)
        loss = loss * alpha * (1.0 - p_true) ** fl_gamma
    return loss


def objectness_is_default(hyp: Any) -> bool:
    """True when the objectness term is yolov5's plain mean BCE (no mask, weight or MSE)."""
    return (hyp.obj_ignore_iou == 0 and hyp.lambda_noobj == 1.0 and hyp.obj_loss == "bce")


def best_anchor_matches(anchors_px: Tensor, targets: Tensor, image_wh: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Per level, ``(anchor index, target index)`` of each target's single best anchor.

    ``anchors_px`` ``[nl, na, 2]`` in input pixels (``Detect.anchors``), ``targets`` ``[M, 6]``
    normalised (image, class, cx, cy, w, h), ``image_wh`` the input size in pixels. Ties go to the
    first anchor in level-then-anchor order.
    """
    nl, na = anchors_px.shape[:2]
    ious = wh_iou(targets[:, 4:6] * image_wh, anchors_px.reshape(-1, 2).to(targets.dtype))  # [M, nl*na]
    best = ious.argmax(1) if targets.shape[0] else torch.zeros(0, dtype=torch.long, device=targets.device)
    level, anchor = best // na, best % na
    out = []
    for i in range(nl):
        t_idx = (level == i).nonzero(as_tuple=True)[0]
        out.append((anchor[t_idx], t_idx))
    return out


def ignore_mask(decoded_px: Tensor, targets: Tensor, image_wh: Tensor, threshold: float) -> Tensor:
    """``[B, na, H, W]`` True where a prediction's box overlaps a target of its image above ``threshold``.

    ``decoded_px`` ``[B, na, H, W, 4]`` (cx, cy, w, h) in input pixels, as Detect decodes them;
    ``targets`` ``[M, 6]`` normalised.
    """
    b = decoded_px.shape[0]
    mask = torch.zeros(decoded_px.shape[:4], dtype=torch.bool, device=decoded_px.device)
    boxes = cxcywh_to_xyxy(targets[:, 2:6] * image_wh.repeat(2))
    for j in range(b):
        mine = boxes[targets[:, 0].long() == j]
        if mine.shape[0]:
            best = box_iou(cxcywh_to_xyxy(decoded_px[j].reshape(-1, 4)), mine).amax(1)
            mask[j] = (best > threshold).view(mask.shape[1:])
    return mask


def objectness_terms(logits: Tensor, target: Tensor, hyp: Any, fl_gamma: float = 0.0) -> Tensor:
    """Element-wise objectness error: BCE on logits (positive weight ``hyp.obj_pw``, focal if
    ``fl_gamma``) or, for ``obj_loss: mse``, ``(sigmoid(logits) - target)^2``."""
    if hyp.obj_loss == "mse":
        return (logits.sigmoid() - target) ** 2
    return bce_terms(logits, target, hyp.obj_pw, fl_gamma)


def weighted_objectness(logits: Tensor, target: Tensor, positive: Tensor, ignored: Tensor, hyp: Any) -> Tensor:
    """``mean(w * e)`` over all cells: ``w`` 1 at ``positive``, ``lambda_noobj`` elsewhere, 0 at
    ``ignored & ~positive`` (module doc)."""
    e = objectness_terms(logits, target, hyp, hyp.fl_gamma)
    w = torch.where(positive, torch.ones_like(e), torch.full_like(e, hyp.lambda_noobj))
    w = w.masked_fill(ignored & ~positive, 0.0)
    return (w * e).mean()


def softmax_cls_loss(logits: Tensor, cls: Tensor, label_smoothing: float) -> Tensor:
    """Mean cross entropy of a softmax over the classes (YOLOv2's region layer): ``[K, nc], [K]``."""
    return F.cross_entropy(logits, cls, label_smoothing=label_smoothing)
