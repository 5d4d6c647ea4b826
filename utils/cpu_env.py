"""Process-start CPU settings: they must be in place before ``import torch`` loads OpenMP.

Kept free of heavy imports (only ``os``), so a CLI can call it as its first statement.
"""
from __future__ import annotations

import os


def prefer_passive_openmp() -> None:
    """Idle OpenMP threads sleep instead of spinning, unless the user chose a policy.

    On a shared 2-core machine a spinning thread takes the core a neighbour (or a loader worker)
    needs, and every parallel region then waits for the slowest thread: measured with one busy
    neighbour, an epoch of the main job took 2.2x its quiet time with libgomp's default policy and
    far less with ``PASSIVE``, which costs nothing measurable on a quiet machine (benchmarks/bench_omp.py,
    benchmarks/RESULTS.md). ``OMP_WAIT_POLICY`` set by the user (even empty) is left alone.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
