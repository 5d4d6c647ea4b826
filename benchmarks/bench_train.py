"""Training throughput (images/s) and peak memory of one optimisation step, for every model YAML.

    .venv/bin/python benchmarks/bench_train.py                 # all models, 416 then 640, batch 8, CPU
    .venv/bin/python benchmarks/bench_train.py --quick         # 4 models, 416 only, 1 timed step
    .venv/bin/python benchmarks/bench_train.py --configs yolov4_s yolov4_l --sizes 640 --steps 3
    .venv/bin/python benchmarks/bench_train.py --configs yolov4_l --sizes 416 --cpu-modes fp32 fp32-cl bf16-cl

A step is what ``utils.train.loop.train_one_epoch`` does for a batch on which it steps the optimiser:
uint8 ``[B, 3, S, S]`` -> ``float() / 255`` -> model (train mode; autocast with AMP) ->
``build_criterion(model, hyp, S)`` on float32 outputs -> ``scaler.scale(loss).backward()`` ->
``unscale_`` + ``clip_grad_norm_(10)`` -> ``scaler.step`` (``build_optimizer`` SGD, 3 groups,
nesterov, lr0/momentum/weight_decay of configs/hyp.scratch.yaml) -> ``zero_grad`` ->
``ModelEMA.update`` (the GradScaler is a disabled pass-through on CPU, as in the loop). Excluded:
loader time, ``set_lr`` and loss logging (microseconds), and gradient accumulation -- at batch 8 the
loop steps optimiser + EMA every ``nbs / 8 = 8`` batches, so a batch there costs
``fwd+loss + bwd + (clip+SGD + EMA) / 8`` of the phase columns.

Data: mosaic batches of the project loader (``build_dataloader`` with ``LoaderSettings(...,
augment=True, shuffle=True, workers=0)``) over the shared COCO128 kept to motorcycle, car, bus,
truck (nc=4), drawn before timing, the same for every model. Models: nc=4, random weights (``pretrained`` dropped).
Memory, CPU: growth of the peak resident set over the row's steps (``VmHWM`` reset through
/proc/self/clear_refs after ``malloc_trim``; weights and EMA were already resident). CUDA:
``torch.cuda.max_memory_allocated`` (absolute: weights, EMA, momentum, activations).

CPU modes (``--cpu-modes``, default ``fp32-cl``, what train.py does on CPU): ``fp32`` (NCHW),
``fp32-cl`` (channels_last model and input), ``bf16-cl`` (channels_last plus ``--amp bf16``, CPU
autocast: convolutions in bfloat16, which AMX units run natively; yolov5 has no CPU autocast).
Each model row runs once per mode.

Budget: 1 warm-up + 2 timed steps per row, 416 rows first (fewest GFLOPs first), then 640. A row
predicted (same model at the other size scaled by area, else its GFLOPs at the best rate so far)
to end past ``--budget-min`` (default 12, from the start, peer included) is skipped and listed.
With other processes on the 2 cores, OpenMP's 2 threads wait for each other at every op and a row
can slow down several-fold: read the probes, compare only within one run.

Peer: with yolov5's venv ($HOME/.cache/peer-venv, see /work/shared/bench/peer_bench.py),
``peer_bench.py --only train --quick --train-nc 4`` runs between two yolov4_l rows at 416 (per
mode); their mean images/s over yolov5l's (fp32, NCHW: yolov5's only CPU mode) is printed per mode with our EMA update and without it (peer_bench has no EMA).
Otherwise alike: batch 8, 416, nc=4, mosaic batches (yolov5's own loader), hyp values, SGD
nesterov in 3 groups, clip 10; yolov5's ComputeLoss there, build_criterion here.

CUDA (only when ``torch.cuda.is_available()``): AMP fp16 autocast + GradScaler, channels_last model
and input, ``cudnn.benchmark``, batch ``--cuda-batch`` (32), 3 warm-up + 10 timed steps (quick
2 + 5), no budget; ``--no-cpu`` skips the CPU rows and the peer.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import itertools
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]

from models.summary import gflops
from models.yolo import Model, load_model_cfg
from utils.config import Hyp, load_hyp
from utils.data.config import load_data_config
from utils.data.datasets import load_split
from utils.train.ema import ModelEMA
from utils.eval.evaluate import preprocess
from utils.train.loop import autocast
from utils.data.loader import LoaderSettings, build_dataloader
from utils.train.loss import build_criterion
from utils.train.schedule import build_optimizer
from bench_models import model_configs  # same folder (run as a script)
from machine_probe import cpu_name, matmul_probe

VEHICLES = ["motorcycle", "car", "bus", "truck"]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "coco128"
PEER_PYTHON = Path.home() / ".cache" / "peer-venv" / "bin" / "python"
PEER_SCRIPT = ROOT.parent / "shared" / "bench" / "peer_bench.py"
QUICK_CONFIGS = ["yolov4_n", "yolov4_s", "yolov4_mobilenetv3_small", "yolov4_l"]
PHASES = ("fwd+loss", "bwd", "clip+SGD", "EMA")


# ------------------------------------------------------------------------------------ machine
def status_kib(key: str) -> int:
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``); 0 where unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss() -> Optional[int]:
    """Free what can be freed, reset the kernel's peak-RSS mark; returns the current RSS (KiB), or
    None where the mark cannot be reset (not Linux, /proc read-only)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
    except (OSError, AttributeError):
        return None
    return status_kib("VmRSS")


# --------------------------------------------------------------------------------------- data
def vehicle_split(data: Path, tmp: Path):
    """The COCO128 train split restricted to the 4 vehicle classes, via a dataset YAML in ``tmp``."""
    cfg = {"format": "coco", "path": str(data.resolve()), "train": "images/train2017", "val": "images/train2017",
           "train_annotations": "annotations/instances_train2017.json",
           "val_annotations": "annotations/instances_train2017.json", "names": VEHICLES}
    path = tmp / "coco128_vehicles.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_split(load_data_config(path), "train", cache_dir=tmp)


def draw_batches(info, img_size: int, batch_size: int, hyp: Hyp, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` full mosaic batches ``(imgs uint8 [B, 3, S, S], targets [M, 6])``, cycling over epochs."""
    settings = LoaderSettings(img_size, batch_size, augment=True, shuffle=True, workers=0, seed=0)
    loader = build_dataloader(info, settings, hyp)
    out: list[tuple[torch.Tensor, torch.Tensor]] = []
    epoch = 0
    while len(out) < n:
        loader.sampler.set_epoch(epoch)
        for imgs, targets, *_ in loader:
            if imgs.shape[0] == batch_size and len(out) < n:
                out.append((imgs, targets))
        epoch += 1
    return out


# --------------------------------------------------------------------------------------- step
@dataclass
class Trainee:
    """The pieces of one training run that a step touches (as utils.train.trainer.Trainer builds them)."""
    model: Model
    criterion: object
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: ModelEMA
    hyp: Hyp
    device: torch.device
    amp: Optional[torch.dtype] = None
    channels_last: bool = False


def build_model(path: Path, nc: int) -> Model:
    cfg = load_model_cfg(path)
    cfg.pop("pretrained", None)  # random weights; never download
    torch.manual_seed(0)
    return Model(cfg, nc=nc)


def build_trainee(path: Path, nc: int, img_size: int, hyp: Hyp, device: torch.device,
                  amp: Optional[torch.dtype] = None, channels_last: bool = False) -> Trainee:
    model = build_model(path, nc).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    # weight decay as the Trainer scales it: wd * batch * accumulate / nbs == wd when batch divides nbs
    optimizer = build_optimizer(model, hyp.optimizer, hyp.lr0, hyp.momentum, hyp.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    return Trainee(model, build_criterion(model, hyp, image_size=img_size), optimizer, scaler,
                   ModelEMA(model, hyp.ema_decay), hyp, device, amp, channels_last)


def train_step(t: Trainee, imgs: torch.Tensor, targets: torch.Tensor, sync: bool) -> tuple[float, list[float], bool]:
    """One optimiser step as utils.train.loop.train_one_epoch + _optimizer_step do it. Returns the loss,
    the seconds of each of PHASES (``sync``: CUDA-synchronise between phases) and whether the
    gradients were finite (fp16: the GradScaler skips the step and lowers its scale otherwise)."""
    def mark() -> float:
        if sync:
            torch.cuda.synchronize(t.device)
        return time.perf_counter()
    t0 = mark()
    x = preprocess(imgs, t.device)
    if t.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(t.device, t.amp):
        preds = t.model(x)
    loss, _ = t.criterion([p.float() for p in preds], targets.to(t.device))
    t1 = mark()
    t.scaler.scale(loss).backward()
    t2 = mark()
    t.scaler.unscale_(t.optimizer)
    clip = t.hyp.grad_clip if t.hyp.grad_clip > 0 else float("inf")
    norm = torch.nn.utils.clip_grad_norm_(t.model.parameters(), clip)
    finite = bool(torch.isfinite(norm))
    if finite or t.scaler.is_enabled():
        t.scaler.step(t.optimizer)
    t.scaler.update()
    t.optimizer.zero_grad(set_to_none=True)
    t3 = mark()
    if finite:
        t.ema.update(t.model)
    t4 = mark()
    return float(loss.detach()), [t1 - t0, t2 - t1, t3 - t2, t4 - t3], finite


@dataclass
class RowResult:
    name: str
    size: int
    batch: int
    params_m: float
    gflops: float                                  # forward, batch 1, at ``size``
    steps: list[list[float]] = field(default_factory=list)   # timed steps x PHASES seconds
    mem_mib: float = 0.0
    targets: float = 0.0                           # mean boxes per timed batch
    nonfinite: int = 0                             # timed steps with inf/nan gradients (step skipped)
    loss: float = float("nan")
    waits: list[float] = field(default_factory=list)          # timed steps: seconds waiting for the batch
    images: int = 0                                # images in the timed steps

    def step_s(self, with_ema: bool = True) -> list[float]:
        return [sum(p) if with_ema else sum(p[:3]) for p in self.steps]

    def img_s(self, with_ema: bool = True) -> float:
        return self.batch / statistics.median(self.step_s(with_ema))


def bench_row(path: Path, size: int, batches: list, hyp: Hyp, warmup: int, steps: int, device: torch.device,
              amp: Optional[torch.dtype] = None, channels_last: bool = False) -> RowResult:
    """Build a fresh model + optimiser + EMA, run ``warmup`` untimed then ``steps`` timed steps."""
    t = build_trainee(path, len(VEHICLES), size, hyp, device, amp, channels_last)
    row = time_steps(t, new_row(t, path.stem, size, batches[0][0].shape[0]), itertools.cycle(batches), warmup, steps)
    del t
    return row


def new_row(t: Trainee, name: str, size: int, batch: int) -> RowResult:
    """An empty row for trainee ``t``: parameter count and forward GFLOPs (batch 1) at ``size``."""
    return RowResult(name, size, batch, sum(p.numel() for p in t.model.parameters()) / 1e6, gflops(t.model, size))


def time_steps(t: Trainee, row: RowResult, batches: Iterator, warmup: int, steps: int) -> RowResult:
    """Run ``warmup`` untimed then ``steps`` timed steps of ``t`` on the next items of ``batches``
    (``(imgs, targets, ...)``: pre-drawn batches cycled, or a live loader), filling ``row``: phase
    times, the wait for each batch, boxes, skipped steps, last loss, peak memory."""
    cuda = t.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(t.device)
        torch.cuda.reset_peak_memory_stats(t.device)
    base = None if cuda else reset_peak_rss()
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        imgs, targets = next(batches)[:2]
        wait = time.perf_counter() - t0
        row.loss, phases, finite = train_step(t, imgs, targets, sync=cuda)
        if i >= warmup:
            row.steps.append(phases)
            row.waits.append(wait)
            row.images += imgs.shape[0]
            row.nonfinite += not finite
            row.targets += len(targets) / steps
        print(f"  {row.name} {row.size} step {i}{' (warm-up)' if i < warmup else ''}: {sum(phases):.2f} s "
              f"loss {row.loss:.4g}", file=sys.stderr, flush=True)
    if cuda:  # absolute peak: weights, EMA, momentum, activations (what must fit on the GPU)
        row.mem_mib = torch.cuda.max_memory_allocated(t.device) / 2 ** 20
    else:
        row.mem_mib = (status_kib("VmHWM") - base) / 1024 if base is not None else float("nan")
    return row


# -------------------------------------------------------------------------------------- table
def table(rows: list[RowResult], mem_label: str) -> str:
    head = ["model", "size", "batch", "params M", "fwd GFLOPs (b1)", "img/s (step+EMA)", "step s median (min-max, n)",
            "img/s no EMA", *(f"{p} s" for p in PHASES), "≈GFLOP/s (3×fwd)", mem_label, "boxes/batch", "loss"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        steps = r.step_s()
        med = statistics.median(steps)
        phase = [statistics.median(p[k] for p in r.steps) for k in range(len(PHASES))]
        cells = [r.name, r.size, r.batch, f"{r.params_m:.2f}", f"{r.gflops:.1f}", f"{r.img_s():.3g}",
                 f"{med:.3g} ({min(steps):.3g}-{max(steps):.3g}, n={len(steps)})", f"{r.img_s(False):.3g}",
                 *(f"{v:.3g}" for v in phase), f"{3 * r.gflops * r.batch / med:.3g}", f"{r.mem_mib:.0f}",
                 f"{r.targets:.1f}", f"{r.loss:.4g}" + (f" ({r.nonfinite} step(s) skipped: inf grads)"
                                                         if r.nonfinite else "")]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------- peer
def run_peer(data: Path) -> tuple[Optional[tuple[float, float]], str, str]:
    """yolov5l (median, best-step) img/s at b8 416 nc=4 from ``peer_bench.py --only train --quick
    --train-nc 4``, its probe and train rows, and a note (why it is missing, or its settings)."""
    if not (PEER_PYTHON.is_file() and PEER_SCRIPT.is_file()):
        return None, "", f"peer venv {PEER_PYTHON} or {PEER_SCRIPT} absent: yolov5 not measured"
    cmd = [str(PEER_PYTHON), str(PEER_SCRIPT), "--only", "train", "--quick", "--train-nc", "4", "--data", str(data)]
    print("running " + " ".join(cmd), file=sys.stderr, flush=True)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True).stdout
    except (subprocess.SubprocessError, OSError) as err:
        return None, "", f"peer_bench.py failed: {err}"
    rows = [line for line in out.splitlines() if line.startswith("| 0 |") or line.startswith("| 2 |")]
    m = re.search(r"^\| 2 \| yolov5l train step[^|]*\| b8 416[^|]*\| ([\d.]+) \| img/s \| [\d.]+-([\d.]+) ",
                  out, re.M)
    if m is None:
        return None, "\n".join(rows), "peer_bench.py printed no yolov5l train row"
    return (float(m.group(1)), float(m.group(2))), "\n".join(rows), "yolov5l: b8 416, nc=4, mosaic batches, 1 warm-up + 2 timed, no EMA"


def peer_ratio(rows: list[RowResult], peer: tuple[float, float]) -> str:
    """Our yolov4_l / yolov5l images/s at b8 416, one line per CPU mode (ours: mean of the rows
    before and after the peer run), from medians and from the fastest single steps (least
    disturbed by other processes)."""
    (median, best), lines = peer, []
    for mode in CPU_MODES:
        ours = [r for r in rows if r.name.startswith(f"yolov4_l [{mode}]") and r.size == 416 and r.batch == 8]
        if not ours:
            continue
        each = ", ".join(f"{r.img_s():.3g}" for r in ours)
        with_ema, no_ema = (statistics.mean(r.img_s(e) for r in ours) for e in (True, False))
        best_ours = max(r.batch / min(r.step_s(False)) for r in ours)
        lines.append(f"- ours yolov4_l [{mode}] / yolov5l [fp32], b8 416 CPU, same run (ours = mean of {len(ours)} "
                     f"rows: {each} img/s): {with_ema:.3g} / {median:.3g} = **{with_ema / median:.2f}** with our "
                     f"EMA update; {no_ema:.3g} / {median:.3g} = **{no_ema / median:.2f}** without it (peer_bench "
                     f"has no EMA); fastest single steps, no EMA: {best_ours:.3g} / {best:.3g} = "
                     f"**{best_ours / best:.2f}**")
    if not lines:
        return "(no yolov4_l row at 416, batch 8: no ratio to yolov5l)"
    return "\n".join(lines) + ("\n\nyolov4_l: 52.5 M parameters, 50.2 GFLOPs at 416; yolov5l (its nc=80 figures): "
                               "46.5 M, 109 GFLOPs at 640, i.e. about 46 at 416.")


# --------------------------------------------------------------------------------------- main
def predict_s(path: Path, size: int, batch: int, n_steps: int, gf128: float, done: list[RowResult]) -> float:
    """Rough seconds ``n_steps`` steps of a row will take: the same model at another size scaled by
    area, else its GFLOPs (from ``gf128`` at 128 px, scaled by area) at the best rate so far."""
    same = [r for r in done if r.name.split(' ')[0] == path.stem]
    if same:
        return n_steps * statistics.median(same[-1].step_s()) * (size / same[-1].size) ** 2
    if not done:
        return 0.0
    rate = max(3 * r.gflops * r.batch / statistics.median(r.step_s()) for r in done)
    return n_steps * 3 * gf128 * (size / 128) ** 2 * batch / rate


CPU_MODES = {"fp32": (None, False), "fp32-cl": (None, True), "bf16-cl": (torch.bfloat16, True)}


def cpu_row(path: Path, size: int, mode: str, batches: list, hyp: Hyp, args) -> RowResult:
    amp, channels_last = CPU_MODES[mode]
    row = bench_row(path, size, batches, hyp, args.warmup, args.steps, torch.device("cpu"), amp, channels_last)
    row.name += f" [{mode}]"
    return row


def run_cpu(args, info, hyp: Hyp, configs: list[Path], deadline: float) -> tuple[list[RowResult], list[str], tuple]:
    """CPU rows: yolov4_l@416 before and after the peer run (when both apply), then every size in
    turn, cheapest model first; a row whose predicted time would pass ``deadline`` is skipped.
    Returns the rows, the skipped rows and ``run_peer``'s answer."""
    n = args.warmup + args.steps
    batches = {s: draw_batches(info, s, args.batch_size, hyp, n) for s in args.sizes}
    gf128 = {p.stem: gflops(build_model(p, len(VEHICLES)), 128) for p in configs}
    results, skipped, peer = [], [], (None, "", "--no-peer")
    anchor = next((p for p in configs if p.stem == "yolov4_l"), None) if 416 in batches else None
    if not args.no_peer:
        if anchor is not None and PEER_PYTHON.is_file():
            for mode in args.cpu_modes:
                results.append(cpu_row(anchor, 416, mode, batches[416], hyp, args))
                results[-1].name += " (before peer)"
        peer = run_peer(args.data)
    rows = sorted(((c, s, m) for s in args.sizes for c in configs for m in args.cpu_modes),
                  key=lambda r: (args.sizes.index(r[1]), gf128[r[0].stem]))
    if results:  # yolov4_l right after the peer
        rows.sort(key=lambda r: (r[0], r[1]) != (anchor, 416))
    for path, size, mode in rows:
        guess = predict_s(path, size, args.batch_size, n, gf128[path.stem], results)
        if time.perf_counter() + guess > deadline and results:
            skipped.append(f"{path.stem}@{size} [{mode}] (~{guess:.0f} s)")
            continue
        results.append(cpu_row(path, size, mode, batches[size], hyp, args))
    return results, skipped, peer


def run_cuda(args, info, hyp: Hyp, configs: list[Path]) -> list[RowResult]:
    device = torch.device("cuda", 0)
    torch.backends.cudnn.benchmark = True
    warmup, steps = (2, 5) if args.quick else (3, 10)
    n = min(warmup + steps, max(1, len(info) // args.cuda_batch))
    batches = {s: draw_batches(info, s, args.cuda_batch, hyp, n) for s in args.sizes}
    return [bench_row(path, size, batches[size], hyp, warmup, steps, device, torch.float16, channels_last=True)
            for size in args.sizes for path in configs]


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="*", help="config stems (default: every model YAML in configs/)")
    ap.add_argument("--sizes", nargs="*", type=int, help="image sizes (default 416 640; --quick: 416)")
    ap.add_argument("--batch-size", type=int, default=8, help="CPU batch size")
    ap.add_argument("--steps", type=int, help="timed steps per row (default 2; --quick: 1)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per row")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--cpu-modes", nargs="+", choices=tuple(CPU_MODES), default=["fp32-cl"],
                    help="precision/layout of the CPU rows (default fp32-cl: what train.py does on CPU)")
    ap.add_argument("--quick", action="store_true", help=f"models {QUICK_CONFIGS}, 416 only, 1 timed step")
    ap.add_argument("--no-peer", action="store_true", help="do not run yolov5 (peer_bench.py)")
    ap.add_argument("--no-cpu", action="store_true", help="skip the CPU rows (CUDA machines)")
    ap.add_argument("--cuda-batch", type=int, default=32, help="CUDA batch size (AMP fp16, channels_last)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="COCO-layout folder (default: shared coco128)")
    ap.add_argument("--hyp", type=Path, default=ROOT / "configs" / "hyp.scratch.yaml")
    ap.add_argument("--budget-min", type=float, default=12.0,
                    help="wall-time budget of the whole CPU part: rows predicted to overrun are skipped (0: none)")
    args = ap.parse_args(argv)
    args.sizes = args.sizes or ([416] if args.quick else [416, 640])
    args.steps = args.steps or (1 if args.quick else 2)
    args.configs = args.configs or (QUICK_CONFIGS if args.quick else None)
    return args


def report(args, n_images: int, probes: tuple[float, float], wall_s: float, cpu_rows: list[RowResult],
           skipped: list[str], peer: tuple, cuda_rows: list[RowResult]) -> None:
    """Print the markdown report: environment, the CPU table, the peer ratio and rows, the CUDA table."""
    print(f"## training step throughput, {time.strftime('%Y-%m-%d %H:%M %Z')}\n")
    print(f"- machine: {cpu_name()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}, "
          f"{platform.platform()}; python {platform.python_version()}, torch {torch.__version__}")
    print(f"- machine probe, torch.mm 2048² fp32: start {probes[0]:.1f} GFLOP/s, end {probes[1]:.1f} GFLOP/s")
    print(f"- data: COCO128 train, vehicle classes only ({n_images} images), mosaic batches from "
          f"build_dataloader drawn before timing; hyp {args.hyp.name}; nc={len(VEHICLES)}")
    print(f"- step: fwd + build_criterion loss + bwd + clip 10 + SGD (nesterov, 3 groups) + zero_grad + "
          f"ModelEMA.update; warm-up {args.warmup} step(s), {args.steps} timed; fresh model per row")
    print(f"- wall time {wall_s:.0f} s; command: {' '.join(sys.argv)}\n")
    if cpu_rows:
        print(table(cpu_rows, "peak RSS +MiB"))
    if skipped:
        print(f"\nskipped to stay within --budget-min {args.budget_min:g} (predicted time): {', '.join(skipped)}")
    peer_img_s, peer_rows, peer_note = peer
    if peer_img_s is not None:
        print(f"\n{peer_ratio(cpu_rows, peer_img_s)}\n\npeer_bench.py rows (same run; {peer_note}):\n\n"
              "| # | benchmark | setting | median | unit | spread | details |\n|---|---|---|---|---|---|---|\n"
              + peer_rows)
    else:
        print(f"\n(peer: {peer_note})")
    if cuda_rows:
        print(f"\n### CUDA: {torch.cuda.get_device_name(0)}, AMP fp16 autocast + GradScaler, channels_last, "
              f"cudnn.benchmark, batch {args.cuda_batch}\n")
        print(table(cuda_rows, "peak CUDA alloc MiB"))


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if not (args.data / "annotations" / "instances_train2017.json").is_file():
        print(f"error: {args.data} has no annotations/instances_train2017.json", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    configs = model_configs(ROOT / "configs", args.configs)
    hyp = load_hyp(args.hyp)
    probe_start = matmul_probe()
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        info = vehicle_split(args.data, Path(tmp))
    deadline = t_start + 60 * args.budget_min if args.budget_min > 0 else float("inf")
    cpu_rows, skipped, peer = ([], [], (None, "", "--no-cpu")) if args.no_cpu else run_cpu(args, info, hyp, configs,
                                                                                          deadline)
    cuda_rows = run_cuda(args, info, hyp, configs) if torch.cuda.is_available() else []
    probe_end = matmul_probe()
    report(args, len(info), (probe_start, probe_end), time.perf_counter() - t_start, cpu_rows, skipped,
           peer, cuda_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
