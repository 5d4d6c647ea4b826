"""Process-start CPU settings: they must be in place before ``import torch`` loads OpenMP.

Kept free of heavy imports (only ``os`` and ``time``), so a CLI can call it as its first statement.
"""
from __future__ import annotations

import os
import time
from typing import Optional

BUSY_CORES = 0.5  # cores that other processes keep busy at start that mean the machine is shared
SAMPLE_S = 0.2    # how long the start-up sample of /proc/stat lasts
RECHECK_S = 1.0   # a busy first sample is taken again this much later: a burst of short commands is no neighbour


def wait_policy_for(busy: float) -> Optional[str]:
    """``"PASSIVE"`` when other processes keep ``busy`` >= BUSY_CORES cores busy at start, else None
    (libgomp's default).

    Measured (benchmarks/bench_omp.py, one epoch of the main job, 2-core AMD VM, 2026-12-01):
    quiet, libgomp's spin-then-sleep default took 14.1-17.6 s against 19.7-19.8 s for PASSIVE;
    beside one busy process PASSIVE took 24.2 s against 36.8 s (and 23.9 against 44.3 CPU seconds:
    spinning threads burn the core the neighbour needs). So each is right in its own case -- and the
    wrong one is costly: the whole 40-epoch main job on a quiet Intel VM took 555 s under PASSIVE
    against 315 s under the default (2026-12-02).
    """
    return "PASSIVE" if busy >= BUSY_CORES else None


def cpu_ticks() -> Optional[tuple[int, int, int]]:
    """``(busy, total, cpus)``: the busy and all clock ticks so far of the CPUs this process may run on
    (``/proc/stat``'s ``cpuN`` lines, restricted to the affinity mask: a ``taskset`` or cpuset keeps other
    cores' tenants out of the count), None where there is no such file."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    busy = total = cpus = 0
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or not fields[0].startswith("cpu") or not fields[0][3:].isdigit():
            continue
        if allowed is not None and int(fields[0][3:]) not in allowed:
            continue
        ticks = [int(v) for v in fields[1:9]]   # user nice system idle iowait irq softirq steal
        busy += sum(ticks) - ticks[3] - ticks[4]
        total += sum(ticks)
        cpus += 1
    return (busy, total, cpus) if cpus else None


def busy_cores(sample_s: float = SAMPLE_S, ticks=cpu_ticks) -> Optional[float]:
    """Cores kept busy by other processes now: ``/proc/stat`` over ``sample_s`` seconds while this
    process sleeps. Not the load average: a minute after a job ends its 1-minute average still reads
    ~1.5 on a machine that is idle (which made a main job that followed another run under PASSIVE)."""
    first = ticks()
    if first is None:
        return None
    time.sleep(sample_s)
    second = ticks()
    if second is None or second[1] <= first[1]:
        return None
    return (second[0] - first[0]) / (second[1] - first[1]) * second[2]


def lasting_busy_cores(sample_s: float = SAMPLE_S, recheck_s: float = RECHECK_S, ticks=cpu_ticks,
                       sleep=time.sleep) -> Optional[float]:
    """Cores that other processes keep busy for a while: :func:`busy_cores` once, and where that reads busy
    (>= BUSY_CORES) once more ``recheck_s`` later, the smaller of the two. The policy holds for the whole run,
    and a burst of short commands at the moment a job starts (measured 2026-12-04: eleven back-to-back
    ``python3 -c`` read as 0.98 busy cores, 0.00 three seconds later) once made a 40-epoch main job run under
    PASSIVE on an idle VM, 464 s instead of ~315 s. A quiet machine still costs one sample; a busy one
    ``recheck_s`` + one more. None where ``/proc/stat`` is missing."""
    first = busy_cores(sample_s, ticks)
    if first is None or wait_policy_for(first) is None:
        return first
    sleep(recheck_s)
    second = busy_cores(sample_s, ticks)
    return first if second is None else min(first, second)


def choose_openmp_wait_policy() -> None:
    """Set OMP_WAIT_POLICY=PASSIVE on a machine that is busy when the process starts, unless the user
    chose a policy (a value that is set, even empty, is left alone). Busy is measured from
    ``/proc/stat`` (:func:`lasting_busy_cores`); where it is missing, the 1-minute load average stands in."""
    if "OMP_WAIT_POLICY" in os.environ:
        return
    busy = lasting_busy_cores()
    if busy is None:
        if not hasattr(os, "getloadavg"):
            return
        busy = os.getloadavg()[0]
    policy = wait_policy_for(busy)
    if policy:
        os.environ["OMP_WAIT_POLICY"] = policy
