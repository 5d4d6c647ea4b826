#!/usr/bin/env python3
"""Evaluation benchmark: COCO mAP (ours vs pycocotools, and faster-coco-eval when installed) and NMS.

Run from the repository root:
    .venv/bin/python benchmarks/bench_eval.py            # ~1.5-3 min on 2 cores
    .venv/bin/python benchmarks/bench_eval.py --quick    # 1,000 images, fewer repetitions

1 coco  5,000 synthetic images (640x480, Poisson(7) boxes each, 80 classes, log-uniform sizes
        8..320 px); detections = 85 % of the GT jittered by 10 % of their size (5 % with a wrong
        class) + Poisson(3) random false positives per image, seed 0 -- the generator of
        /work/shared/bench/peer_bench.py (same draws, so the same data and AP). Timed: pycocotools
        COCOeval bbox evaluate + accumulate + summarize (loadRes reported apart) against
        utils.eval.metrics.coco_evaluate on the same boxes as arrays; the largest difference of the 12
        stats is printed.
2 nms   torchvision.ops.batched_nms against utils.ops.nms (greedy_iou_nms, the same rule in the
        vectorised pass; batched_diou_nms) on 1k/10k/30k random xyxy boxes of 80 classes (seed 0,
        8..128 px in 600 px), iou 0.45, 1 torch thread (--nms-threads); and
        utils.ops.nms.non_max_suppression (nms="nms" / "diou") on a random [1, 25200, 85] head output at
        conf 0.001 and 0.25 (as peer_bench section 4).
0 probe a pure-Python loop at the start and the end: the machine drifts, compare within one run.

Output: a header and one markdown table on stdout (median over repetitions; spread min-max).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import numpy as np
import torch
import torchvision

from utils.eval.metrics import ImageDet, ImageGT, coco_evaluate
from utils.ops.nms import batched_diou_nms, greedy_iou_nms, non_max_suppression
from machine_probe import cpu_name  # same folder (run as a script)

THREADS = 2


def timeit(fn, warmup: int, reps: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


class Table:
    def __init__(self):
        self.rows = []

    def add(self, sec, what, setting, times, scale=1e3, unit="ms", extra=""):
        med = statistics.median(times) * scale
        spread = f"{min(times) * scale:.4g}-{max(times) * scale:.4g} (n={len(times)})"
        self.rows.append((sec, what, setting, f"{med:.4g}", unit, spread, extra))
        return med

    def markdown(self) -> str:
        head = ("#", "benchmark", "setting", "median", "unit", "spread min-max (n)", "details")
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
        return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in self.rows])


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def probe(table: Table, label: str) -> None:
    times = timeit(lambda: sum(i * i for i in range(1_000_000)), 1, 5)
    table.add("0", f"machine probe ({label}): pure-Python loop, 1e6 iterations", "1 thread", times,
              extra="drift check for single-threaded code")


# ------------------------------------------------------------------------------------- coco
def synthetic_coco(n_images: int = 5000, seed: int = 0):
    """GT dict and detection rows (image_id, category_id, x, y, w, h, score); draw order as peer_bench."""
    rng = np.random.default_rng(seed)
    W, H = 640, 480
    images, anns, dets = [], [], []
    for img_id in range(1, n_images + 1):
        images.append({"id": img_id, "width": W, "height": H, "file_name": f"{img_id:012d}.jpg"})
        for _ in range(rng.poisson(7)):
            w, h = np.exp(rng.uniform(math.log(8), math.log(320), 2))
            x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
            c = int(rng.integers(1, 81))
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": c, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0})
            if rng.random() < 0.85:
                j = rng.normal(0, 0.1, 4)
                dw, dh = w * math.exp(j[2]), h * math.exp(j[3])
                dc = c if rng.random() < 0.95 else int(rng.integers(1, 81))
                score = float(np.clip(1 - np.abs(j).sum() + rng.normal(0, 0.1), 0.01, 1))
                dets.append((img_id, dc, x + j[0] * w, y + j[1] * h, dw, dh, score))
        for _ in range(rng.poisson(3)):
            w, h = np.exp(rng.uniform(math.log(8), math.log(320), 2))
            c = int(rng.integers(1, 81))
            x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
            dets.append((img_id, c, x, y, w, h, float(rng.uniform(0.01, 0.6))))
    cats = [{"id": i, "name": f"c{i}"} for i in range(1, 81)]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def to_arrays(gt: dict, dets: list):
    """COCO dict + rows -> (list[ImageGT], list[ImageDet], num_classes), images by sorted id."""
    ids = sorted(im["id"] for im in gt["images"])
    pos = {i: k for k, i in enumerate(ids)}
    cmap = {c: k for k, c in enumerate(sorted(c["id"] for c in gt["categories"]))}
    ga, da = [[] for _ in ids], [[] for _ in ids]
    for a in gt["annotations"]:
        ga[pos[a["image_id"]]].append((*a["bbox"], cmap[a["category_id"]], a["iscrowd"], a["area"]))
    for d in dets:
        da[pos[d[0]]].append((*d[2:7], cmap[d[1]]))
    gts, out = [], []
    for g, d in zip(ga, da):
        g, d = np.array(g, float).reshape(-1, 7), np.array(d, float).reshape(-1, 6)
        gts.append(ImageGT(np.c_[g[:, :2], g[:, :2] + g[:, 2:4]], g[:, 4].astype(int), g[:, 5] > 0, g[:, 6]))
        out.append(ImageDet(np.c_[d[:, :2], d[:, :2] + d[:, 2:4]], d[:, 4], d[:, 5].astype(int)))
    return gts, out, len(cmap)


def det_dicts(dets):
    return [{"image_id": d[0], "category_id": d[1], "bbox": [float(v) for v in d[2:6]], "score": d[6]}
            for d in dets]


def bench_coco(table: Table, n_images: int, reps_ref: int, reps_ours: int) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    gt, dets = synthetic_coco(n_images)
    setting = f"{n_images} imgs, {len(gt['annotations'])} GT, {len(dets)} dets"
    log(f"[1] {setting}")
    t = time.perf_counter()
    gts, ds, nc = to_arrays(gt, dets)
    t_conv = time.perf_counter() - t
    ours = None

    def run_ours():
        nonlocal ours
        ours = coco_evaluate(gts, ds, nc)
    t_ours = table.add("1", "ours utils.eval.metrics.coco_evaluate", setting, timeit(run_ours, 1, reps_ours),
                       1, "s", f"AP {ours.stats[0]:.4f}, AP50 {ours.stats[1]:.4f}; "
                               f"JSON-like rows -> arrays {t_conv:.2f} s extra")
    log(f"[1] ours {t_ours:.2f} s")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
    times, stats = [], None
    for _ in range(reps_ref):
        with contextlib.redirect_stdout(io.StringIO()):
            res = coco.loadRes(det_dicts(dets))
            t = time.perf_counter()
            ev = COCOeval(coco, res, "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            times.append(time.perf_counter() - t)
        stats = np.array(ev.stats)
    diff = np.abs(stats - ours.stats).max()
    what = f"pycocotools {_version('pycocotools')} COCOeval bbox (evaluate+accumulate+summarize)"
    speedup = statistics.median(times) / t_ours
    t_ref = table.add("1", what, "same data", times, 1, "s",
                      f"ours {speedup:.1f}x faster; max abs stats difference {diff:.2e}")
    log(f"[1] pycocotools {t_ref:.2f} s, max diff {diff:.2e}")
    bench_faster_coco_eval(table, gt, dets, reps_ref, ours.stats, t_ours)


def bench_faster_coco_eval(table: Table, gt: dict, dets: list, reps: int, ours_stats, t_ours: float) -> None:
    try:
        from faster_coco_eval import COCO as FCOCO
        from faster_coco_eval import COCOeval_faster
    except ImportError:
        table.rows.append(("1", "faster-coco-eval", "not installed", "-", "", "", "optional"))
        return
    fgt = FCOCO(copy.deepcopy(gt))
    times, stats = [], None
    for _ in range(reps):
        with contextlib.redirect_stdout(io.StringIO()):
            fdt = fgt.loadRes(det_dicts(dets))
            t = time.perf_counter()
            ev = COCOeval_faster(fgt, fdt, "bbox", print_function=lambda *a, **k: None)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            times.append(time.perf_counter() - t)
        stats = np.array(ev.stats[:12])
    table.add("1", f"faster-coco-eval {_version('faster-coco-eval')} COCOeval_faster bbox (same 3 calls)",
              "same data", times, 1, "s",
              f"time / ours {statistics.median(times) / t_ours:.2f}; max abs stats difference to ours "
              f"{np.abs(stats - ours_stats).max():.2e}")


# -------------------------------------------------------------------------------------- nms
def bench_nms(table: Table, reps: int, threads: int) -> None:
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    for n in (1000, 10000, 30000):
        xy = torch.rand(n, 2, generator=g) * 600
        wh = 8 + torch.rand(n, 2, generator=g) * 120
        boxes = torch.cat([xy, xy + wh], 1)
        scores = torch.rand(n, generator=g)
        idxs = torch.randint(0, 80, (n,), generator=g)
        setting = f"{n} random boxes, 80 classes, iou 0.45, {threads} thread(s)"
        ref = torchvision.ops.batched_nms(boxes, scores, idxs, 0.45)
        same = set(greedy_iou_nms(boxes, scores, idxs, 0.45).tolist()) == set(ref.tolist())
        n_diou = len(batched_diou_nms(boxes, scores, idxs, 0.45))
        for name, fn, extra in (
                ("torchvision.ops.batched_nms", torchvision.ops.batched_nms, f"{len(ref)} kept"),
                ("ours greedy_iou_nms (vectorised, IoU rule)", greedy_iou_nms,
                 f"same kept set as torchvision: {same}"),
                ("ours batched_diou_nms", batched_diou_nms, f"{n_diou} kept")):
            times = timeit(lambda: fn(boxes, scores, idxs, 0.45), 1, reps)
            med = table.add("2", name, setting, times, extra=extra)
            log(f"[2] {name} {n}: {med:.1f} ms")
    pred = torch.rand(1, 25200, 85, generator=g)
    pred[..., 0:2] *= 640
    pred[..., 2:4] = 8 + pred[..., 2:4] * 120
    for conf in (0.001, 0.25):
        for kind in ("nms", "diou"):
            out = non_max_suppression(pred, conf_thres=conf, iou_thres=0.45, max_det=300, nms=kind)
            times = timeit(lambda: non_max_suppression(pred, conf, 0.45, max_det=300, nms=kind), 1, reps)
            med = table.add("2", f"ours non_max_suppression nms={kind!r}",
                            f"[1,25200,85] rand, conf {conf}, {threads} thread(s)", times,
                            extra=f"{len(out[0])} kept (max_det 300)")
            log(f"[2] non_max_suppression {kind} conf {conf}: {med:.1f} ms")


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:  # not installed as a distribution
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,000 images and fewer repetitions")
    ap.add_argument("--images", type=int, default=None, help="synthetic images (default 5000, quick 1000)")
    ap.add_argument("--only", default="coco,nms", help="comma list of sections: coco,nms")
    ap.add_argument("--nms-threads", type=int, default=1,
                    help="torch threads for the NMS rows (torchvision's NMS kernel is single-threaded; "
                         "on a loaded 2-core VM the vectorised ops of utils.ops.nms lose to thread contention)")
    args = ap.parse_args()
    sections = set(filter(None, args.only.split(",")))
    if sections - {"coco", "nms"}:
        ap.error(f"unknown section(s) {sorted(sections - {'coco', 'nms'})}")
    torch.set_num_threads(THREADS)
    n_images = args.images or (1000 if args.quick else 5000)
    t0 = time.perf_counter()
    table = Table()
    probe(table, "start")
    if "coco" in sections:
        bench_coco(table, n_images, reps_ref=1, reps_ours=2 if args.quick else 3)
    if "nms" in sections:
        bench_nms(table, reps=3 if args.quick else 7, threads=args.nms_threads)
        torch.set_num_threads(THREADS)
    probe(table, "end")
    mode = "quick" if args.quick else "default"
    print(f"## evaluation benchmark ({mode}), {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print()
    print(f"- machine: {cpu_name()}, {os.cpu_count()} logical CPUs, torch threads {THREADS} "
          f"(NMS rows {args.nms_threads}), load average {os.getloadavg()[0]:.1f} at the end, "
          f"{platform.platform()}")
    print(f"- python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}; wall time {time.perf_counter() - t0:.0f} s")
    print()
    print(table.markdown())


if __name__ == "__main__":
    main()
