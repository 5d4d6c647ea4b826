"""benchmarks/bench_main_job.py: the phase timers add up, and the loader-thread variant trains on the
very same batches (same results to the last digit), so its timings compare like with like."""
import json
from pathlib import Path

import pytest

import bench_main_job
import machine_probe

ROOT = Path(__file__).resolve().parents[1]


def _run(capsys, tmp_path, *flags):
    assert bench_main_job.main(["--epochs", "1", "--project", str(tmp_path), *flags]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_phases_add_up_and_the_loader_thread_changes_no_result(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)   # the main job's data/shapes.yaml
    monkeypatch.setattr(machine_probe, "matmul_probe", lambda **kw: 1.0)
    plain = _run(capsys, tmp_path / "plain")
    threaded = _run(capsys, tmp_path / "thread", "--loader-thread")
    for r in (plain, threaded):
        assert len(r["train_epoch_s"]) == 1 and len(r["val_epoch_s"]) == 1
        assert r["ckpt_s"] > 0 and r["other_s"] >= -0.01
        assert abs(r["train_s"] + r["val_s"] + r["check_s"] + r["ckpt_s"] + r["other_s"] - r["fit_s"]) < 0.02
        assert r["probe_gflops"] == [1, 1]
        assert 0 < r["loader_pass_s"] < r["train_s"]
    assert threaded["loader_thread"] and not plain["loader_thread"]
    assert plain["val_interval"] == 4   # the main job's (its one epoch is its last, so it validates)
    assert threaded["map50"] == plain["map50"]
    rows = [(tmp_path / d / "run" / "results.csv").read_text().splitlines()[1] for d in ("plain", "thread")]
    assert rows[0] == rows[1]   # losses, metrics and lrs of the epoch, to the last digit


@pytest.mark.parametrize("flag, value, why", [("--workers", "-1", "workers must be an integer >= 0, got -1"),
                                              ("--val-interval", "0", "val_interval must be an integer >= 1, got 0"),
                                              ("--epochs", "0", "epochs must be an integer >= 1, got 0")])
def test_a_bad_option_is_one_line_and_exit_2(capsys, monkeypatch, flag, value, why):
    monkeypatch.setattr(machine_probe, "matmul_probe", lambda **kw: 1.0)
    assert bench_main_job.main([flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: training options: {why}"]
