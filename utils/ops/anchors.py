"""Anchor sizes from the data: k-means with an IoU distance (YOLOv2 "dimension clusters", seed 004)
and the best-possible-recall check (yolov5 semantics).

All sizes are ``(w, h)`` in INPUT pixels: label sizes are scaled as the loader scales images
(long side -> ``img_size``). Command line::

    python -m utils.ops.anchors --data data/coco128.yaml --img-size 640 -n 9
"""
from __future__ import annotations

import argparse
import logging

import numpy as np

from utils.data.records import DatasetInfo
from utils.ops.boxes import wh_iou

LOGGER = logging.getLogger(__name__)

BPR_OK = 0.98        # best possible recall above which the model's anchors are kept
MIN_LABEL_PX = 2.0   # label sizes below this (either side, at img_size) are left out of the statistics


def ratio_metric(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """``[n, k]``: for each label and anchor, the worse of ``min(r, 1/r)`` over w and h, with
    ``r = label / anchor`` (1 = same size). yolov5 assigns a label to an anchor when this is
    above ``1 / anchor_t``."""
    r = wh[:, None] / anchors[None]
    return np.minimum(r, 1 / r).min(2)


def best_possible_recall(wh: np.ndarray, anchors: np.ndarray, anchor_t: float) -> float:
    """Fraction of labels with at least one anchor within the ``anchor_t`` size ratio."""
    if len(wh) == 0:
        return 1.0
    return float((ratio_metric(wh, anchors).max(1) > 1 / anchor_t).mean())


def anchors_per_target(wh: np.ndarray, anchors: np.ndarray, anchor_t: float) -> float:
    """Mean number of anchors within the ratio threshold per label."""
    return float((ratio_metric(wh, anchors) > 1 / anchor_t).sum(1).mean()) if len(wh) else 0.0


def _kmeans_pp_init(wh: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    centres = [wh[rng.integers(len(wh))]]
    for _ in range(1, n):
        d = 1 - wh_iou(wh, np.array(centres)).max(1)
        p = d**2 / (d**2).sum() if d.sum() > 0 else None
        centres.append(wh[rng.choice(len(wh), p=p)])
    return np.array(centres, np.float64)


def _kmeans_once(wh: np.ndarray, n: int, rng: np.random.Generator, iters: int) -> np.ndarray:
    centres = _kmeans_pp_init(wh, n, rng)
    assign = None
    for _ in range(iters):
        new_assign = wh_iou(wh, centres).argmax(1)
        if assign is not None and (new_assign == assign).all():
            break
        assign = new_assign
        for k in range(n):
            members = wh[assign == k]
            if len(members):
                centres[k] = np.median(members, 0)
            else:  # empty cluster: restart it at the label worst covered
                centres[k] = wh[wh_iou(wh, centres).max(1).argmin()]
    return centres


def kmeans_anchors(wh: np.ndarray, n: int, iters: int = 300, restarts: int = 3, seed: int = 0) -> np.ndarray:
    """``n`` anchors ``[n, 2]`` (sorted by area) clustering label sizes ``wh`` ``[N, 2]`` with the
    distance ``1 - IoU`` (centres: per-cluster median). The best of ``restarts`` k-means++ runs by
    mean best IoU is returned."""
    wh = np.asarray(wh, np.float64)
    if len(wh) < n:
        raise ValueError(f"k-means needs at least {n} label sizes, got {len(wh)}")
    rng = np.random.default_rng(seed)
    best, best_fit = None, -1.0
    for _ in range(restarts):
        centres = _kmeans_once(wh, n, rng, iters)
        fit = wh_iou(wh, centres).max(1).mean()
        if fit > best_fit:
            best, best_fit = centres, fit
    return best[np.argsort(best.prod(1))].astype(np.float32)


def label_wh(info: DatasetInfo, img_size: int) -> np.ndarray:
    """Training-target sizes ``[N, 2]`` in pixels at ``img_size`` (image long side -> img_size);
    sizes under ``MIN_LABEL_PX`` are left out."""
    sizes = []
    for r in info.records:
        b = r.boxes_xyxy[r.train_mask]
        sizes.append((b[:, 2:4] - b[:, 0:2]) * (img_size / max(r.width, r.height)))
    wh = np.concatenate(sizes) if sizes else np.zeros((0, 2))
    return wh[(wh >= MIN_LABEL_PX).all(1)].astype(np.float64)


def check_anchors(dataset, model_anchors_px, anchor_t: float, img_size: int) -> tuple[float, np.ndarray | None]:
    """Best possible recall of the model's anchors on ``dataset``'s labels, and new anchors when
    it is below ``BPR_OK`` and k-means does better.

    Args:
        dataset: a :class:`DatasetInfo` or anything with an ``info`` attribute holding one.
        model_anchors_px: ``[nl, na, 2]`` (tensor or array), e.g. ``model.detect.anchors``.
    Returns:
        ``(bpr, new)`` with ``new`` float32 ``[nl, na, 2]`` (small to large, level by level) or None.
    """
    info = dataset if isinstance(dataset, DatasetInfo) else dataset.info
    current = np.asarray(getattr(model_anchors_px, "detach", lambda: model_anchors_px)(), np.float64)
    shape = current.shape
    current = current.reshape(-1, 2)
    wh = label_wh(info, img_size)
    bpr = best_possible_recall(wh, current, anchor_t)
    LOGGER.info("anchors: best possible recall %.4f, %.2f anchors/target (%d labels at %d px)",
                bpr, anchors_per_target(wh, current, anchor_t), len(wh), img_size)
    if bpr >= BPR_OK or len(wh) < len(current):
        return bpr, None
    new = kmeans_anchors(wh, len(current))
    new_bpr = best_possible_recall(wh, new, anchor_t)
    if new_bpr <= bpr:
        LOGGER.info("anchors: k-means anchors reach bpr %.4f, no better; keeping the model's", new_bpr)
        return bpr, None
    LOGGER.info("anchors: k-means anchors raise bpr %.4f -> %.4f: %s", bpr, new_bpr,
                np.round(new).astype(int).tolist())
    return bpr, new.reshape(shape).astype(np.float32)


def format_anchors(anchors: np.ndarray, levels: int) -> str:
    """YAML ``anchors:`` rows, ``levels`` rows of ``w,h`` pairs, small first."""
    rows = np.array_split(np.round(anchors).astype(int), levels)
    strides = [8 * 2**i for i in range(levels)]
    lines = ["anchors:"]
    for row, s in zip(rows, strides):
        pairs = ", ".join(f"{w},{h}" for w, h in row)
        lines.append(f"  - [{pairs}]  # P{s.bit_length() - 1}/{s}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from utils.data.config import load_data_config
    from utils.data.datasets import load_split

    ap = argparse.ArgumentParser(prog="python -m utils.ops.anchors", description="k-means (IoU distance) anchors for a dataset YAML")
    ap.add_argument("--data", required=True, help="dataset YAML")
    ap.add_argument("--img-size", type=int, default=640, help="training image size (long side), px")
    ap.add_argument("-n", type=int, default=9, help="number of anchors")
    ap.add_argument("--levels", type=int, default=3, help="detection levels the anchors are split over")
    ap.add_argument("--split", default="train")
    ap.add_argument("--anchor-t", type=float, default=4.0, help="size ratio threshold for the BPR")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    info = load_split(load_data_config(args.data), args.split)
    wh = label_wh(info, args.img_size)
    anchors = kmeans_anchors(wh, args.n, seed=args.seed)
    print(f"{len(wh)} labels at {args.img_size} px; mean best IoU {wh_iou(wh, anchors).max(1).mean():.4f}; "
          f"best possible recall {best_possible_recall(wh, anchors, args.anchor_t):.4f} "
          f"(anchor_t {args.anchor_t}); {anchors_per_target(wh, anchors, args.anchor_t):.2f} anchors/target")
    print(format_anchors(anchors, args.levels))


if __name__ == "__main__":
    main()
