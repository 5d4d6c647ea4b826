"""The machine-speed probe the benchmarks print beside their figures: fp32 ``n x n`` matmul GFLOP/s.

One definition, so "probe 190" means the same measurement in every table: ``warmup`` untimed products,
then the median rate of ``reps`` timed ones. ``threads`` runs the probe at that many torch threads and
puts the caller's thread count back afterwards (a probe must not change the job it brackets); ``None``
probes at the current count. Issue #15's reference (~240 GFLOP/s) is ``n=2048`` at 2 threads on a 2-core VM,
which is what the script prints; :func:`cpu_name` is the CPU those tables name. Importing this module loads no
torch (a script that only names the machine, such as main_job_seeds.py, stays free of OpenMP):

    .venv/bin/python benchmarks/machine_probe.py            # the README's "probe": 2048, 2 threads
    .venv/bin/python benchmarks/machine_probe.py --n 1024    # bench_models.py's
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path


def cpu_name() -> str:
    """``model name`` of /proc/cpuinfo plus the vector extensions that matter to torch's CPU kernels."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines() if ":" in line)
    except OSError:
        return platform.processor() or "unknown CPU"
    info = {k.strip(): v.strip() for k, v in info.items()}
    flags = set(info.get("flags", "").split())
    ext = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return f"{info.get('model name', 'unknown CPU')} ({'/'.join(ext) or 'no avx2'})"


def matmul_probe(n: int = 2048, reps: int = 10, threads: int | None = None, warmup: int = 2) -> float:
    """Median fp32 ``n x n`` matmul rate in GFLOP/s (2 n^3 floating-point operations a product)."""
    import torch
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        a, b = torch.rand(n, n), torch.rand(n, n)
        for _ in range(warmup):
            torch.mm(a, b)
        seconds = []
        for _ in range(reps):
            t = time.perf_counter()
            torch.mm(a, b)
            seconds.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(before)
    return 2 * n ** 3 / statistics.median(seconds) / 1e9


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="fp32 n x n matmul GFLOP/s (median of --reps), the benchmarks' probe")
    ap.add_argument("--n", type=int, default=2048, help="matrix size (default 2048)")
    ap.add_argument("--reps", type=int, default=10, help="timed products (default 10)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2, the issue's 2-core reference)")
    a = ap.parse_args(argv)
    for flag, value in (("--n", a.n), ("--reps", a.reps), ("--threads", a.threads)):
        if value < 1:
            ap.error(f"{flag} {value}: must be at least 1")
    rate = matmul_probe(a.n, a.reps, a.threads)
    import torch
    print(f"fp32 {a.n}x{a.n} matmul probe: {rate:.1f} GFLOP/s (median of {a.reps}, {a.threads} torch threads, "
          f"torch {torch.__version__})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
