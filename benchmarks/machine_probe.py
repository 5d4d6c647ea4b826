"""The machine-speed probe the benchmarks print beside their figures: fp32 ``n x n`` matmul GFLOP/s.

One definition, so "probe 190" means the same measurement in every table: ``warmup`` untimed products,
then the median rate of ``reps`` timed ones. ``threads`` runs the probe at that many torch threads and
puts the caller's thread count back afterwards (a probe must not change the job it brackets); ``None``
probes at the current count. Issue #15's reference (~240 GFLOP/s) is ``n=2048`` at 2 threads on a 2-core VM.
"""
from __future__ import annotations

import statistics
import time

import torch


def matmul_probe(n: int = 2048, reps: int = 10, threads: int | None = None, warmup: int = 2) -> float:
    """Median fp32 ``n x n`` matmul rate in GFLOP/s (2 n^3 floating-point operations a product)."""
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
