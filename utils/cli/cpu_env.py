"""Process-start CPU settings: they must be in place before ``import torch`` loads OpenMP.

Kept free of heavy imports (only ``os``), so a CLI can call it as its first statement.
"""
from __future__ import annotations

import os
from typing import Optional

BUSY_LOAD = 0.5   # 1-minute load average at start that means another process is using a core


def wait_policy_for(load_1min: float) -> Optional[str]:
    """``"PASSIVE"`` when the machine is already busy at start, else None (libgomp's default).

    Measured (benchmarks/bench_omp.py, one epoch of the main job, 2-core AMD VM, 2026-12-01):
    quiet, libgomp's spin-then-sleep default took 14.1-17.6 s against 19.7-19.8 s for PASSIVE;
    beside one busy process PASSIVE took 24.2 s against 36.8 s (and 23.9 against 44.3 CPU seconds:
    spinning threads burn the core the neighbour needs). So each is right in its own case.
    """
    return "PASSIVE" if load_1min >= BUSY_LOAD else None


def choose_openmp_wait_policy() -> None:
    """Set OMP_WAIT_POLICY=PASSIVE on a machine that is busy when the process starts, unless the user
    chose a policy (a value that is set, even empty, is left alone)."""
    if "OMP_WAIT_POLICY" in os.environ or not hasattr(os, "getloadavg"):
        return
    policy = wait_policy_for(os.getloadavg()[0])
    if policy:
        os.environ["OMP_WAIT_POLICY"] = policy
