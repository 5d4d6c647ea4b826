"""--resume of a finished run (says so, trains nothing), --resume --epochs N (extends the run with
the lr schedule recomputed for N), and checkpoints that cannot be resumed (one clear line)."""
from __future__ import annotations

import csv
import logging

import pytest
import torch

import train
from utils.train.checkpoint import load_checkpoint, save_checkpoint
from utils.config import load_hyp
from utils.train.schedule import lr_factor


def _rows(run):
    with (run / "results.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def two_epoch_run(shapes_yaml, tmp_path_factory):
    """A finished 2-epoch run of the tiny main-job recipe (train.main in-process)."""
    from conftest import _train_args
    project = tmp_path_factory.mktemp("runs")
    assert train.main(_train_args(shapes_yaml, project, epochs=2)) == 0
    return project / "exp"


def _copy_run(run, dst):
    import shutil
    shutil.copytree(run, dst)
    return dst / "weights" / "last.pt"


def test_resume_of_a_finished_run_says_complete_and_trains_nothing(two_epoch_run, tmp_path, capsys):
    last = _copy_run(two_epoch_run, tmp_path / "run")
    before = last.read_bytes()
    assert train.main(["--resume", str(last), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "the run is complete (2 of 2 epochs, all epochs trained)" in out
    assert f"--resume {last} --epochs 3" in out                   # how to train longer
    assert last.read_bytes() == before and len(_rows(tmp_path / "run")) == 2


def test_resume_with_more_epochs_trains_exactly_the_extra_ones(two_epoch_run, tmp_path, caplog):
    last = _copy_run(two_epoch_run, tmp_path / "run")
    with caplog.at_level(logging.INFO):
        assert train.main(["--resume", str(last), "--epochs", "3", "--quiet"]) == 0
    assert "extended from 2 to 3 epochs; the lr schedule is recomputed for 3 epochs" in caplog.text
    rows = _rows(tmp_path / "run")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]            # one more epoch, no duplicate rows
    assert rows[:2] == _rows(two_epoch_run)                        # the first two rows kept as they were
    ckpt = load_checkpoint(last)
    assert ckpt["epoch"] == 2 and ckpt["opt"]["epochs"] == 3 and ckpt["finished"]
    hyp = load_hyp("configs/hyp.shapes.yaml")                       # cosine, lr0 0.004, lrf 0.2
    # epoch 2 (0-based) follows the 3-epoch schedule: 0.004 * (0.2 + 0.8 * (1 + cos(2 pi / 3)) / 2) = 0.0016
    assert float(rows[2]["x/lr1"]) == pytest.approx(hyp.lr0 * lr_factor(hyp, 3, 2)) == pytest.approx(0.0016)
    # and not the old one, which ended at epoch 1 of 2
    assert float(rows[1]["x/lr1"]) == pytest.approx(hyp.lr0 * lr_factor(hyp, 2, 1))


def test_resume_cannot_shorten_a_run(two_epoch_run, tmp_path, capsys):
    last = _copy_run(two_epoch_run, tmp_path / "run")
    assert train.main(["--resume", str(last), "--epochs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--epochs 1" in err and "has already trained 2 epochs" in err


def test_early_stopped_run_is_complete_unless_extended(two_epoch_run, tmp_path, capsys):
    last = _copy_run(two_epoch_run, tmp_path / "run")
    ckpt = load_checkpoint(last)
    ckpt["opt"]["epochs"] = 10                  # as if patience had stopped it after epoch 2 of 10
    save_checkpoint({k: v for k, v in ckpt.items() if k not in ("kind", "version")}, last)
    assert train.main(["--resume", str(last), "--quiet"]) == 0
    assert "(2 of 10 epochs, stopped early)" in capsys.readouterr().out


def test_resume_checkpoint_that_does_not_fit_is_one_line(two_epoch_run, tmp_path, capsys):
    last = _copy_run(two_epoch_run, tmp_path / "run")
    ckpt = load_checkpoint(last)
    ckpt["finished"], ckpt["opt"]["epochs"] = False, 3
    key = next(k for k, v in ckpt["model"].items() if v.dim() == 4)
    ckpt["model"][key] = torch.zeros(1, 1, 1, 1)  # a tensor of another shape
    save_checkpoint({k: v for k, v in ckpt.items() if k not in ("kind", "version")}, last)
    assert train.main(["--resume", str(last), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"--resume {last}: its weights do not fit" in err and key in err


def test_resume_of_a_checkpoint_with_the_old_options_dict(two_epoch_run, tmp_path, capsys):
    """A checkpoint written before TrainOptions (train.py's Namespace with ``*_given`` keys and, older
    still, no ``channels_last``) resumes, and saves its options in the new shape."""
    last = _copy_run(two_epoch_run, tmp_path / "run")
    ckpt = load_checkpoint(last)
    old = {k: v for k, v in ckpt["opt"].items() if k not in ("given", "save_dir", "channels_last")}
    ckpt["opt"] = {**old, "batch_size_given": True, "workers_given": True, "device_given": True, "epochs_given": True}
    save_checkpoint({k: v for k, v in ckpt.items() if k not in ("kind", "version")}, last)
    assert train.main(["--resume", str(last), "--epochs", "3", "--quiet"]) == 0
    assert [int(r["epoch"]) for r in _rows(tmp_path / "run")] == [0, 1, 2]   # exactly the one extra epoch
    opt = load_checkpoint(last)["opt"]
    assert opt["epochs"] == 3 and opt["channels_last"] is False and opt["given"] == ["epochs"]
    assert not any(k.endswith("_given") for k in opt)
