"""OpenMP wait policy on CPU: one epoch of the main job, quiet and beside a busy neighbour.

    .venv/bin/python benchmarks/bench_omp.py                 # 3 policies x (quiet, busy) x 2 repetitions
    .venv/bin/python benchmarks/bench_omp.py --reps 1 --policies default PASSIVE

Each row runs ``train.py --epochs 1`` (the main job's model, data and recipe, one epoch, validation
included) as a subprocess with ``OMP_WAIT_POLICY`` set to ``ACTIVE``, ``PASSIVE`` or ``default``
(an empty value: libgomp ignores it and keeps its built-in spin-then-sleep default, and train.py's
own default does not replace a value that is set). "busy" starts one single-threaded Python busy
loop beside it, as a neighbour process on a 2-core machine would. Reported: wall seconds and the
child's user + system CPU seconds (OpenMP threads that spin burn CPU without doing work).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POLICIES = {"ACTIVE": "ACTIVE", "PASSIVE": "PASSIVE", "default": ""}


def one_epoch(policy: str, busy: bool, project: Path) -> tuple[float, float]:
    env = {**os.environ, "OMP_WAIT_POLICY": POLICIES[policy]}
    env.pop("OMP_NUM_THREADS", None)
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "train.py", "--epochs", "1", "--quiet", "--project", str(project),
                        "--name", "exp"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    ap.add_argument("--reps", type=int, default=2)
    a = ap.parse_args(argv)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(a.reps):                 # interleaved, so drift hits every policy alike
            for busy in (False, True):
                for policy in a.policies:
                    wall, cpu = one_epoch(policy, busy, Path(tmp))
                    rows.setdefault((busy, policy), []).append((wall, cpu))
                    print(f"rep {rep} {'busy ' if busy else 'quiet'} {policy:8s} wall {wall:6.1f} s  cpu {cpu:6.1f} s",
                          flush=True)
    print(f"\n| neighbour | OMP_WAIT_POLICY | wall s (median of {a.reps}) | user+sys CPU s |\n|---|---|---:|---:|")
    for (busy, policy), v in sorted(rows.items()):
        print(f"| {'1 busy process' if busy else 'none'} | {policy} | {statistics.median(w for w, _ in v):.1f} | "
              f"{statistics.median(c for _, c in v):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
