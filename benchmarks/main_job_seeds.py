"""The README's main-job figure in one command: ``python train.py --seed S --quiet`` for each seed, one after
another in this checkout, each bracketed by the machine probe, then one markdown table with issue #15's
probe-scaled budget (item 3: 5 minutes on 2 cores at ~240 GFLOP/s, so budget = 300 s x 240 / probe).

    .venv/bin/python benchmarks/main_job_seeds.py                      # seeds 0 1 2: the README's protocol
    .venv/bin/python benchmarks/main_job_seeds.py --seeds 3 4 5 --json seeds.json
    .venv/bin/python benchmarks/main_job_seeds.py --seeds 0 -- --val-interval 1   # after --: more train.py flags

Run it in a fresh clone (``git clone``, then the README's install) on a quiet machine. Each run is timed as a
user times it: the wall clock of the whole ``train.py`` process, imports included, and its user CPU. The probe
(``machine_probe.py``: fp32 2048x2048 matmul at 2 threads) runs in its own process just before and after, so this
process never loads torch or OpenMP; each row also gives the cores other processes kept busy just before its run
(train.py picks OMP_WAIT_POLICY=PASSIVE from 0.5 busy cores on: such a run is slower, and not a quiet figure).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine_probe import cpu_name  # noqa: E402  (same folder; loads no torch)
from utils.cli.cpu_env import BUSY_CORES, lasting_busy_cores  # noqa: E402

BUDGET_S = 300.0          # issue #15 item 3: 5 minutes wall on 2 cores ...
REFERENCE_GFLOPS = 240.0  # ... on a VM whose fp32 2048x2048 matmul probe gives ~240 GFLOP/s
OWN_FLAGS = ("--seed", "--project", "--name", "--exist-ok", "--quiet")   # set here for every run


def budget_s(probe_gflops: float) -> float:
    """The 5-minute budget scaled to a machine whose probe reads ``probe_gflops``."""
    return BUDGET_S * REFERENCE_GFLOPS / probe_gflops


def parse_probe(text: str) -> tuple[float, str]:
    """(GFLOP/s, torch version) from ``machine_probe.py``'s line."""
    m = re.search(r"probe: ([0-9.]+) GFLOP/s .*torch ([^)\s]+)\)", text)
    if m is None:
        raise RuntimeError(f"machine_probe.py printed no rate: {text.strip()!r}")
    return float(m.group(1)), m.group(2)


def probe(python: str = sys.executable) -> tuple[float, str]:
    """(GFLOP/s, torch version) from ``machine_probe.py`` run in its own process."""
    return parse_probe(subprocess.run([python, str(ROOT / "benchmarks" / "machine_probe.py")], capture_output=True,
                                      text=True, cwd=ROOT, check=True).stdout)


def final_metrics(results_csv: Path) -> tuple[float, float, float]:
    """(final mAP@0.5, final mAP@0.5:0.95, best mAP@0.5) from a run's results.csv (its last row is validated)."""
    with open(results_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    validated = [float(r["metrics/mAP_0.5"]) for r in rows if r["metrics/mAP_0.5"] not in ("", "nan")]
    last = rows[-1]
    return float(last["metrics/mAP_0.5"]), float(last["metrics/mAP_0.5:0.95"]), max(validated)


def run_seed(seed: int, project: Path, train_args: list[str], python: str = sys.executable) -> dict:
    """One ``train.py --seed S --quiet`` process: wall, user CPU, final metrics, probe around it."""
    before, torch_version = probe(python)
    time.sleep(1.0)   # the probe's OpenMP threads go idle before train.py samples /proc/stat
    busy = lasting_busy_cores()
    cmd = [python, "train.py", "--seed", str(seed), "--quiet", "--project", str(project), "--name", f"seed{seed}",
           "--exist-ok", *train_args]
    log = project / f"seed{seed}.log"
    with open(log, "w") as f:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        lines = log.read_text().strip().splitlines() or ["(no output)"]
        raise RuntimeError(f"train.py --seed {seed} exited {proc.returncode}: {lines[-1]} (log: {log})")
    after, _ = probe(python)
    map50, map5095, best50 = final_metrics(project / f"seed{seed}" / "results.csv")
    return {"seed": seed, "map50": map50, "map50_95": map5095, "best_map50": best50, "wall_s": round(wall, 1),
            "user_cpu_s": round(usage.ru_utime, 1), "probe_gflops": [round(before), round(after)],
            "busy_cores": None if busy is None else round(busy, 2),
            "budget_s": round(budget_s((before + after) / 2), 1), "torch": torch_version}


def machine() -> dict:
    """What the figures were measured on: CPU, cores, OpenCV and Python, the commit (and whether it is modified)."""
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.strip()
    opencv = subprocess.run([sys.executable, "-c", "import cv2; print(cv2.__version__)"], capture_output=True,
                            text=True).stdout.strip()
    return {"cpu": cpu_name(), "cpus": len(os.sched_getaffinity(0)), "opencv": opencv or "?",
            "python": sys.version.split()[0], "commit": (commit or "?") + (" (modified)" if dirty else ""),
            "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY") if k in os.environ}}


def report(rows: list[dict], info: dict, train_args: list[str]) -> str:
    """The markdown table and its summary line, ready for RESULTS.md."""
    cmd = " ".join(["python train.py --seed S --quiet", *train_args])
    lines = [f"`{cmd}`, {time.strftime('%Y-%m-%d')}, {info['cpu']} ({info['cpus']} CPUs), torch {rows[0]['torch']}, "
             f"OpenCV {info['opencv']}, Python {info['python']}, commit {info['commit']}"
             + (f", environment {info['env']}" if info["env"] else ""), "",
             "| seed | final mAP@0.5 | final mAP@.5:.95 | best mAP@0.5 | wall | user CPU | probe before / after | "
             "busy cores at start | probe-scaled budget | wall / budget |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        busy = "?" if r["busy_cores"] is None else f"{r['busy_cores']:.2f}"
        if r["busy_cores"] is not None and r["busy_cores"] >= BUSY_CORES:
            busy += " (PASSIVE)"
        lines.append(f"| {r['seed']} | {r['map50']:.3f} | {r['map50_95']:.3f} | {r['best_map50']:.3f} | "
                     f"{r['wall_s']:.0f} s | {r['user_cpu_s']:.0f} s | {r['probe_gflops'][0]} / {r['probe_gflops'][1]} | "
                     f"{busy} | {r['budget_s']:.0f} s | {r['wall_s'] / r['budget_s']:.2f}x |")
    maps, walls = [r["map50"] for r in rows], sorted(f"{r['wall_s']:.0f}" for r in rows)
    lines += ["", f"final mAP@0.5 min {min(maps):.3f}, median {statistics.median(maps):.3f} over {len(rows)} "
                  f"seed{'s' * (len(rows) > 1)}; wall {'-'.join(dict.fromkeys([walls[0], walls[-1]]))} s, at most "
                  f"{max(r['wall_s'] / r['budget_s'] for r in rows):.2f}x the probe-scaled budget "
                  f"({BUDGET_S:.0f} s x {REFERENCE_GFLOPS:.0f} / probe)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own, train_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds, run one after another")
    ap.add_argument("--project", default="runs/main_job_seeds", help="where the runs and their logs go")
    ap.add_argument("--json", help="also write the rows and the machine as JSON to this file")
    a = ap.parse_args(own)
    clash = [flag for flag in train_args if flag.split("=")[0] in OWN_FLAGS]
    if clash:
        ap.error(f"{clash[0]} after --: this script sets {', '.join(OWN_FLAGS)} for every run")
    if len(set(a.seeds)) != len(a.seeds) or min(a.seeds) < 0:
        ap.error(f"--seeds {' '.join(map(str, a.seeds))}: give distinct seeds >= 0")
    project = (ROOT / a.project).resolve() if not Path(a.project).is_absolute() else Path(a.project)
    project.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in a.seeds:
        try:
            rows.append(run_seed(seed, project, train_args))
        except (RuntimeError, subprocess.CalledProcessError, OSError, KeyError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        r = rows[-1]
        print(f"seed {seed}: final mAP@0.5 {r['map50']:.4f}, {r['wall_s']:.0f} s wall, probe {r['probe_gflops']}",
              file=sys.stderr, flush=True)
    info = machine()
    print(report(rows, info, train_args))
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": info, "train_args": train_args, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
