"""The timed sections of the GPU check (``gpu_check.py compile|throughput|latency|yolov5``, flags
defined there): each turns gpu_bench / gpu_yolov5 measurements into ``<out>/<section>.json``."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

import bench_models
import bench_train
import gpu_bench
import gpu_yolov5
from utils.config import load_hyp

COMPILE_LOSS_RTOL = 2e-2   # eager vs compiled loss of one batch under autocast, same weights
Writer = Callable[..., int]


def run_timing_command(a: argparse.Namespace, write: Writer) -> int:
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        return write(a.out, a.cmd, "failed: --device cuda but torch sees no CUDA device")
    torch.backends.cudnn.benchmark = True
    return {"compile": run_compile, "throughput": run_throughput, "latency": run_latency,
            "yolov5": run_yolov5}[a.cmd](a, device, write)


def train_split(a: argparse.Namespace):
    from utils.data.config import load_data_config
    from utils.data.datasets import load_split
    cache = a.out / "data" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    return load_split(load_data_config(a.yaml), "train", cache_dir=cache)


def grid_of(a: argparse.Namespace, loader_batches: tuple[int, ...], workers: int) -> gpu_bench.Grid:
    return gpu_bench.Grid(a.size, tuple(a.batches), tuple(a.amps), tuple(x == "cl" for x in a.layouts),
                          loader_batches, a.warmup, a.steps, workers, a.budget_s)


def jsonl_writer(path: Path) -> Callable[[dict], None]:
    path.unlink(missing_ok=True)

    def log_row(row: dict) -> None:  # rows land as they are measured: a killed section keeps them
        with path.open("a") as f:
            f.write(json.dumps(row) + "\n")
    return log_row


def run_compile(a: argparse.Namespace, device: torch.device, write: Writer) -> int:
    info, hyp = train_split(a), load_hyp(a.hyp)
    t = bench_train.build_trainee(ROOT / "configs" / f"{a.model}.yaml", len(info.names), a.size, hyp, device,
                                  gpu_bench.AMPS[a.amp], channels_last=True)
    batches = gpu_bench.to_device(bench_train.draw_batches(info, a.size, a.batch, hyp, 2), device)
    note = lambda eager: write(a.out, "compile", "failed: did not finish compiling", rows=[eager])  # noqa: E731
    row = gpu_bench.compile_rows(t, batches, a.warmup, a.steps, a.backend, a.model, progress=note)
    ok = row["loss_rel_diff"] <= COMPILE_LOSS_RTOL
    status = "ok" if ok else (f"failed: compiled loss {row['loss_compiled']:.6g} vs eager {row['loss_eager']:.6g} "
                              f"(rel {row['loss_rel_diff']:.3g} > {COMPILE_LOSS_RTOL})")
    return write(a.out, "compile", status, rows=[row])


def run_throughput(a: argparse.Namespace, device: torch.device, write: Writer) -> int:
    info, hyp = train_split(a), load_hyp(a.hyp)
    nc, g = len(info.names), grid_of(a, tuple(a.loader_batches), a.workers)
    run = gpu_bench.GridRun(g, info, hyp, device, jsonl_writer(a.out / "throughput.jsonl"))
    builders = {m: (lambda amp, cl, m=m: bench_train.build_trainee(ROOT / "configs" / f"{m}.yaml", nc, a.size, hyp,
                                                                   device, amp, cl)) for m in a.models}
    run.run(gpu_bench.plan(a.models, g, lead=a.lead), builders)
    status = "ok" if not run.failed else f"failed: {len(run.failed)} cell(s): " + "; ".join(run.failed)
    return write(a.out, "throughput", status, rows=run.rows, skipped=run.skipped, failed_cells=run.failed,
                 grid=asdict(g), nc=nc, train_images=len(info))


def run_latency(a: argparse.Namespace, device: torch.device, write: Writer) -> int:
    rows = []
    for m in a.models:
        model = bench_models.build(ROOT / "configs" / f"{m}.yaml", a.nc).fuse()
        rows += gpu_bench.latency_rows(m, model, a.size, tuple(a.batches), a.warmup, a.steps, device,
                                       half=device.type == "cuda")
        del model
    return write(a.out, "latency", "ok", rows=rows, nc=a.nc)


def run_yolov5(a: argparse.Namespace, device: torch.device, write: Writer) -> int:
    pkg, status = gpu_yolov5.import_yolov5()   # installed: gpu_check.py checked
    if pkg is None:
        return write(a.out, "yolov5", status)
    root, info, hyp = gpu_yolov5.package_root(pkg), train_split(a), load_hyp(a.hyp)
    nc, g = len(info.names), grid_of(a, (), 0)
    run = gpu_bench.GridRun(g, info, hyp, device, jsonl_writer(a.out / "yolov5.jsonl"))
    builder = lambda amp, cl: gpu_yolov5.build_trainee(root, a.model, nc, a.size, hyp, device, amp, cl)  # noqa: E731
    run.run(gpu_bench.plan([a.model], g), {a.model: builder})
    latency = gpu_bench.latency_rows(a.model, gpu_yolov5.fused_model(root, a.model, a.nc), a.size,
                                     tuple(a.latency_batches), a.warmup, a.steps, device, half=device.type == "cuda")
    ours = {k: json.loads((a.out / f"{k}.json").read_text()).get("rows", []) if (a.out / f"{k}.json").is_file()
            else [] for k in ("throughput", "latency")}
    train_ratio = gpu_yolov5.ratios([r for r in ours["throughput"] if r["data"] == "synthetic"], run.rows,
                                    ("batch", "amp", "channels_last"), a.anchor)
    latency_ratio = gpu_yolov5.ratios(ours["latency"], latency, ("batch",), a.anchor)
    status = "ok" if not run.failed else f"failed: {len(run.failed)} cell(s): " + "; ".join(run.failed)
    notes = [] if train_ratio else [f"no {a.anchor} throughput row at matching settings: no training ratio"]
    return write(a.out, "yolov5", status, version=getattr(pkg, "__version__", "?"), rows=run.rows,
                 latency=latency, train_ratio=train_ratio, latency_ratio=latency_ratio, skipped=run.skipped,
                 failed_cells=run.failed, notes=notes)
