"""Box geometry: format conversions, areas, and the IoU family built on one core.

Formats (the name of every function says which one it takes):

* ``xyxy``   -- ``(x1, y1, x2, y2)`` corners, the default everywhere in the project;
* ``xywh``   -- ``(x1, y1, w, h)`` top-left corner plus size (COCO JSON);
* ``cxcywh`` -- ``(cx, cy, w, h)`` centre plus size (YOLO labels, Detect output).

The core, one function for torch and numpy alike: :func:`aligned_inter_union` gives the
intersection and union areas of row ``i`` against row ``i``, :func:`pairwise_inter_union` of every
box of ``[N, 4]`` against every box of ``[M, 4]`` (``[N, M]``), and ``_centre_term`` is the DIoU
penalty ``rho^2 / c^2``. Everything else is built on them: :func:`box_iou` and :func:`wh_iou`
(pairwise), the aligned variants ``iou``, ``giou``, ``diou``, ``ciou``, ``siou`` (which return the
*value* of the variant, the box loss is ``1 - value``), the two NMS rules of ``utils.ops.nms``,
the COCO matching and confusion-matrix IoU of ``utils.eval.metrics`` and the k-means distance of
``utils.ops.anchors``. The aligned functions broadcast: ``diou(a[:, None], b[None])`` is the
pairwise ``[N, M]`` DIoU.

``eps`` follows ``torchvision.ops.*_box_iou_loss``: it is added to the union, to the enclosing
box area (GIoU), to the squared enclosing diagonal (DIoU/CIoU) and to the CIoU ``alpha``
denominator, so GIoU/DIoU/CIoU equal torchvision's ``1 - loss``. Every other division also gets
``eps`` and no square root is taken of a quantity that can be 0, so gradients stay finite for
zero-size, identical and disjoint boxes.
"""
from __future__ import annotations

import math
from typing import Union

import numpy as np
import torch
from torch import Tensor

Boxes = Union[Tensor, np.ndarray]

EPS = 1e-7


# --- conversions (torch or numpy, any leading shape [..., 4]) ---------------------------------------

def _stack_last(like: Boxes, cols: tuple) -> Boxes:
    if isinstance(like, np.ndarray):
        return np.stack(cols, axis=-1)
    return torch.stack(cols, dim=-1)


def xyxy_to_xywh(boxes_xyxy: Boxes) -> Boxes:
    """``[..., 4]`` corners -> top-left corner plus size."""
    x1, y1, x2, y2 = (boxes_xyxy[..., i] for i in range(4))
    return _stack_last(boxes_xyxy, (x1, y1, x2 - x1, y2 - y1))


def xywh_to_xyxy(boxes_xywh: Boxes) -> Boxes:
    """``[..., 4]`` top-left corner plus size -> corners."""
    x, y, w, h = (boxes_xywh[..., i] for i in range(4))
    return _stack_last(boxes_xywh, (x, y, x + w, y + h))


def xyxy_to_cxcywh(boxes_xyxy: Boxes) -> Boxes:
    """``[..., 4]`` corners -> centre plus size."""
    x1, y1, x2, y2 = (boxes_xyxy[..., i] for i in range(4))
    return _stack_last(boxes_xyxy, ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1))


def cxcywh_to_xyxy(boxes_cxcywh: Boxes) -> Boxes:
    """``[..., 4]`` centre plus size -> corners."""
    cx, cy, w, h = (boxes_cxcywh[..., i] for i in range(4))
    return _stack_last(boxes_cxcywh, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))


def xywh_to_cxcywh(boxes_xywh: Boxes) -> Boxes:
    """``[..., 4]`` top-left corner plus size -> centre plus size."""
    x, y, w, h = (boxes_xywh[..., i] for i in range(4))
    return _stack_last(boxes_xywh, (x + w / 2, y + h / 2, w, h))


def cxcywh_to_xywh(boxes_cxcywh: Boxes) -> Boxes:
    """``[..., 4]`` centre plus size -> top-left corner plus size."""
    cx, cy, w, h = (boxes_cxcywh[..., i] for i in range(4))
    return _stack_last(boxes_cxcywh, (cx - w / 2, cy - h / 2, w, h))


def clip_boxes(boxes_xyxy: Boxes, shape_hw: tuple[int, int]) -> Boxes:
    """Clamp ``[..., 4]`` xyxy boxes to an image of ``(height, width)``; returns a new array."""
    h, w = shape_hw
    if isinstance(boxes_xyxy, np.ndarray):
        lo = np.zeros(4, dtype=boxes_xyxy.dtype)
        hi = np.array([w, h, w, h], dtype=boxes_xyxy.dtype)
        return np.clip(boxes_xyxy, lo, hi)
    hi = torch.tensor([w, h, w, h], dtype=boxes_xyxy.dtype, device=boxes_xyxy.device)
    return torch.minimum(boxes_xyxy.clamp(min=0), hi)


def box_area(boxes_xyxy: Boxes) -> Boxes:
    """``[..., 4]`` xyxy -> ``[...]`` areas (negative sizes are not clamped)."""
    return (boxes_xyxy[..., 2] - boxes_xyxy[..., 0]) * (boxes_xyxy[..., 3] - boxes_xyxy[..., 1])


# --- the core: intersection, union, DIoU centre term (torch or numpy) ------------------------------

def _xp(a: Boxes):
    """The array library of ``a``: numpy for ndarrays and numpy scalars, else torch."""
    return np if isinstance(a, (np.ndarray, np.generic)) else torch


def _corners(boxes: Boxes) -> tuple:
    """``x1, y1, x2, y2`` of xyxy ``[..., 4]`` boxes as four ``[...]`` views (torch or numpy)."""
    if isinstance(boxes, Tensor):
        return boxes.unbind(-1)
    return boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]


def _overlap_inter_union(iw: Boxes, ih: Boxes, area1: Boxes, area2: Boxes) -> tuple[Boxes, Boxes]:
    """Intersection and union areas from the overlap width and height (both >= 0) and the two
    box areas."""
    inter = iw * ih
    return inter, area1 + area2 - inter


def _corner_inter_union(c1: tuple, c2: tuple) -> tuple[Boxes, Boxes]:
    """Intersection and union areas of boxes given by their :func:`_corners` (broadcasting)."""
    (x1, y1, x2, y2), (u1, v1, u2, v2) = c1, c2
    xp = _xp(x1)
    iw = (xp.minimum(x2, u2) - xp.maximum(x1, u1)).clip(0)
    ih = (xp.minimum(y2, v2) - xp.maximum(y1, v1)).clip(0)
    return _overlap_inter_union(iw, ih, (x2 - x1) * (y2 - y1), (u2 - u1) * (v2 - v1))


def aligned_inter_union(boxes1: Boxes, boxes2: Boxes) -> tuple[Boxes, Boxes]:
    """Intersection and union areas of xyxy boxes ``[..., 4]`` and ``[..., 4]`` -> two ``[...]``
    (torch or numpy).

    Row ``i`` against row ``i``; the leading shapes broadcast (:func:`pairwise_inter_union` is
    this on ``[N, 1, 4]`` and ``[1, M, 4]``). Negative sizes are not clamped in the areas.
    """
    return _corner_inter_union(_corners(boxes1), _corners(boxes2))


def pairwise_inter_union(boxes1: Boxes, boxes2: Boxes) -> tuple[Boxes, Boxes]:
    """Intersection and union areas of every xyxy box of ``[N, 4]`` against every one of
    ``[M, 4]`` -> two ``[N, M]`` (torch or numpy)."""
    return aligned_inter_union(boxes1[:, None], boxes2[None])


def _enclosing_and_offset(c1: tuple, c2: tuple) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Width and height of the smallest box enclosing both, and the centre of box 2 minus the
    centre of box 1 (x, y), from the :func:`_corners` of two aligned (broadcasting) sets."""
    (x1, y1, x2, y2), (u1, v1, u2, v2) = c1, c2
    cw = torch.max(x2, u2) - torch.min(x1, u1)
    ch = torch.max(y2, v2) - torch.min(y1, v1)
    return cw, ch, (u1 + u2 - x1 - x2) / 2, (v1 + v2 - y1 - y2) / 2


def _centre_term(cw: Tensor, ch: Tensor, dx: Tensor, dy: Tensor, eps: float) -> Tensor:
    """The DIoU penalty ``rho^2 / c^2``: squared centre distance over the squared enclosing
    diagonal (``eps`` added to the latter)."""
    return (dx ** 2 + dy ** 2) / (cw ** 2 + ch ** 2 + eps)


# --- pairwise [N, 4] x [M, 4] -> [N, M] ------------------------------------------------------------

def box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-9) -> Tensor:
    """Pairwise IoU of xyxy boxes ``[N, 4]`` and ``[M, 4]`` -> ``[N, M]``.

    The union is clamped at ``eps`` so two empty boxes give 0 instead of nan; otherwise equal to
    ``torchvision.ops.box_iou``.
    """
    inter, union = pairwise_inter_union(boxes1, boxes2)
    return inter / union.clamp(min=eps)


def wh_iou(wh1: Boxes, wh2: Boxes) -> Boxes:
    """Pairwise IoU of boxes given only by size ``(w, h)``, aligned at a common corner (or
    centre): ``[N, 2]`` x ``[M, 2]`` -> ``[N, M]`` (torch or numpy). Sizes must be positive."""
    xp = _xp(wh1)
    w1, h1, w2, h2 = wh1[:, None, 0], wh1[:, None, 1], wh2[None, :, 0], wh2[None, :, 1]
    inter, union = _overlap_inter_union(xp.minimum(w1, w2), xp.minimum(h1, h2), w1 * h1, w2 * h2)
    return inter / union


# --- aligned [..., 4] x [..., 4] -> [...] ----------------------------------------------------------

def _aligned_parts(boxes1: Tensor, boxes2: Tensor, eps: float):
    """IoU and union plus the enclosing-box width/height and the centre offsets of two aligned
    xyxy sets."""
    c1, c2 = _corners(boxes1), _corners(boxes2)
    inter, union = _corner_inter_union(c1, c2)
    return (inter / (union + eps), union, *_enclosing_and_offset(c1, c2))


def iou(boxes1: Tensor, boxes2: Tensor, eps: float = EPS) -> Tensor:
    """Aligned IoU of xyxy boxes ``[..., 4]`` and ``[..., 4]`` -> ``[...]``."""
    return _aligned_parts(boxes1, boxes2, eps)[0]


def giou(boxes1: Tensor, boxes2: Tensor, eps: float = EPS) -> Tensor:
    """Aligned Generalized IoU ``IoU - (|C| - |union|) / |C|`` -> ``[...]``, in ``(-1, 1]``.

    ``C`` is the smallest box enclosing both.
    """
    value, union, cw, ch, _, _ = _aligned_parts(boxes1, boxes2, eps)
    area_c = cw * ch
    return value - (area_c - union) / (area_c + eps)


def diou(boxes1: Tensor, boxes2: Tensor, eps: float = EPS) -> Tensor:
    """Aligned Distance-IoU ``IoU - rho^2 / c^2`` -> ``[...]``, in ``(-1, 1]``.

    ``rho`` is the centre distance, ``c`` the diagonal of the smallest enclosing box.
    """
    value, _, cw, ch, dx, dy = _aligned_parts(boxes1, boxes2, eps)
    return value - _centre_term(cw, ch, dx, dy, eps)


def ciou(boxes1: Tensor, boxes2: Tensor, eps: float = EPS) -> Tensor:
    """Aligned Complete-IoU ``DIoU - alpha * v`` -> ``[...]``.

    ``v = 4 / pi^2 * (atan(w2 / h2) - atan(w1 / h1))^2`` measures the aspect-ratio mismatch and
    ``alpha = v / (1 - IoU + v)`` is computed without gradient (a constant trade-off weight), as in
    the CIoU paper's reference code and torchvision. ``eps`` is added to the heights so zero-height
    boxes keep finite gradients (a deviation from torchvision below 1e-7 for ordinary boxes).
    """
    value, _, cw, ch, dx, dy = _aligned_parts(boxes1, boxes2, eps)
    w1, h1 = boxes1[..., 2] - boxes1[..., 0], boxes1[..., 3] - boxes1[..., 1]
    w2, h2 = boxes2[..., 2] - boxes2[..., 0], boxes2[..., 3] - boxes2[..., 1]
    v = (4 / math.pi ** 2) * (torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps))) ** 2
    with torch.no_grad():
        alpha = v / (1 - value + v + eps)
    return value - _centre_term(cw, ch, dx, dy, eps) - alpha * v


def siou(boxes1: Tensor, boxes2: Tensor, theta: float = 4.0, eps: float = EPS) -> Tensor:
    """Aligned SCYLLA-IoU ``IoU - (Delta + Omega) / 2`` -> ``[...]``, in ``[-2, 1]`` (seed 003).

    * angle cost ``Lambda = sin(2 alpha)``, ``alpha`` the angle of the centre-to-centre line to the
      x axis. Computed as ``2 |dx| |dy| / (dx^2 + dy^2)`` (``sin 2a = 2 sin a cos a``), which needs
      no arcsin or square root and is symmetric in ``alpha <-> pi/2 - alpha`` (the seed's beta rule);
    * distance cost ``Delta = sum_{t=x,y} (1 - exp(-gamma rho_t))``, ``gamma = 2 - Lambda``,
      ``rho_x = (dx / c_w)^2``, ``rho_y = (dy / c_h)^2`` with ``c_w, c_h`` the enclosing box size;
    * shape cost ``Omega = sum_{t=w,h} (1 - exp(-omega_t))^theta``,
      ``omega_w = |w1 - w2| / max(w1, w2)`` (same for h), ``theta = 4``.
    """
    value, _, cw, ch, dx, dy = _aligned_parts(boxes1, boxes2, eps)
    angle = 2 * (dx * dy).abs() / (dx ** 2 + dy ** 2 + eps)
    gamma = 2 - angle
    rho_x = dx ** 2 / (cw ** 2 + eps)
    rho_y = dy ** 2 / (ch ** 2 + eps)
    distance = (1 - torch.exp(-gamma * rho_x)) + (1 - torch.exp(-gamma * rho_y))
    w1, h1 = boxes1[..., 2] - boxes1[..., 0], boxes1[..., 3] - boxes1[..., 1]
    w2, h2 = boxes2[..., 2] - boxes2[..., 0], boxes2[..., 3] - boxes2[..., 1]
    omega_w = (w1 - w2).abs() / (torch.max(w1, w2) + eps)
    omega_h = (h1 - h2).abs() / (torch.max(h1, h2) + eps)
    shape = (1 - torch.exp(-omega_w)) ** theta + (1 - torch.exp(-omega_h)) ** theta
    return value - (distance + shape) / 2


IOU_VARIANTS = {"iou": iou, "giou": giou, "diou": diou, "ciou": ciou, "siou": siou}
