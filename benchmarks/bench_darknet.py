"""Batch-1 latency of an imported darknet model in this framework (Conv+BN fused, channels_last) vs
OpenCV DNN on the same cfg and weights, in one run. CPU by default; ``--device cuda`` times ours
in fp16 and OpenCV's CUDA backend (FP16 target) when OpenCV was built with CUDA.

    python benchmarks/bench_darknet.py --cfg ../shared/darknet/cfg/yolov4.cfg --img-size 416 --reps 50
    python benchmarks/bench_darknet.py --weights yolov4.weights ...   # real weights (default: random, exact length)

Both get the same seeded input; the script first checks that the raw head-conv outputs agree
(1e-3 x max) so the two timings measure the same network. Prints one markdown table row.
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

from utils.darknet.build import translate
from utils.darknet.cfg import read_cfg
from utils.darknet.io import import_darknet
from utils.darknet.weights import random_state, write_weights
from machine_probe import cpu_name  # same folder (run as a script)


def timed(fn, warmup: int, reps: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def ours(cfg: Path, weights: Path, x: torch.Tensor, device: str):
    model, _ = import_darknet(cfg, weights)
    model.fuse().eval().to(device).to(memory_format=torch.channels_last)
    xi = x.to(device)
    if device.startswith("cuda"):
        model, xi = model.half(), xi.half()

    def step():
        with torch.inference_mode():
            out = model(xi)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return out
    return model, step


def opencv(cfg: Path, weights: Path, x: torch.Tensor, device: str, feeds: list[str]):
    import cv2
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.enableWinograd(False)
    if device.startswith("cuda"):
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_CUDA)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CUDA_FP16)
    names = list(net.getUnconnectedOutLayersNames())

    def step():
        net.setInput(x.numpy())
        return net.forward(names)

    def heads():
        net.setInput(x.numpy())
        return net.forward(feeds)
    return step, heads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cfg", default=str(ROOT.parent / "shared" / "darknet" / "cfg" / "yolov4.cfg"))
    ap.add_argument("--weights", default="", help="darknet .weights (default: random weights of the exact length)")
    ap.add_argument("--img-size", type=int, default=416)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch and OpenCV threads (0: their defaults)")
    ap.add_argument("--device", default="cpu")
    opt = ap.parse_args()
    import cv2
    if opt.threads:
        torch.set_num_threads(opt.threads)
        cv2.setNumThreads(opt.threads)
    cfg = Path(opt.cfg)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(opt.weights) if opt.weights else Path(tmp) / "random.weights"
        convs = translate(read_cfg(cfg))[1]
        if not opt.weights:
            write_weights(weights, random_state(convs, seed=0, gain=0.6), convs)
        x = torch.rand(1, 3, opt.img_size, opt.img_size, generator=torch.Generator().manual_seed(0))
        model, ours_step = ours(cfg, weights, x, opt.device)
        feeds = [c for c in convs if ".m." in c.prefix]
        cv_step, cv_heads = opencv(cfg, weights, x, opt.device, [f"conv_{c.layer}" for c in feeds])
        raw = ours_step()[1]
        for c, ref in zip(feeds, cv_heads()):
            got = raw[int(c.prefix.rsplit(".", 1)[1])].float().cpu().permute(0, 1, 4, 2, 3).reshape(ref.shape).numpy()
            tol = (1e-2 if opt.device.startswith("cuda") else 1e-3) * float(np.abs(ref).max())
            if float(np.abs(got - ref).max()) > tol:
                raise SystemExit(f"outputs differ at layer {c.layer}: {np.abs(got - ref).max():.3g} > {tol:.3g}")
        t_ours = timed(ours_step, opt.warmup, opt.reps)
        t_cv = timed(cv_step, opt.warmup, opt.reps)
    med_ours, med_cv = statistics.median(t_ours) * 1e3, statistics.median(t_cv) * 1e3
    print(f"| {datetime.date.today()} | {cfg.name} {opt.img_size} | {opt.device} ({cpu_name()}, torch "
          f"{torch.__version__} {torch.get_num_threads()} threads, OpenCV {cv2.__version__}) | "
          f"ours fused channels_last {med_ours:.1f} ms | OpenCV DNN {med_cv:.1f} ms | ratio {med_cv / med_ours:.2f}x |")


if __name__ == "__main__":
    main()
