"""Detection metrics: COCO mAP with pycocotools semantics, yolov5-style summaries, confusion matrix.

:func:`coco_evaluate` reproduces ``pycocotools.cocoeval.COCOeval(..., "bbox")`` (evaluate +
accumulate + summarize) on in-memory arrays, vectorised with numpy:

* IoU thresholds 0.50:0.05:0.95, 101 recall points, maxDets 1/10/100, area ranges all / small
  (< 32^2) / medium / large (> 96^2), categories evaluated separately;
* per (image, class) detections sorted by score with a stable sort and cut to the top 100; the 1
  and 10 settings take the first 1 / 10 of those;
* greedy matching in score order: a detection takes the unmatched non-ignored ground truth (GT)
  of highest IoU >= t (ties: the later GT); only if there is none, an ignored one (crowd regions,
  which can be matched repeatedly, or GT outside the area range). A detection matched to an
  ignored GT is ignored, as is an unmatched detection outside the area range;
* IoU with a crowd region is intersection / detection area; the GT area for the ranges is the
  ``area`` field (COCO's segmentation area) when given, else the box area; a detection's area is
  its box area;
* precision is made monotone from the right and read at the first detection whose recall
  reaches each recall point (0 past the last one); -1 marks undefined entries (no GT).

Images are identified by their position in the input sequences: ties in score between images
are broken by that position, as pycocotools breaks them by sorted image id.
The matching is one vectorised step per detection rank (at most 100 steps): all (image, class)
groups advance together, with only the IoU >= 0.5 pairs kept.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from utils.ops.boxes import aligned_inter_union, box_area, pairwise_inter_union

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1)
MAX_DETS = (1, 10, 100)
AREA_RANGES = ((0.0, 1e10), (0.0, 32.0 ** 2), (32.0 ** 2, 96.0 ** 2), (96.0 ** 2, 1e10))
AREA_NAMES = ("all", "small", "medium", "large")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass
class ImageGT:
    """Ground truth of one image: ``boxes`` [n, 4] xyxy pixels, ``classes`` [n] int in
    ``[0, num_classes)``, ``iscrowd`` [n] bool (None: no crowd), ``area`` [n] (None: box area)."""
    boxes: np.ndarray
    classes: np.ndarray
    iscrowd: Optional[np.ndarray] = None
    area: Optional[np.ndarray] = None


@dataclass
class ImageDet:
    """Detections of one image: ``boxes`` [k, 4] xyxy pixels, ``scores`` [k], ``classes`` [k] int."""
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


def ground_truth(records) -> list[ImageGT]:
    """Evaluation ground truth from dataset records (``utils.data.records.ImageRecord``); VOC
    'difficult' boxes count as ignore regions, like COCO crowds."""
    return [ImageGT(r.boxes_xyxy.astype(np.float64), r.classes, r.iscrowd | r.difficult, r.area) for r in records]


@dataclass
class CocoEval:
    """``stats`` [12] in :data:`STAT_NAMES` order (-1 when undefined); ``precision`` [T, R, K, A, M]
    and ``recall`` [T, K, A, M] as pycocotools' ``eval`` dict; ``per_class_ap`` / ``per_class_ap50``
    [K] (AP@.5:.95 / AP@.5, area all, 100 dets; nan for a class without GT)."""
    stats: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    per_class_ap: np.ndarray
    per_class_ap50: np.ndarray

    def summary(self) -> str:
        """The twelve numbers, one per line, labelled like pycocotools' printout."""
        return "\n".join(f"{name:>6s} = {value:.4f}" for name, value in zip(STAT_NAMES, self.stats))


@dataclass
class _Flat:
    """All images concatenated; detections sorted by (image, class, -score), top 100 per group."""
    g_boxes: np.ndarray      # [G, 4] float64, sorted by (image, class), input order within
    g_group: np.ndarray      # [G] image * K + class
    g_crowd: np.ndarray      # [G] bool
    g_ignore: np.ndarray     # [A, G] bool: crowd or area outside the range
    d_boxes: np.ndarray      # [D, 4] float64
    d_scores: np.ndarray     # [D]
    d_group: np.ndarray      # [D]
    d_rank: np.ndarray       # [D] rank by score inside its (image, class) group
    d_outside: np.ndarray    # [A, D] bool: box area outside the range
    num_classes: int


def _stack(arrays: list, shape_tail: tuple, dtype) -> np.ndarray:
    parts = [np.asarray(a, dtype=dtype).reshape((-1,) + shape_tail) for a in arrays]
    return np.concatenate(parts) if parts else np.zeros((0,) + shape_tail, dtype)


def _check_shapes(gts: Sequence[ImageGT], dets: Sequence[ImageDet]) -> None:
    if len(gts) != len(dets):
        raise ValueError(f"{len(gts)} ground-truth images but {len(dets)} detection images")
    for i, (g, d) in enumerate(zip(gts, dets)):
        for what, n, boxes, per_box in (
                ("ground truth", np.size(g.classes), g.boxes, {"iscrowd": g.iscrowd, "area": g.area}),
                ("detections", np.size(d.classes), d.boxes, {"scores": d.scores})):
            if np.size(boxes) != 4 * n:
                raise ValueError(f"{what} of image {i}: boxes must be [n, 4] with n = {n} (the number "
                                 f"of class labels), got shape {np.shape(boxes)}")
            for name, a in per_box.items():
                if a is not None and np.size(a) != n:
                    raise ValueError(f"{what} of image {i}: {name} has {np.size(a)} entries, expected {n}")


def _image_index(items: Sequence) -> np.ndarray:
    return np.repeat(np.arange(len(items)), [np.size(x.classes) for x in items])


def _classes(items: Sequence, image: np.ndarray, num_classes: int, what: str) -> np.ndarray:
    cls = _stack([x.classes for x in items], (), np.int64)
    bad = np.flatnonzero((cls < 0) | (cls >= num_classes))
    if bad.size:
        raise ValueError(f"{what} of image {image[bad[0]]}: class {cls[bad[0]]} outside [0, {num_classes})")
    return cls


def _outside(area: np.ndarray) -> np.ndarray:
    return np.stack([(area < lo) | (area > hi) for lo, hi in AREA_RANGES])


def _flatten(gts: Sequence[ImageGT], dets: Sequence[ImageDet], num_classes: int) -> _Flat:
    _check_shapes(gts, dets)
    k = num_classes
    g_img, d_img = _image_index(gts), _image_index(dets)
    g_boxes = _stack([g.boxes for g in gts], (4,), np.float64)
    g_group = g_img * k + _classes(gts, g_img, k, "ground truth")
    no = [np.full(np.size(g.classes), np.nan) for g in gts]
    g_crowd = _stack([n == 0 if g.iscrowd is None else g.iscrowd for g, n in zip(gts, no)], (), bool)
    g_area = _stack([n if g.area is None else g.area for g, n in zip(gts, no)], (), np.float64)
    g_area = np.where(np.isnan(g_area), box_area(g_boxes), g_area)
    go = np.argsort(g_group, kind="stable")
    d_group = d_img * k + _classes(dets, d_img, k, "detections")
    d_scores = _stack([d.scores for d in dets], (), np.float64)
    do = np.lexsort((np.arange(len(d_group)), -d_scores, d_group))  # stable: ties keep input order
    d_rank = np.arange(len(do)) - np.searchsorted(d_group[do], d_group[do], side="left")
    do, d_rank = do[d_rank < MAX_DETS[-1]], d_rank[d_rank < MAX_DETS[-1]]
    d_boxes = _stack([d.boxes for d in dets], (4,), np.float64)[do]
    return _Flat(g_boxes[go], g_group[go], g_crowd[go], _outside(g_area[go]) | g_crowd[go][None],
                 d_boxes, d_scores[do], d_group[do], d_rank, _outside(box_area(d_boxes)), k)


def _candidate_pairs(f: _Flat) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(detection, GT, IoU) of every same-group pair with IoU >= 0.5, by detection then GT."""
    lo = np.searchsorted(f.g_group, f.d_group, side="left")
    count = np.searchsorted(f.g_group, f.d_group, side="right") - lo
    pd = np.repeat(np.arange(len(f.d_group)), count)
    pg = np.arange(len(pd)) - np.repeat(np.cumsum(count) - count, count) + lo[pd]
    d = f.d_boxes[pd]
    inter, union = aligned_inter_union(d, f.g_boxes[pg])
    union = np.where(f.g_crowd[pg], box_area(d), union)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    keep = iou >= IOU_THRESHOLDS[0]
    return pd[keep], pg[keep], iou[keep]


def _match(f: _Flat) -> tuple[np.ndarray, np.ndarray]:
    """Greedy COCO matching for all thresholds and area ranges.

    Returns ``matched`` [T, A, D] and ``ignored`` [T, A, D] (matched to an ignored GT, or
    unmatched and outside the area range).
    """
    T, A, D = len(IOU_THRESHOLDS), len(AREA_RANGES), len(f.d_group)
    pd, pg, piou = _candidate_pairs(f)
    matched = np.zeros((T, A, D), bool)
    on_ignored = np.zeros((T, A, D), bool)
    gt_taken = np.zeros((T, A, len(f.g_group)), bool)
    cand = np.unique(pd)  # detections with a candidate, in (group, score) order
    step = np.arange(len(cand)) - np.searchsorted(f.d_group[cand], f.d_group[cand], side="left")
    step_of = np.zeros(D, np.int64)
    step_of[cand] = step
    order = np.argsort(step_of[pd], kind="stable")  # pairs by step, then detection, then GT
    pd, pg, piou = pd[order], pg[order], piou[order]
    bounds = np.searchsorted(step_of[pd], np.arange(step.max() + 2 if len(step) else 1))
    thr = IOU_THRESHOLDS[:, None, None]
    for a, b in zip(bounds[:-1], bounds[1:]):
        sd, sg, si = pd[a:b], pg[a:b], piou[a:b]
        starts = np.flatnonzero(np.r_[True, sd[1:] != sd[:-1]])
        seg = np.cumsum(np.r_[True, sd[1:] != sd[:-1]]) - 1
        valid = (f.g_crowd[sg] | ~gt_taken[:, :, sg]) & (si >= thr)  # [T, A, P]
        regular = valid & ~f.g_ignore[:, sg][None]
        use = np.where(np.logical_or.reduceat(regular, starts, axis=2)[..., seg], regular, valid)
        key = np.where(use, si, -1.0)
        best = np.maximum.reduceat(key, starts, axis=2)
        pos = np.where(use & (key == best[..., seg]), np.arange(len(sd)), -1)
        pick = np.maximum.reduceat(pos, starts, axis=2)  # last GT of best IoU; -1: no match
        t_i, a_i, s_i = np.nonzero(pick >= 0)
        gsel = sg[pick[t_i, a_i, s_i]]
        gt_taken[t_i, a_i, gsel] = True
        dsel = sd[starts[s_i]]
        matched[t_i, a_i, dsel] = True
        on_ignored[t_i, a_i, dsel] = f.g_ignore[a_i, gsel]
    return matched, on_ignored | (~matched & f.d_outside[None])


def _precision_curve(tp: np.ndarray, fp: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """``tp``, ``fp`` [T, n] bool in score order -> (101-point precision [T, R], final recall [T])."""
    tps = np.cumsum(tp, axis=1).astype(float)
    fps = np.cumsum(fp, axis=1).astype(float)
    n = tps.shape[1]
    rc = tps / n_gt
    pr = tps / (fps + tps + np.spacing(1))
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
    q = np.zeros((tps.shape[0], len(RECALL_THRESHOLDS)))
    for t in range(tps.shape[0]):
        idx = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
        ok = idx < n
        q[t, ok] = pr[t, idx[ok]]
    return q, (rc[:, -1] if n else np.zeros(tps.shape[0]))


def _accumulate(f: _Flat, matched: np.ndarray, ignored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    K, A = f.num_classes, len(AREA_RANGES)
    precision = -np.ones((len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), K, A, len(MAX_DETS)))
    recall = -np.ones((len(IOU_THRESHOLDS), K, A, len(MAX_DETS)))
    g_cls = f.g_group % K
    n_gt = np.stack([np.bincount(g_cls[~f.g_ignore[a]], minlength=K) for a in range(A)], 1)  # [K, A]
    d_cls = f.d_group % K
    order = np.lexsort((np.arange(len(d_cls)), -f.d_scores, d_cls))  # ties: image, then rank
    cuts = np.searchsorted(d_cls[order], np.arange(K + 1))
    for k in range(K):
        idx = order[cuts[k]:cuts[k + 1]]
        for m, max_det in enumerate(MAX_DETS):
            sel = idx[f.d_rank[idx] < max_det]
            for a in range(A):
                if n_gt[k, a] == 0:
                    continue
                dm, di = matched[:, a, sel], ignored[:, a, sel]
                q, rc = _precision_curve(dm & ~di, ~dm & ~di, n_gt[k, a])
                precision[:, :, k, a, m], recall[:, k, a, m] = q, rc
    return precision, recall


def _mean_defined(x: np.ndarray) -> float:
    v = x[x > -1]
    return float(v.mean()) if v.size else -1.0


def _summarize(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """The 12 numbers of pycocotools' summarize() (index [..., area, max-dets])."""
    p, r = precision, recall
    i75 = int(np.flatnonzero(np.isclose(IOU_THRESHOLDS, 0.75))[0])
    parts = [p[..., 0, 2], p[0, ..., 0, 2], p[i75, ..., 0, 2], p[..., 1, 2], p[..., 2, 2], p[..., 3, 2],
             r[..., 0, 0], r[..., 0, 1], r[..., 0, 2], r[..., 1, 2], r[..., 2, 2], r[..., 3, 2]]
    return np.array([_mean_defined(x) for x in parts])


def _evaluate(gts, dets, num_classes) -> tuple[CocoEval, _Flat, np.ndarray, np.ndarray]:
    f = _flatten(gts, dets, num_classes)
    matched, ignored = _match(f)
    precision, recall = _accumulate(f, matched, ignored)
    per_class = precision[:, :, :, 0, 2]  # [T, R, K]
    defined = (per_class > -1).all(axis=(0, 1))
    ap = np.where(defined, per_class.mean(axis=(0, 1)), np.nan)
    ap50 = np.where(defined, per_class[0].mean(axis=0), np.nan)
    return CocoEval(_summarize(precision, recall), precision, recall, ap, ap50), f, matched, ignored


def coco_evaluate(gts: Sequence[ImageGT], dets: Sequence[ImageDet], num_classes: int) -> CocoEval:
    """COCO bbox evaluation of ``dets[i]`` against ``gts[i]`` (same length, one entry per image,
    images without GT included) over classes ``0 .. num_classes - 1``. Equal to pycocotools'
    ``COCOeval(gt, dt, "bbox")`` stats within float rounding (see module docstring)."""
    return _evaluate(gts, dets, num_classes)[0]


# --- yolov5-style summary ------------------------------------------------------------------------

@dataclass
class DetectionMetrics:
    """Per-class table and curves for logs and plots; mAPs are COCO's (``coco.stats``).

    Per class ``[K]`` (nan where the class has no GT): ``precision`` and ``recall`` at
    ``best_conf`` (the confidence that maximises the mean F1 over classes with GT; matching at IoU
    0.5, area all, 100 detections), ``ap50``, ``ap`` (AP@.5:.95); ``instances`` (non-crowd GT) and
    ``images`` (images holding the class) are counts. Curves: ``p_curve``, ``r_curve``,
    ``f1_curve`` ``[K, C]`` against ``conf_grid`` ``[C]`` (detections with score >= conf;
    precision 0 without detections), and ``pr_precision`` ``[K, R]`` the COCO interpolated
    precision at IoU 0.5 against ``pr_recall`` ``[R]``.
    """
    names: list
    precision: np.ndarray
    recall: np.ndarray
    ap50: np.ndarray
    ap: np.ndarray
    instances: np.ndarray
    images: np.ndarray
    n_images: int
    best_conf: float
    mp: float
    mr: float
    map50: float
    map: float
    conf_grid: np.ndarray
    p_curve: np.ndarray
    r_curve: np.ndarray
    f1_curve: np.ndarray
    pr_recall: np.ndarray
    pr_precision: np.ndarray
    coco: CocoEval = field(repr=False)

    @property
    def fitness(self) -> float:
        """Checkpoint-selection score ``0.1 * mAP@.5 + 0.9 * mAP@.5:.95``."""
        return 0.1 * self.map50 + 0.9 * self.map

    def rows(self) -> list[tuple]:
        """``(name, images, instances, P, R, mAP50, mAP50-95)``: "all" first, then each class
        that has GT."""
        out = [("all", self.n_images, int(self.instances.sum()), self.mp, self.mr, self.map50, self.map)]
        for k in np.flatnonzero(self.instances > 0):
            out.append((self.names[k], int(self.images[k]), int(self.instances[k]), float(self.precision[k]),
                        float(self.recall[k]), float(self.ap50[k]), float(self.ap[k])))
        return out


def _conf_curves(f: _Flat, matched: np.ndarray, ignored: np.ndarray, grid: np.ndarray):
    """Precision and recall ``[K, C]`` of the detections with score >= each grid confidence."""
    K = f.num_classes
    n_gt = np.bincount((f.g_group % K)[~f.g_ignore[0]], minlength=K)
    keep = np.flatnonzero(~ignored[0, 0])  # COCO's matching at IoU 0.5, area "all"
    cls, scores, tp = (f.d_group % K)[keep], f.d_scores[keep], matched[0, 0][keep]
    order = np.lexsort((-scores, cls))
    cuts = np.searchsorted(cls[order], np.arange(K + 1))
    p = np.zeros((K, len(grid)))
    r = np.zeros((K, len(grid)))
    for k in range(K):
        idx = order[cuts[k]:cuts[k + 1]]
        tpc = np.r_[0, np.cumsum(tp[idx])]
        n = np.searchsorted(-scores[idx], -grid, side="right")  # detections with score >= conf
        p[k] = np.where(n > 0, tpc[n] / np.maximum(n, 1), 0.0)
        r[k] = tpc[n] / n_gt[k] if n_gt[k] else np.nan
    return p, r


def detection_metrics(gts: Sequence[ImageGT], dets: Sequence[ImageDet], num_classes: int,
                      names: Sequence[str]) -> DetectionMetrics:
    """COCO evaluation plus the yolov5-style per-class precision/recall table and curves."""
    if len(names) != num_classes:
        raise ValueError(f"detection_metrics: {len(names)} class names for num_classes={num_classes}")
    coco, f, matched, ignored = _evaluate(gts, dets, num_classes)
    K = num_classes
    has_gt = ~np.isnan(coco.per_class_ap)
    grid = np.linspace(0.0, 1.0, 1001)
    p, r = _conf_curves(f, matched, ignored, grid)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    f1[~has_gt] = np.nan
    best = int(np.argmax(f1[has_gt].mean(0))) if has_gt.any() else 0
    nan_k = np.full(K, np.nan)
    prec = np.where(has_gt, p[:, best], nan_k)
    rec = np.where(has_gt, r[:, best], nan_k)
    valid = ~f.g_crowd
    g_cls, g_img = (f.g_group % K)[valid], (f.g_group // K)[valid]
    instances = np.bincount(g_cls, minlength=K)
    images = np.bincount(np.unique(g_img * K + g_cls) % K, minlength=K)
    pr50 = coco.precision[0, :, :, 0, 2].T.copy()  # [K, R]
    pr50[pr50 < 0] = np.nan
    mean = (lambda x: float(np.mean(x[has_gt]))) if has_gt.any() else (lambda x: 0.0)
    return DetectionMetrics(
        names=list(names), precision=prec, recall=rec, ap50=coco.per_class_ap50, ap=coco.per_class_ap,
        instances=instances, images=images, n_images=len(gts), best_conf=float(grid[best]),
        mp=mean(prec), mr=mean(rec), map50=max(float(coco.stats[1]), 0.0), map=max(float(coco.stats[0]), 0.0),
        conf_grid=grid, p_curve=p, r_curve=r, f1_curve=f1, pr_recall=RECALL_THRESHOLDS.copy(),
        pr_precision=pr50, coco=coco)


# --- confusion matrix ----------------------------------------------------------------------------

def _pairwise_iou(a: np.ndarray, b: np.ndarray, crowd_b: Optional[np.ndarray] = None) -> np.ndarray:
    """IoU of xyxy ``a`` [N, 4] and ``b`` [M, 4] -> [N, M]; for crowd columns inter / area(a)."""
    inter, union = pairwise_inter_union(a, b)
    if crowd_b is not None:
        union = np.where(crowd_b[None], box_area(a)[:, None], union)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(inter / union)


def confusion_matrix(gts: Sequence[ImageGT], dets: Sequence[ImageDet], num_classes: int,
                     conf: float = 0.25, iou_thres: float = 0.45) -> np.ndarray:
    """``[nc + 1, nc + 1]`` counts, rows = predicted class, columns = true class, last row/column
    = background (a missed GT counts in the last row, a false detection in the last column).

    Detections with score > ``conf`` are matched one-to-one to non-crowd GT of any class, greedily
    by decreasing IoU among pairs with IoU > ``iou_thres``. An unmatched detection whose
    intersection with a crowd region exceeds ``iou_thres`` of its own area is not counted.
    """
    if len(gts) != len(dets):
        raise ValueError(f"{len(gts)} ground-truth images but {len(dets)} detection images")
    nc = num_classes
    cm = np.zeros((nc + 1, nc + 1), np.int64)
    for g, d in zip(gts, dets):
        gb, gc = np.asarray(g.boxes, float).reshape(-1, 4), np.asarray(g.classes, int).ravel()
        crowd = np.zeros(len(gc), bool) if g.iscrowd is None else np.asarray(g.iscrowd, bool).ravel()
        keep = np.asarray(d.scores).ravel() > conf
        db, dc = np.asarray(d.boxes, float).reshape(-1, 4)[keep], np.asarray(d.classes, int).ravel()[keep]
        iou = _pairwise_iou(gb[~crowd], db)
        gi, di = np.nonzero(iou > iou_thres)
        order = np.argsort(-iou[gi, di], kind="stable")
        g_used, d_used = np.zeros(len(iou), bool), np.zeros(len(db), bool)
        for i, j in zip(gi[order], di[order]):
            if not g_used[i] and not d_used[j]:
                g_used[i] = d_used[j] = True
                cm[dc[j], gc[~crowd][i]] += 1
        np.add.at(cm, (nc, gc[~crowd][~g_used]), 1)
        fp = ~d_used
        if crowd.any():
            fp &= ~(_pairwise_iou(db, gb[crowd], np.ones(crowd.sum(), bool)) > iou_thres).any(1)
        np.add.at(cm, (dc[fp], nc), 1)
    return cm
