"""The YOLO training loss for the anchor-based :class:`models.head.Detect` head.

``build_criterion(model, hyp)`` returns a :class:`YoloLoss`; calling it on the raw training
outputs and the batch targets gives ``(loss, {'box', 'obj', 'cls', 'total'})``.

Assignment (per level, anchors = ``det.anchors[i] / det.stride[i]``, i.e. the Detect's own
anchors converted from input pixels to grid cells):

* a target is matched to every anchor of a level whose size ratio satisfies
  ``max(w/aw, aw/w, h/ah, ah/h) < hyp.anchor_t`` (the Scaled-YOLOv4 / yolov5 rule; a target may
  match anchors on several levels, or none);
* ``decode == "scaled"``: the cell holding the centre plus the nearer horizontal and the nearer
  vertical neighbour (when the centre is in the left/right resp. top/bottom half of its cell and
  that neighbour exists) -- the scaled decode ``xy = 2 sigmoid(t) - 0.5`` reaches half a cell out;
* ``decode == "exp"``: the centre cell only (``xy = sigmoid(t)`` stays inside its cell).

Losses (all computed in float32, outside autocast):

* box: ``1 - value`` of the ``hyp.box_loss`` IoU variant on boxes in grid units relative to the
  matched cell, decoded exactly as ``Detect.decode_level``; or ``mse`` (seed 003, YOLOv3): squared
  error of the t-encoding -- ``sigmoid(t_xy)`` vs the centre offset in the cell and raw ``t_wh``
  vs ``ln(gwh / anchor)``; summed over the 4 terms and averaged over matches. For the scaled
  decode, ``mse`` compares ``2 sigmoid(t_xy) - 0.5`` with the offset and ``ln((2 sigmoid(t_wh))^2)``
  with ``ln(gwh / anchor)`` (the same log-size error under that decode);
* objectness: BCE on every cell against ``clamp(value, 0)`` (detached; plain IoU for ``mse``) at
  matched cells and 0 elsewhere, weighted per level by :func:`level_balance`;
* class: BCE on matched cells (skipped when ``nc == 1``, as yolov5 does), targets
  ``1 - 0.5 eps`` / ``0.5 eps`` with ``eps = hyp.label_smoothing``;
* ``hyp.fl_gamma > 0`` turns both BCEs into focal losses (alpha 0.25); ``hyp.cls_pw`` and
  ``hyp.obj_pw`` are BCE positive weights.

The YOLOv2/YOLOv3 designs of seeds 003/004 (``assigner: best_anchor``, the ``obj_ignore_iou``
mask, ``lambda_coord``/``lambda_noobj``, ``obj_loss: mse``, ``obj_target: one``,
``cls_loss: softmax``) live in :mod:`utils.train.loss_variants`; the defaults leave all of the above as is.

Gains are scaled as yolov5 ``train.py`` does (:func:`loss_gains`). The returned scalar is
``(box + obj + cls) * batch_size`` (yolov5 convention: its hyperparameters were tuned for that
gradient scale); the dict holds the three detached per-image terms and their sum ``total``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from utils.ops.boxes import IOU_VARIANTS, cxcywh_to_xyxy, iou
from utils.train.loss_variants import (bce_terms, best_anchor_matches, ignore_mask, objectness_is_default,
                                 softmax_cls_loss, weighted_objectness)

# yolov5 per-level objectness weights: P3-P5 for 3 levels, P3-P7 for up to 5.
_BALANCE_3 = (4.0, 1.0, 0.4)
_BALANCE_5 = (4.0, 1.0, 0.25, 0.06, 0.02)
# Cell offsets (dx, dy) of the centre cell and its four neighbours, in that order.
_CELL_OFFSETS = ((0, 0), (-1, 0), (0, -1), (1, 0), (0, 1))


def level_balance(nl: int) -> tuple[float, ...]:
    """Objectness weight per level: 1 level -> (1.0,); 3 -> (4.0, 1.0, 0.4) (yolov5); other counts
    up to 5 -> the first ``nl`` of yolov5's P3-P7 weights (4.0, 1.0, 0.25, 0.06, 0.02)."""
    if nl == 1:
        return (1.0,)
    if nl == 3:
        return _BALANCE_3
    if 1 < nl <= len(_BALANCE_5):
        return _BALANCE_5[:nl]
    raise ValueError(f"YoloLoss: no objectness balance defined for {nl} detection levels (1-5 supported)")


def loss_gains(hyp: Any, nl: int, nc: int, image_hw: tuple[float, float]) -> tuple[float, float, float]:
    """``(box, obj, cls)`` gains from ``hyp.box/obj/cls`` scaled like yolov5 ``train.py``.

    box * 3/nl; cls * nc/80 * 3/nl; obj * (H*W / 640^2) * 3/nl where ``H, W`` is the input image
    size in pixels (for a square image this is yolov5's ``(imgsz / 640)^2``: the objectness mean
    runs over a number of cells proportional to the image area).
    """
    layers = 3.0 / nl
    area = float(image_hw[0]) * float(image_hw[1]) / 640.0 ** 2
    return hyp.box * layers, hyp.obj * area * layers, hyp.cls * nc / 80.0 * layers


def bce_with_logits(logits: Tensor, target: Tensor, pos_weight: float, fl_gamma: float) -> Tensor:
    """Mean BCE on logits with a positive weight; focal (alpha 0.25, gamma ``fl_gamma``) if > 0."""
    return bce_terms(logits, target, pos_weight, fl_gamma).mean()


@dataclass
class LevelTargets:
    """Matches of one level, K rows. Grid units; ``box`` is ``(ox, oy, w, h)`` with ``(ox, oy)``
    the target centre minus the matched cell's top-left corner."""
    img: Tensor        # [K] long, image index in the batch
    anchor: Tensor     # [K] long, anchor index in the level
    gy: Tensor         # [K] long, cell row
    gx: Tensor         # [K] long, cell column
    box: Tensor        # [K, 4] float, (ox, oy, w, h)
    anchor_wh: Tensor  # [K, 2] float, matched anchor size in grid units
    cls: Tensor        # [K] long, class index


def _detect_of(model: Any) -> Any:
    m = getattr(model, "module", model)  # DataParallel / DistributedDataParallel
    det = getattr(m, "detect", m)
    for name in ("anchors", "stride", "decode", "nc", "nl", "na"):
        if not hasattr(det, name):
            raise TypeError(f"build_criterion: expected a Model with .detect or a Detect head, "
                            f"got {type(model).__name__} without '{name}'")
    return det


def build_criterion(model: Any, hyp: Any, image_size: Optional[int | tuple[int, int]] = None) -> "YoloLoss":
    """Loss for ``model.detect`` (or a bare Detect). ``image_size`` (pixels, int or ``(h, w)``)
    fixes the objectness gain as yolov5 does with ``--img-size``; if None it is taken from each
    batch (level-0 grid size times stride), so it follows multi-scale training."""
    det = _detect_of(model)
    if hyp.box_loss not in (*IOU_VARIANTS, "mse"):
        raise ValueError(f"hyp.box_loss must be one of {(*IOU_VARIANTS, 'mse')}, got {hyp.box_loss!r}")
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    return YoloLoss(det, hyp, image_size)


class YoloLoss:
    """Callable criterion; reads ``det.anchors`` and ``det.stride`` at every call (so anchor
    updates and device moves of the model are picked up). ``hyp`` is only read."""

    def __init__(self, det: Any, hyp: Any, image_hw: Optional[tuple[int, int]] = None):
        self.det = det
        self.hyp = hyp
        self.image_hw = image_hw
        self.balance = level_balance(det.nl)

    def __call__(self, preds: list[Tensor], targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``preds``: nl raw tensors ``[B, na, H, W, nc + 5]``; ``targets`` ``[M, 6]`` = (image,
        class, cx, cy, w, h) normalised to [0, 1]. Returns the scalar to backprop and the detached
        per-image losses."""
        device = preds[0].device
        with torch.autocast(device_type=device.type, enabled=False):
            preds = [p.float() for p in preds]
            targets = targets.to(device=device, dtype=torch.float32)
            return self._compute(preds, targets)

    def _compute(self, preds: list[Tensor], targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        det, hyp = self.det, self.hyp
        lbox, lobj, lcls = (torch.zeros((), device=preds[0].device) for _ in range(3))
        for i, (p, t) in enumerate(zip(preds, self.assign(preds, targets))):
            tobj = torch.zeros(p.shape[:4], device=p.device)
            positive = torch.zeros(p.shape[:4], dtype=torch.bool, device=p.device)
            if t.img.numel():
                ps = p[t.img, t.anchor, t.gy, t.gx]  # [K, nc + 5]
                box_loss, quality = self._box_loss(ps[:, :4], t)
                lbox = lbox + (box_loss if hyp.lambda_coord == 1.0 else hyp.lambda_coord * box_loss)
                flat = ((t.img * p.shape[1] + t.anchor) * p.shape[2] + t.gy) * p.shape[3] + t.gx
                if hyp.obj_target == "one":
                    quality = torch.ones_like(quality)
                tobj.view(-1).scatter_reduce_(0, flat, quality.detach().clamp(min=0), reduce="amax")
                positive.view(-1)[flat] = True
                if det.nc > 1:
                    lcls = lcls + self._cls_loss(ps[:, 5:], t.cls)
            if objectness_is_default(hyp):
                lobj = lobj + self.balance[i] * bce_with_logits(p[..., 4], tobj, hyp.obj_pw, hyp.fl_gamma)
            else:
                lobj = lobj + self.balance[i] * weighted_objectness(p[..., 4], tobj, positive,
                                                                    self._ignored(i, p, targets), hyp)
        image_hw = self.image_hw or (preds[0].shape[2] * float(det.stride[0]), preds[0].shape[3] * float(det.stride[0]))
        g_box, g_obj, g_cls = loss_gains(hyp, det.nl, det.nc, image_hw)
        lbox, lobj, lcls = lbox * g_box, lobj * g_obj, lcls * g_cls
        total = lbox + lobj + lcls
        items = {"box": lbox.detach(), "obj": lobj.detach(), "cls": lcls.detach(), "total": total.detach()}
        return total * preds[0].shape[0], items

    def _ignored(self, i: int, p: Tensor, targets: Tensor) -> Tensor:
        """``[B, na, H, W]`` predictions spared the no-object loss (``hyp.obj_ignore_iou``; none if 0)."""
        if self.hyp.obj_ignore_iou <= 0 or not targets.shape[0]:
            return torch.zeros(p.shape[:4], dtype=torch.bool, device=p.device)
        with torch.no_grad():
            decoded = self.det.decode_level(i, p.detach())[..., :4].view(*p.shape[:4], 4)
        return ignore_mask(decoded, targets, self._image_wh(p, i), self.hyp.obj_ignore_iou)

    def _image_wh(self, p: Tensor, i: int) -> Tensor:
        """Input size ``(w, h)`` in pixels from level ``i``'s grid ``p`` and stride."""
        s = float(self.det.stride[i])
        return torch.tensor([p.shape[3], p.shape[2]], device=p.device, dtype=torch.float32) * s

    def _cls_loss(self, logits: Tensor, cls: Tensor) -> Tensor:
        eps = self.hyp.label_smoothing
        if self.hyp.cls_loss == "softmax":
            return softmax_cls_loss(logits, cls, eps)
        target = torch.full_like(logits, 0.5 * eps)
        target[torch.arange(cls.numel(), device=cls.device), cls] = 1.0 - 0.5 * eps
        return bce_with_logits(logits, target, self.hyp.cls_pw, self.hyp.fl_gamma)

    def _decode(self, t_box: Tensor, anchor_wh: Tensor) -> Tensor:
        """Raw ``[K, 4]`` -> ``(ox, oy, w, h)`` in grid units relative to the cell, as Detect does."""
        if self.det.decode == "scaled":
            s = t_box.sigmoid()
            return torch.cat((s[:, :2] * 2 - 0.5, (s[:, 2:] * 2) ** 2 * anchor_wh), 1)
        return torch.cat((t_box[:, :2].sigmoid(), torch.exp(t_box[:, 2:].clamp(max=10.0)) * anchor_wh), 1)

    def _box_loss(self, t_box: Tensor, t: LevelTargets) -> tuple[Tensor, Tensor]:
        """Mean box loss of one level and the per-match quality used as objectness target."""
        pbox = cxcywh_to_xyxy(self._decode(t_box, t.anchor_wh))
        tbox = cxcywh_to_xyxy(t.box)
        if self.hyp.box_loss != "mse":
            value = IOU_VARIANTS[self.hyp.box_loss](pbox, tbox)
            return (1.0 - value).mean(), value
        t_wh = torch.log(t.box[:, 2:] / t.anchor_wh)
        if self.det.decode == "scaled":
            p_xy = t_box[:, :2].sigmoid() * 2 - 0.5
            p_wh = 2 * (F.logsigmoid(t_box[:, 2:]) + math.log(2.0))  # ln((2 sigmoid(t))^2)
        else:
            p_xy, p_wh = t_box[:, :2].sigmoid(), t_box[:, 2:]
        sse = ((p_xy - t.box[:, :2]) ** 2).sum(1) + ((p_wh - t_wh) ** 2).sum(1)
        return sse.mean(), iou(pbox, tbox)

    def assign(self, preds: list[Tensor], targets: Tensor) -> list[LevelTargets]:
        """Match normalised targets ``[M, 6]`` to (image, anchor, cell) per level (module doc)."""
        det = self.det
        best = self.hyp.assigner == "best_anchor"
        if best:
            best_matches = best_anchor_matches(det.anchors.to(targets.device), targets, self._image_wh(preds[0], 0))
        out = []
        for i, p in enumerate(preds):
            h, w = p.shape[2], p.shape[3]
            anchors = det.anchors[i].to(p.device, torch.float32) / det.stride[i].to(p.device, torch.float32)
            size = torch.tensor([w, h], device=p.device, dtype=torch.float32)
            gxy, gwh = targets[:, 2:4] * size, targets[:, 4:6] * size  # [M, 2] grid units
            if best:
                a_idx, t_idx = best_matches[i]
            else:
                ratio = gwh[None] / anchors[:, None]  # [na, M, 2]
                ok = torch.max(ratio, 1 / ratio).amax(-1) < self.hyp.anchor_t
                a_idx, t_idx = ok.nonzero(as_tuple=True)
            out.append(self._cells(targets[t_idx], gxy[t_idx], gwh[t_idx], a_idx, anchors, size, neighbours=not best))
        return out

    def _cells(self, tgt: Tensor, gxy: Tensor, gwh: Tensor, a_idx: Tensor, anchors: Tensor,
               size: Tensor, neighbours: bool = True) -> LevelTargets:
        """Expand anchor matches ``[K]`` to the centre cell (+ neighbours for the scaled decode,
        unless ``neighbours`` is False: the best-anchor assigner uses the centre cell only)."""
        offsets = torch.tensor(_CELL_OFFSETS, device=gxy.device, dtype=torch.long)
        frac = gxy % 1
        use = [torch.ones(gxy.shape[0], dtype=torch.bool, device=gxy.device)]
        if self.det.decode == "scaled" and neighbours:
            low = (frac < 0.5) & (gxy >= 1)           # left / top neighbour exists and is nearer
            high = (frac > 0.5) & (gxy < size - 1)    # right / bottom neighbour
            use += [low[:, 0], low[:, 1], high[:, 0], high[:, 1]]
        o_idx, k_idx = torch.stack(use).nonzero(as_tuple=True)
        cell = gxy[k_idx].long() + offsets[o_idx]
        cell = torch.minimum(cell.clamp(min=0), (size.long() - 1))
        return LevelTargets(
            img=tgt[k_idx, 0].long(), anchor=a_idx[k_idx], gy=cell[:, 1], gx=cell[:, 0],
            box=torch.cat((gxy[k_idx] - cell, gwh[k_idx]), 1),
            anchor_wh=anchors[a_idx[k_idx]], cls=tgt[k_idx, 1].long(),
        )
