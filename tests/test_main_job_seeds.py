"""benchmarks/main_job_seeds.py: the README's main-job protocol as one command -- each seed's figures are the
ones train.py itself printed, the budget is 300 s x 240 / probe, and a failing run or a clashing flag is one line."""
import json
import re

import pytest

import machine_probe
import main_job_seeds


def test_probe_line_parses(capsys):
    assert machine_probe.main(["--n", "256", "--reps", "1", "--threads", "1"]) == 0
    rate, version = main_job_seeds.parse_probe(capsys.readouterr().out)
    import torch
    assert rate > 0 and version == torch.__version__


def test_budget_scales_with_the_probe():
    assert main_job_seeds.budget_s(240.0) == 300.0
    assert main_job_seeds.budget_s(120.0) == 600.0   # half the reference machine: twice the time


def test_two_seeds_report_what_train_py_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(main_job_seeds, "probe", lambda python=None: (120.0, "9.9"))
    out_json = tmp_path / "seeds.json"
    assert main_job_seeds.main(["--seeds", "0", "1", "--project", str(tmp_path / "runs"), "--json", str(out_json),
                                "--", "--epochs", "1", "--img-size", "64"]) == 0
    table = capsys.readouterr().out
    rows = json.loads(out_json.read_text())["rows"]
    assert [r["seed"] for r in rows] == [0, 1]
    for r in rows:
        printed = (tmp_path / "runs" / f"seed{r['seed']}.log").read_text().strip().splitlines()[-1]
        m = re.match(r"mAP@0.5 ([0-9.]+)  mAP@0.5:0.95 ([0-9.]+)  results in ", printed)
        assert m, printed
        assert f"{r['map50']:.4f}" == m.group(1) and f"{r['map50_95']:.4f}" == m.group(2)
        assert r["best_map50"] == r["map50"]   # one epoch: the best is the last
        assert r["budget_s"] == 600.0 and r["probe_gflops"] == [120, 120] and r["torch"] == "9.9"
        assert 0 < r["user_cpu_s"] and 0 < r["wall_s"]
        assert f"| {r['seed']} | {r['map50']:.3f} | " in table
        assert f"{r['wall_s'] / 600:.2f}x |" in table
    assert rows[0]["map50"] != rows[1]["map50"]   # the seed reached train.py
    assert "over 2 seeds" in table and "--epochs 1 --img-size 64" in table


def test_a_failing_run_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(main_job_seeds, "probe", lambda python=None: (120.0, "9.9"))
    assert main_job_seeds.main(["--seeds", "0", "--project", str(tmp_path), "--", "--epochs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: train.py --seed 0 exited 2: ")
    assert "epochs" in err[0] and str(tmp_path / "seed0.log") in err[0]


@pytest.mark.parametrize("argv, why", [(["--", "--seed", "3"], "--seed after --"),
                                       (["--", "--project=x"], "--project=x after --"),
                                       (["--seeds", "1", "1"], "give distinct seeds >= 0"),
                                       (["--seeds", "-1"], "give distinct seeds >= 0")])
def test_clashing_or_bad_flags_stop_before_any_run(argv, why, capsys, monkeypatch):
    monkeypatch.setattr(main_job_seeds, "run_seed", lambda *a, **k: pytest.fail("ran"))
    with pytest.raises(SystemExit) as e:
        main_job_seeds.main(argv)
    assert e.value.code == 2 and why in capsys.readouterr().err
