"""Model zoo benchmark: parameters, GFLOPs and fused forward latency of every model YAML in configs/.

    python benchmarks/bench_models.py                       # all models, 416 and 640, CPU
    python benchmarks/bench_models.py --configs yolov4_s yolov4_l --sizes 640 --runs 10
    python benchmarks/bench_models.py --peer                # + yolov5s/l rows from peer_bench.py

Every model is built with nc=4 (the vehicle subset of the design documents; YOLOv2/v3 YAMLs say 20,
overridden here so all rows compare like for like), random weights, eval mode, Conv+BN fused.
Parameters are counted before fusing (the seeds' "Model Summary" figure); GFLOPs (2 x MACs of
conv/matmul, torch's FlopCounterMode) of the fused model at batch 1. CPU latency: batch 1, input
``torch.rand(1, 3, S, S)``, ``torch.inference_mode()``, ``--threads`` (2) threads, median over
``--runs`` timed forwards after ``--warmup``. A matmul probe at the start and the end shows how much
the (shared, noisy) machine drifted during the run. With CUDA, a second table gives FP16
channels-last latency at batch 1 and throughput at batch 16.

``--peer`` runs the shared ``peer_bench.py --only latency --quick`` (yolov5 7.0 in its own virtual
environment, same thread count) BEFORE the project's rows, so both sides are measured in one run.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

from machine_probe import cpu_name, matmul_probe  # same folder (run as a script)
from models.summary import count_parameters, gflops
from models.yolo import Model, load_model_cfg

NC = 4
PEER_SCRIPT = ROOT / ".." / "shared" / "bench" / "peer_bench.py"
PEER_PYTHON = Path.home() / ".cache" / "peer-venv" / "bin" / "python"


def model_configs(cfg_dir: Path, only: list[str] | None) -> list[Path]:
    """Model YAMLs of ``cfg_dir`` (``hyp.*.yaml`` skipped), optionally restricted by stem."""
    paths = [p for p in sorted(cfg_dir.glob("*.yaml")) if not p.name.startswith("hyp.")]
    if only:
        missing = sorted(set(only) - {p.stem for p in paths})
        if missing:
            raise SystemExit(f"error: no model config(s) {missing} in {cfg_dir}; have {[p.stem for p in paths]}")
        paths = [p for p in paths if p.stem in only]
    return paths


def build(path: Path, nc: int = NC) -> Model:
    cfg = load_model_cfg(path)
    cfg.pop("pretrained", None)  # random weights; never download
    torch.manual_seed(0)
    return Model(cfg, nc=nc).eval()


def time_forward(model: torch.nn.Module, x: torch.Tensor, warmup: int, runs: int) -> list[float]:
    """Seconds per forward, ``runs`` timings after ``warmup`` untimed forwards."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    times = []
    with torch.inference_mode():
        for k in range(warmup + runs):
            sync()
            t = time.perf_counter()
            model(x)
            sync()
            if k >= warmup:
                times.append(time.perf_counter() - t)
    return times


def bench_cpu(path: Path, sizes: list[int], warmup: int, runs: int) -> dict:
    model = build(path)
    _, n_params, _ = count_parameters(model)
    model.fuse()
    row = {"model": path.stem, "params": n_params}
    for s in sizes:
        row[f"gflops{s}"] = gflops(model, s)
        times = time_forward(model, torch.rand(1, 3, s, s), warmup, runs)
        row[f"ms{s}"] = [t * 1e3 for t in times]
        print(f"  {path.stem} {s}: {statistics.median(times) * 1e3:.1f} ms", file=sys.stderr, flush=True)
    return row


def bench_cuda(path: Path, sizes: list[int], runs: int) -> dict:
    """FP16 channels-last latency (batch 1) and throughput (batch 16) on the first GPU."""
    model = build(path).fuse().cuda().half().to(memory_format=torch.channels_last)
    row = {"model": path.stem}
    for s in sizes:
        for b in (1, 16):
            x = torch.rand(b, 3, s, s, device="cuda").half().contiguous(memory_format=torch.channels_last)
            row[(s, b)] = statistics.median(time_forward(model, x, 10, runs)) * 1e3
    return row


def run_peer(threads: int) -> tuple[list[dict], list[str]]:
    """yolov5s/l latency rows and probe lines from peer_bench.py, or ([], [reason])."""
    if not PEER_PYTHON.exists() or not PEER_SCRIPT.exists():
        return [], [f"peer skipped: {PEER_PYTHON} or {PEER_SCRIPT.resolve()} absent"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    r = subprocess.run([str(PEER_PYTHON), str(PEER_SCRIPT), "--only", "latency", "--quick"], capture_output=True,
                       text=True, env=env, timeout=900)
    if r.returncode != 0:
        return [], [f"peer_bench.py failed (exit {r.returncode}): {r.stderr.strip().splitlines()[-1:]}"]
    rows: dict[str, dict] = {}
    notes = [f"peer {line[2:]}" for line in r.stdout.splitlines() if line.startswith(("- machine", "- python"))]
    for line in r.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 7:
            continue
        if cells[0] == "0" and "torch.mm" in cells[1]:
            notes.append(f"peer {cells[1]}: {cells[3]} {cells[4]}")
        m = re.match(r"(yolov5\w+) forward", cells[1])
        size = re.search(r"b1 (\d+)x", cells[2])
        if cells[0] == "1" and m and size:
            row = rows.setdefault(m.group(1), {"model": f"{m.group(1)} (peer, yolov5 7.0)"})
            params = re.search(r"params ([\d,]+)", cells[6])
            gf = re.search(r"([\d.]+) \(FlopCounterMode\)", cells[6])
            row["params"] = int(params.group(1).replace(",", "")) if params else None
            row[f"gflops{size.group(1)}"] = float(gf.group(1)) if gf else None
            row[f"ms{size.group(1)}"] = float(cells[3])
            row[f"spread{size.group(1)}"] = cells[5].replace(" (n=", ", n=").rstrip(")")
    return list(rows.values()), notes


def _ms_cell(row: dict, s: int) -> str:
    v = row.get(f"ms{s}")
    if v is None:
        return "-"
    if isinstance(v, list):
        return f"{statistics.median(v):.1f} ({min(v):.0f}-{max(v):.0f}, n={len(v)})"
    return f"{v:.1f} ({row.get(f'spread{s}', '')})"


def markdown(rows: list[dict], sizes: list[int]) -> str:
    head = ["model", "params"] + [f"GFLOPs {s}" for s in sizes] + [f"CPU ms {s} (min-max, n)" for s in sizes]
    head += [f"ms/GFLOP {sizes[-1]}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in rows:
        gf = [r.get(f"gflops{s}") for s in sizes]
        last = r.get(f"ms{sizes[-1]}")
        med = statistics.median(last) if isinstance(last, list) else last
        per = f"{med / gf[-1]:.2f}" if med and gf[-1] else "-"
        cells = [r["model"], f"{r['params']:,}" if r.get("params") else "-"]
        cells += [f"{g:.2f}" if g else "-" for g in gf] + [_ms_cell(r, s) for s in sizes] + [per]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cuda_markdown(rows: list[dict], sizes: list[int]) -> str:
    head = ["model"] + [f"b1 {s} ms" for s in sizes] + [f"b16 {s} img/s" for s in sizes]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in rows:
        cells = [r["model"]] + [f"{r[(s, 1)]:.2f}" for s in sizes] + [f"{16e3 / r[(s, 16)]:.0f}" for s in sizes]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", help="config stems to run (default: every model YAML)")
    ap.add_argument("--cfg-dir", default=str(ROOT / "configs"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[416, 640])
    ap.add_argument("--runs", type=int, default=5, help="timed CPU forwards per model and size")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peer", action="store_true", help="add yolov5s/l rows from peer_bench.py")
    ap.add_argument("--cuda-runs", type=int, default=30)
    ap.add_argument("--no-cuda", action="store_true", help="skip the CUDA table even when a GPU is present")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opt = parse_args(argv)
    torch.set_num_threads(opt.threads)
    paths = model_configs(Path(opt.cfg_dir), opt.configs)
    t0 = time.perf_counter()
    peer_rows, notes = run_peer(opt.threads) if opt.peer else ([], [])
    probe_start = matmul_probe(n=1024)
    rows = [bench_cpu(p, opt.sizes, opt.warmup, opt.runs) for p in paths]
    probe_end = matmul_probe(n=1024)
    cuda = torch.cuda.is_available() and not opt.no_cuda
    cuda_rows = [bench_cuda(p, opt.sizes, opt.cuda_runs) for p in paths] if cuda else []
    wall = time.perf_counter() - t0
    print(f"## Model benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}\n")
    print(f"- machine: {cpu_name()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}; "
          f"python {platform.python_version()}, torch {torch.__version__}")
    print(f"- nc={NC} for every model; batch 1; fused; inference_mode; median of {opt.runs} runs after "
          f"{opt.warmup} warm-up; wall time {wall:.0f} s")
    print(f"- machine probe (fp32 1024^2 matmul): {probe_start:.1f} GFLOP/s at start, {probe_end:.1f} at end")
    for n in notes:
        print(f"- {n}")
    print()
    print(markdown(peer_rows + rows, opt.sizes))
    if cuda_rows:
        print(f"\n### CUDA ({torch.cuda.get_device_name(0)}), FP16, channels_last, median of {opt.cuda_runs}\n")
        print(cuda_markdown(cuda_rows, opt.sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
