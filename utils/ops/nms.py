"""Non-maximum suppression (plain and DIoU) and the map from letterboxed boxes back to the image.

Two suppression rules, both greedy in decreasing score order:

* ``"nms"``  -- box ``B`` is dropped when ``IoU(M, B) > iou_thres`` for a kept higher-scored box
  ``M`` (torchvision's rule; :func:`non_max_suppression` calls ``torchvision.ops.batched_nms``);
* ``"diou"`` -- DIoU-NMS (seed 003): ``B`` is dropped when ``IoU(M, B) - rho^2(M, B) / c^2 >=
  iou_thres``, ``rho`` the distance of the two centres and ``c`` the diagonal of the smallest box
  enclosing both. Two heavily overlapping boxes whose centres are far apart (two occluding
  objects) both survive.

Both rules are computed by the box-geometry core (:func:`utils.ops.boxes.aligned_inter_union`,
:func:`utils.ops.boxes.diou`), so DIoU-NMS and the DIoU box loss share one formula and one eps.

Both are implemented here by one vectorised pass with no Python loop over boxes (the plain one
only to check the machinery against torchvision; :func:`non_max_suppression` uses torchvision's
C++ kernel for ``"nms"``). Boxes are sorted by (class, x1) and every same-class pair whose
x-intervals overlap is tested with the rule (in chunks, to bound memory), giving a sparse list of
"kept box src would drop box dst" edges. The greedy result is the unique fixed point of
``keep[i] = not any(keep[j] for edges j -> i)``: iterating that map from "all kept" settles at
least one more box in score order per step and in practice converges in a few steps (the
Cluster-NMS argument of the DIoU authors). The result is exactly that of the box-by-box loop.
Pruning by x-overlap is valid because both rules need intersecting boxes to fire when the
threshold is positive (DIoU <= IoU); for ``iou_thres <= 0`` every same-class pair is tested.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
import torchvision
from torch import Tensor

from utils.ops.boxes import aligned_inter_union, clip_boxes, cxcywh_to_xyxy, diou

NMS_KINDS = ("nms", "diou")
_CHUNK = 1 << 20  # candidate pairs evaluated per chunk (bounds memory)

# (boxes1 [4, P], boxes2 [4, P], thres) -> bool [P]: box 1, if kept, drops box 2 (symmetric rules)
SuppressFn = Callable[[Tensor, Tensor, float], Tensor]


def _iou_suppress(b: Tensor, c: Tensor, thres: float) -> Tensor:
    """torchvision's rule on aligned boxes ``b``, ``c`` ``[4, P]``: IoU > thres (no eps)."""
    inter, union = aligned_inter_union(b.T, c.T)
    return inter / union > thres


def _diou_suppress(b: Tensor, c: Tensor, thres: float) -> Tensor:
    """Seed 003 rule on aligned boxes ``[4, P]``: IoU - rho^2 / c^2 >= thres (eps 1e-7 added to
    the union and to c^2, as :func:`utils.ops.boxes.diou`)."""
    return diou(b.T, c.T) >= thres


def _sweep_order(boxes: Tensor, idxs: Tensor, prune: bool) -> tuple[Tensor, Tensor]:
    """Sort by (class, x1); ``count[p]``: how many following boxes to pair with position ``p``.

    With ``prune`` those are the same-class boxes starting before box ``p`` ends in x (a superset
    of the boxes intersecting it); without, all following boxes of its class.
    """
    x1, x2 = boxes[:, 0].double(), boxes[:, 2].double()
    lo = x1.min()
    span = float(torch.max(x2.max(), x1.max()) - lo) + 2.0
    cls = idxs - idxs.min()
    base = cls.double() * span
    key = base + (x1 - lo)
    margin = 1e-6 + 1e-12 * span * (float(cls.max()) + 1.0)  # float64 rounding of the keys
    upper = base + ((x2 - lo).clamp(min=0) + margin if prune else span - 1.0)
    order = torch.sort(key, stable=True).indices
    hi = torch.searchsorted(key[order], upper[order], right=True)
    first = torch.arange(boxes.shape[0], device=boxes.device)
    return order, (hi - first - 1).clamp(min=0)


def _suppression_edges(boxes: Tensor, idxs: Tensor, rank: Tensor, thres: float,
                       suppress_fn: SuppressFn, prune: bool) -> tuple[Tensor, Tensor]:
    """Directed edges (src, dst): src outranks dst, same class, and src drops dst by the rule."""
    order, count = _sweep_order(boxes, idxs, prune)
    sb = boxes[order].t().contiguous()  # [4, n] sorted coordinates
    csum = torch.cumsum(count, 0)
    excl = csum - count
    marks = torch.arange(_CHUNK, max(int(csum[-1]), _CHUNK), _CHUNK, device=csum.device)
    bounds = [0] + sorted(set(torch.searchsorted(csum, marks).tolist())) + [boxes.shape[0]]
    srcs, dsts = [], []
    for pa, pb in zip(bounds[:-1], bounds[1:]):
        cnt = count[pa:pb]
        pos = torch.arange(pa, pb, device=boxes.device)
        p = torch.repeat_interleave(pos, cnt)
        if p.numel() == 0:
            continue
        # the k-th pair of position p is (p, p + 1 + k): q = running pair number + per-p offset
        q = torch.arange(p.numel(), device=p.device) + \
            torch.repeat_interleave(pos + 1 - (excl[pa:pb] - excl[pa]), cnt)
        if prune:  # x-intervals overlap by construction; need a strict y overlap as well
            m = (sb[1].index_select(0, q) < sb[3].index_select(0, p)) & \
                (sb[1].index_select(0, p) < sb[3].index_select(0, q))
            m = torch.nonzero(m).flatten()
            p, q = p.index_select(0, m), q.index_select(0, m)
        hit = torch.nonzero(suppress_fn(sb.index_select(1, p), sb.index_select(1, q), thres)).flatten()
        i, j = order.index_select(0, p.index_select(0, hit)), order.index_select(0, q.index_select(0, hit))
        swap = rank.index_select(0, i) > rank.index_select(0, j)
        srcs.append(torch.where(swap, j, i))
        dsts.append(torch.where(swap, i, j))
    if not srcs:
        empty = torch.zeros(0, dtype=torch.int64, device=boxes.device)
        return empty, empty
    return torch.cat(srcs), torch.cat(dsts)


def _greedy_nms(boxes_xyxy: Tensor, scores: Tensor, idxs: Tensor, thres: float,
                suppress_fn: SuppressFn, prune: bool) -> Tensor:
    """Class-aware greedy NMS with a symmetric pairwise rule -> kept indices by decreasing score."""
    n = boxes_xyxy.shape[0]
    device = boxes_xyxy.device
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=device)
    by_score = torch.sort(scores, descending=True, stable=True).indices
    rank = torch.empty_like(by_score)
    rank[by_score] = torch.arange(n, device=device)
    src, dst = _suppression_edges(boxes_xyxy, idxs, rank, thres, suppress_fn, prune)
    keep = torch.ones(n, dtype=torch.bool, device=device)
    for _ in range(n + 1):  # the greedy result is the unique fixed point; <= n + 1 steps
        hits = torch.zeros(n, dtype=torch.float32, device=device).index_add_(0, dst, keep[src].float())
        new = hits == 0
        if torch.equal(new, keep):
            break
        keep = new
    return by_score[keep[by_score]]


def batched_diou_nms(boxes_xyxy: Tensor, scores: Tensor, idxs: Tensor, iou_thres: float) -> Tensor:
    """Per-class DIoU-NMS (boxes of different ``idxs`` never suppress each other) -> kept indices
    ``[K]`` int64 by decreasing score (same contract as ``torchvision.ops.batched_nms``)."""
    return _greedy_nms(boxes_xyxy, scores, idxs, iou_thres, _diou_suppress, prune=iou_thres > 0)


def greedy_iou_nms(boxes_xyxy: Tensor, scores: Tensor, idxs: Tensor, iou_thres: float) -> Tensor:
    """The same vectorised greedy pass with torchvision's rule (drop when IoU > thres) -> kept
    indices as ``torchvision.ops.batched_nms``.

    Not on the inference path (``non_max_suppression`` calls torchvision's kernel for ``"nms"``):
    it is the reference that shows the machinery of :func:`batched_diou_nms` equal to
    torchvision, in tests (CPU and CUDA) and in ``benchmarks/bench_eval.py``, which times it
    beside torchvision and runs as a plain script that cannot import from ``tests/``.
    """
    return _greedy_nms(boxes_xyxy, scores, idxs, iou_thres, _iou_suppress, prune=iou_thres >= 0)


def _candidates(x: Tensor, conf_thres: float, multi_label: bool) -> Tensor:
    """One image's decoded head rows ``[N, 5+nc]`` -> ``[n, 6]`` (x1, y1, x2, y2, score, class)."""
    x = x[x[:, 4] > conf_thres]
    boxes = cxcywh_to_xyxy(x[:, :4])
    scores = x[:, 5:] * x[:, 4:5]
    if multi_label:
        i, j = (scores > conf_thres).nonzero(as_tuple=True)
        return torch.cat([boxes[i], scores[i, j, None], j[:, None].to(x.dtype)], 1)
    conf, j = scores.max(1, keepdim=True)
    det = torch.cat([boxes, conf, j.to(x.dtype)], 1)
    return det[conf.flatten() > conf_thres]


_RULES = {"nms": torchvision.ops.batched_nms, "diou": batched_diou_nms}
PREFIX_MIN = 1024  # the first prefix of score-sorted candidates that first_kept suppresses


def first_kept(boxes_xyxy: Tensor, scores: Tensor, idxs: Tensor, iou_thres: float, max_det: int,
               rule: Callable[[Tensor, Tensor, Tensor, float], Tensor]) -> Tensor:
    """The first ``max_det`` boxes greedy ``rule`` keeps, by decreasing score, from candidates
    already sorted by decreasing score (ties in their given order) -> their positions ``[k]``.

    Greedy suppression decides box ``i`` from the boxes ranked before it alone, so the boxes it
    keeps among the first ``m`` candidates are the same whether or not the others exist. When
    those first ``m`` hold ``max_det`` kept boxes, they are the answer and the remaining
    candidates need not be compared at all. The prefixes tried are ``max(PREFIX_MIN, 4 *
    max_det)`` and then 4x larger, each only while it is at most a quarter of the candidates
    (so a prefix that falls short costs little beside the whole), then every candidate: an
    untrained model at conf 0.001 (a validation in the first epochs) gives ~5,000 candidates an
    image of which the 300th kept one is ~the 1,000th, and suppressing all of them took most of
    the evaluation time. The result is that of ``rule`` on every candidate, truncated to ``max_det``
    (for torchvision's rule: on CPU both take its per-class loop from 1,000 boxes on; on CUDA a
    prefix of up to 25,000 may take its class-offset form, equal up to float rounding).
    """
    n = boxes_xyxy.shape[0]
    if max_det <= 0 or n == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes_xyxy.device)
    m = max(PREFIX_MIN, 4 * max_det)
    while 4 * m <= n:
        keep = torch.sort(rule(boxes_xyxy[:m], scores[:m], idxs[:m], iou_thres)).values  # score order
        if keep.numel() >= max_det:
            return keep[:max_det]
        m *= 4
    return torch.sort(rule(boxes_xyxy, scores, idxs, iou_thres)).values[:max_det]


def non_max_suppression(pred: Tensor, conf_thres: float = 0.25, iou_thres: float = 0.45,
                        classes: Optional[Sequence[int]] = None, agnostic: bool = False,
                        multi_label: bool = False, max_det: int = 300, nms: str = "nms",
                        max_wh: float = 7680, max_nms: int = 30000) -> list[Tensor]:
    """Decoded head output -> detections per image.

    Args:
        pred: ``[B, N, 5+nc]`` rows ``(cx, cy, w, h, obj, cls_0 ... cls_{nc-1})``, boxes in input
            pixels, ``obj`` and class scores already sigmoid-ed. The score of a class is
            ``obj * cls``; rows with ``obj <= conf_thres`` are dropped first.
        conf_thres: keep (box, class) pairs with score ``> conf_thres``.
        iou_thres: suppression threshold of the rule named by ``nms``.
        classes: keep only these class indices (None: all).
        agnostic: suppress across classes (one class for NMS; labels are kept).
        multi_label: one row per class whose score passes ``conf_thres`` (else the best class).
        max_det: at most this many detections per image (highest scores).
        nms: ``"nms"`` (torchvision IoU rule) or ``"diou"`` (DIoU-NMS).
        max_wh: rows wider or taller than this many pixels are dropped as degenerate.
        max_nms: at most this many highest-scored candidates enter NMS (ties: the first rows).

    Returns:
        list of ``B`` tensors ``[k, 6]`` = ``(x1, y1, x2, y2, score, class)``, xyxy input pixels,
        class as a float, sorted by decreasing score.
    """
    if nms not in NMS_KINDS:
        raise ValueError(f"non_max_suppression: nms must be one of {NMS_KINDS}, got {nms!r}")
    if not 0.0 <= conf_thres <= 1.0 or not 0.0 <= iou_thres <= 1.0:
        raise ValueError(f"non_max_suppression: conf_thres {conf_thres} and iou_thres {iou_thres} "
                         "must lie in [0, 1]")
    if pred.ndim != 3 or pred.shape[-1] < 6:
        raise ValueError(f"non_max_suppression: pred must be [B, N, 5+nc], got {tuple(pred.shape)}")
    want = None if classes is None else torch.as_tensor(list(classes), device=pred.device)
    out = []
    for x in pred:
        det = _candidates(x, conf_thres, multi_label)
        wh = det[:, 2:4] - det[:, 0:2]
        det = det[(wh <= max_wh).all(1)]
        if want is not None:
            det = det[(det[:, 5:6] == want.to(det.dtype)).any(1)]
        det = det[torch.sort(det[:, 4], descending=True, stable=True).indices[:max_nms]]
        idxs = torch.zeros_like(det[:, 5], dtype=torch.int64) if agnostic else det[:, 5].long()
        out.append(det[first_kept(det[:, :4], det[:, 4], idxs, iou_thres, max_det, _RULES[nms])])
    return out


ArrayOrTensor = Union[Tensor, np.ndarray]


def scale_boxes(boxes_xyxy: ArrayOrTensor, from_shape_hw: tuple[int, int],
                to_shape_hw: tuple[int, int],
                ratio_pad: Optional[tuple[tuple[float, float], tuple[float, float]]] = None
                ) -> ArrayOrTensor:
    """Map ``[..., 4]`` xyxy boxes on a letterboxed image back to the original image, clipped.

    Args:
        boxes_xyxy: boxes in pixels of the letterboxed image (torch or numpy; not modified).
        from_shape_hw: ``(h, w)`` of the letterboxed (network input) image.
        to_shape_hw: ``(h0, w0)`` of the original image.
        ratio_pad: ``((ratio_h, ratio_w), (pad_w, pad_h))`` as the data loader's ``shapes``
            entry gives it; exact inverse of the letterbox. When None, the image is assumed
            resized by ``min(h / h0, w / w0)`` and centred with unrounded padding.
    """
    if ratio_pad is None:
        gain = min(from_shape_hw[0] / to_shape_hw[0], from_shape_hw[1] / to_shape_hw[1])
        (ratio_h, ratio_w) = (gain, gain)
        pad_w = (from_shape_hw[1] - to_shape_hw[1] * gain) / 2
        pad_h = (from_shape_hw[0] - to_shape_hw[0] * gain) / 2
    else:
        (ratio_h, ratio_w), (pad_w, pad_h) = ratio_pad
    out = boxes_xyxy.clone() if isinstance(boxes_xyxy, Tensor) else np.array(boxes_xyxy, copy=True)
    out[..., [0, 2]] = (out[..., [0, 2]] - pad_w) / ratio_w
    out[..., [1, 3]] = (out[..., [1, 3]] - pad_h) / ratio_h
    return clip_boxes(out, to_shape_hw)
