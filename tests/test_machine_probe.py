"""benchmarks/machine_probe.py: the probe is the median rate of its timed products, runs at the thread
count asked for, and gives the caller its own thread count back."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import machine_probe

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "machine_probe.py"


def test_rate_is_two_n_cubed_over_the_median_product_time(monkeypatch):
    # timed products of 0.5, 2.0 and 0.5 s (perf_counter read before and after each): median 0.5 s, mean 1.0 s
    clock = iter([0.0, 0.5, 10.0, 12.0, 20.0, 20.5])
    monkeypatch.setattr(machine_probe.time, "perf_counter", lambda: next(clock))
    rate = machine_probe.matmul_probe(n=10, reps=3, warmup=1)
    assert rate == 2 * 10 ** 3 / 0.5 / 1e9   # 4e-6 GFLOP/s; the mean would give 2e-6


def test_runs_at_the_threads_asked_and_restores_the_callers(monkeypatch):
    seen, real_mm = [], torch.mm
    monkeypatch.setattr(torch, "mm", lambda a, b: (seen.append(torch.get_num_threads()), real_mm(a, b))[1])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert machine_probe.matmul_probe(n=32, reps=2, threads=2, warmup=1) > 0
        assert seen == [2, 2, 2] and torch.get_num_threads() == 1
        seen.clear()
        machine_probe.matmul_probe(n=32, reps=1, warmup=0)       # threads=None: the current count
        assert seen == [1]
    finally:
        torch.set_num_threads(before)


def test_thread_count_is_restored_when_a_product_fails(monkeypatch):
    def boom(a, b):
        raise RuntimeError("out of memory")
    monkeypatch.setattr(torch, "mm", boom)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with pytest.raises(RuntimeError, match="out of memory"):
            machine_probe.matmul_probe(n=8, reps=1, threads=2)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_script_prints_the_probe_and_refuses_a_zero_size():
    ok = subprocess.run([sys.executable, str(SCRIPT), "--n", "256", "--reps", "2"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    line = ok.stdout.strip()
    assert line.startswith("fp32 256x256 matmul probe: ") and "median of 2, 2 torch threads" in line
    assert float(line.split(": ")[1].split()[0]) > 0
    bad = subprocess.run([sys.executable, str(SCRIPT), "--n", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--n 0: must be at least 1" in bad.stderr and "Traceback" not in bad.stderr


def test_cpu_name_is_cpuinfos_model_name_and_importing_loads_no_torch():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo on this machine")
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("model name")), None)
    if model is None:
        pytest.skip("/proc/cpuinfo names no model here")
    assert machine_probe.cpu_name().startswith(f"{model} (")
    # main_job_seeds.py names the machine without loading torch (and OpenMP) in the process that times train.py
    code = f"import sys; sys.path.insert(0, {str(SCRIPT.parent)!r}); import machine_probe, main_job_seeds; " \
           "machine_probe.cpu_name(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
