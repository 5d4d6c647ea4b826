"""Training-loader throughput (images/s): mosaic at 640, batch 16, workers 0 and 2, on COCO128.

Measured as the peer benchmark (/work/shared/bench/peer_bench.py, section 3) measures yolov5's
``create_dataloader``: stream batches endlessly, drop the first ``max(1, workers)`` batches
(worker start-up), then time ``epochs`` x ``len(loader)`` batches. Same hyp values as yolov5's
hyp.scratch-low (configs/hyp.scratch.yaml), same 128 images, shuffle, no image cache. OpenCV runs
single-threaded in every process (``cv2.setNumThreads(0)``, which importing yolov5 does and our
``build_dataloader`` does before forking workers), so workers=0 compares like with like.

When the peer venv exists ($HOME/.cache/peer-venv, see peer_bench.py's docstring) yolov5's loader
is measured in the same run (``peer_bench.py --only loader``, in that venv) between two
measurements of ours, and the ratio ours / yolov5 is printed. The machine drifts 20-50 %
within minutes: quote only ratios from one run.

    .venv/bin/python benchmarks/bench_loader.py [--quick] [--no-peer] [--data DIR]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]

from utils.config import load_hyp
from utils.data.config import data_config_from_dict
from utils.data.datasets import load_split
from utils.data.loader import LoaderSettings, build_dataloader

PEER_PY = Path.home() / ".cache" / "peer-venv" / "bin" / "python"
PEER_BENCH = REPO.parent / "shared" / "bench" / "peer_bench.py"
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "coco128"
IMG, BATCH = 640, 16


def measure_ours(info, hyp, workers: int, epochs: int) -> float:
    loader = build_dataloader(info, LoaderSettings(IMG, BATCH, augment=True, shuffle=True, workers=workers, seed=0), hyp)
    nb = len(loader)

    def stream():
        while True:
            yield from loader
    g = stream()
    for _ in range(max(1, workers)):
        next(g)
    n, t0 = 0, time.perf_counter()
    for _ in range(epochs * nb):
        n += next(g)[0].shape[0]
    rate = n / (time.perf_counter() - t0)
    del g
    return rate


def measure_peer(data: Path, quick: bool) -> tuple[dict[int, float], str]:
    """yolov5 img/s per worker count, parsed from peer_bench.py's table, and its probe rows."""
    cmd = [str(PEER_PY), str(PEER_BENCH), "--only", "loader", "--data", str(data)] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    row = r"\| 3 \| LoadImagesAndLabels[^|]*\| 640, batch 16, workers=(\d+) \| ([\d.]+) \|"
    rates = {int(m.group(1)): float(m.group(2)) for m in re.finditer(row, out)}
    probes = "\n".join(line for line in out.splitlines() if line.startswith("| 0 |"))
    return rates, probes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="COCO-layout folder (images/train2017 + JSON)")
    ap.add_argument("--quick", action="store_true", help="1 timed epoch instead of 2 (ours and the peer's)")
    ap.add_argument("--no-peer", action="store_true", help="do not run yolov5's loader")
    args = ap.parse_args()
    if not args.data.is_dir():
        sys.exit(f"data folder {args.data} not found")
    epochs = 1 if args.quick else 2
    cv2.setNumThreads(0)
    cfg = data_config_from_dict({"path": str(args.data.resolve()), "train": "images/train2017",
                                 "val": "images/train2017",
                                 "train_annotations": "annotations/instances_train2017.json",
                                 "val_annotations": "annotations/instances_train2017.json"}, REPO / "bench.yaml")
    info = load_split(cfg, "train")
    hyp = load_hyp(REPO / "configs" / "hyp.scratch.yaml")
    workers_list = (0, 2)
    ours = {w: [measure_ours(info, hyp, w, epochs)] for w in workers_list}
    peer, probes = {}, ""
    if not args.no_peer and PEER_PY.is_file() and PEER_BENCH.is_file():
        peer, probes = measure_peer(args.data, args.quick)
        for w in workers_list:
            ours[w].append(measure_ours(info, hyp, w, epochs))
    elif not args.no_peer:
        print(f"(peer venv {PEER_PY} or {PEER_BENCH} absent: yolov5 not measured)")
    print(f"## loader throughput, mosaic {IMG}, batch {BATCH}, {len(info)} images x {epochs} epoch(s); "
          f"{os.cpu_count()} CPUs\n")
    print("| loader | workers | ours img/s | yolov5 img/s | ours / yolov5 |")
    print("|---|---|---|---|---|")
    for w in workers_list:
        mine = statistics.mean(ours[w])
        runs = ", ".join(f"{r:.1f}" for r in ours[w])
        if w in peer:
            print(f"| mosaic 640 | {w} | {mine:.1f} ({runs}) | {peer[w]:.1f} | {mine / peer[w]:.2f} |")
        else:
            print(f"| mosaic 640 | {w} | {mine:.1f} ({runs}) | - | - |")
    if probes:
        print("\npeer machine probes (same run):\n" + probes)


if __name__ == "__main__":
    main()
