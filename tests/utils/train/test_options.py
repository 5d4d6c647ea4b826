"""TrainOptions: built once from train.py's flags (task defaults, the flags given) or from a
checkpoint (this framework's and the older ``opt`` dicts), checked, frozen, stored as plain data."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import train
from utils.config import ConfigError, Hyp
from utils.train.options import (RunComplete, TrainOptions, hyp_with_flags, options_from_dict, options_to_dict,
                                 resumed_options)

# the "opt" dict of a checkpoint written before TrainOptions (train.py's argparse Namespace as it was saved)
OLD_OPT = {"task": "detect", "cfg": "configs/yolov4_n.yaml", "data": "data/shapes.yaml", "hyp": "configs/hyp.shapes.yaml",
           "weights": "", "epochs": 1, "batch_size": 16, "img_size": 160, "device": "", "workers": 0,
           "project": "/tmp/hc", "name": "before", "exist_ok": True, "resume": False, "evolve": None, "seed": 0,
           "optimizer": None, "cos_lr": False, "multi_scale": False, "sync_bn": False, "patience": 100, "freeze": [],
           "cache": None, "amp": "auto", "channels_last": True, "nms": "nms", "iou_thres": 0.65, "noautoanchor": False,
           "nan_retries": 3, "quiet": True, "download": False, "batch_size_given": False, "workers_given": False,
           "device_given": False, "epochs_given": True}


def test_task_defaults_and_the_flags_given():
    detect, classify = train.parse_args([]), train.parse_args(["--task", "classify"])
    assert (detect.cfg, detect.epochs, detect.img_size, detect.batch_size) == ("configs/yolov4_n.yaml", 40, 160, 16)
    assert (classify.cfg, classify.epochs, classify.img_size, classify.batch_size) == \
        ("configs/darknet19_cls_n.yaml", 30, 64, 32)
    assert (detect.val_interval, classify.val_interval, TrainOptions().val_interval) == (4, 1, 4)
    assert detect.given == frozenset() and detect.workers is None and detect.device == ""
    opt = train.parse_args(["--epochs", "5", "--workers", "0", "--freeze", "3", "--quiet"])
    assert opt.given == {"epochs", "workers"} and opt.freeze == (3,) and opt.epochs == 5
    assert train.parse_args(["--val-interval", "1"]).given == {"val_interval"}
    assert train.parse_args(["--resume"]).resume is True and train.parse_args(["--resume", "a/last.pt"]).resume == "a/last.pt"


def test_options_are_frozen_and_checked():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainOptions().epochs = 3
    with pytest.raises(ConfigError, match="amp must be one of"):
        TrainOptions(amp="fp8")
    with pytest.raises(ConfigError, match="epochs must be an integer >= 1, got 0"):
        TrainOptions(epochs=0)
    with pytest.raises(ConfigError, match="val_interval must be an integer >= 1, got 0"):
        TrainOptions(val_interval=0)
    with pytest.raises(ConfigError, match=r"x\.pt: training options: workers must be an integer >= 0, got -1"):
        options_from_dict({**OLD_OPT, "workers": -1}, "x.pt")


def test_plain_data_round_trip(tmp_path):
    opt = train.parse_args(["--epochs", "5", "--freeze", "1", "2", "--device", "cpu"])
    plain = options_to_dict(opt)
    assert plain["freeze"] == [1, 2] and plain["given"] == ["device", "epochs"]
    torch.save({"opt": plain}, tmp_path / "o.pt")
    loaded = torch.load(tmp_path / "o.pt", weights_only=True)["opt"]
    assert options_from_dict(loaded, "o.pt") == dataclasses.replace(opt, given=frozenset())   # given: the next command's


def test_old_checkpoint_options():
    opt = options_from_dict(OLD_OPT, "old.pt")
    assert (opt.epochs, opt.batch_size, opt.workers, opt.channels_last, opt.given) == (1, 16, 0, True, frozenset())
    assert opt.val_interval == 1                                         # saved before --val-interval: every epoch
    older = {k: v for k, v in OLD_OPT.items() if k != "channels_last"}   # trained before --channels-last existed
    assert options_from_dict(older, "older.pt").channels_last is False
    assert opt.cache == "off"                                            # saved before --cache auto: None meant no cache
    assert options_from_dict({**OLD_OPT, "cache": "ram"}, "old.pt").cache == "ram"
    assert train.parse_args([]).cache == "auto" and train.parse_args(["--cache", "off"]).cache == "off"
    with pytest.raises(ConfigError, match="cache must be one of"):
        TrainOptions(cache="disk")


def test_resume_overrides_only_what_the_command_gives():
    ckpt = {"opt": options_to_dict(TrainOptions(epochs=5, batch_size=8, device="cpu", workers=2)), "epoch": 1}
    path = Path("runs/exp/weights/last.pt")
    cmd = train.parse_args(["--resume", str(path), "--batch-size", "4", "--download"])
    run = resumed_options(cmd, ckpt, path)
    assert (run.batch_size, run.workers, run.device, run.epochs) == (4, 2, "cpu", 5)
    assert (run.resume, run.save_dir, run.download) == (str(path), "runs/exp", True)
    assert run.val_interval == 4                                         # the checkpoint's (TrainOptions' default)
    again = resumed_options(train.parse_args(["--resume", str(path), "--val-interval", "1"]), ckpt, path)
    assert (again.val_interval, again.batch_size) == (1, 8)
    longer = resumed_options(train.parse_args(["--resume", str(path), "--epochs", "7"]), ckpt, path)
    assert longer.epochs == 7
    with pytest.raises(RunComplete, match=r"complete \(2 of 2 epochs, all epochs trained\)"):
        resumed_options(train.parse_args(["--resume", str(path), "--epochs", "2"]), ckpt, path)
    with pytest.raises(ConfigError, match="has already trained 2 epochs"):
        resumed_options(train.parse_args(["--resume", str(path), "--epochs", "1"]), ckpt, path)


def test_flags_that_override_the_hyp():
    h = Hyp()
    assert hyp_with_flags(h, TrainOptions()) is h
    folded = hyp_with_flags(h, TrainOptions(optimizer="Adam", cos_lr=True))
    assert (folded.optimizer, folded.lr_schedule, folded.lr0) == ("Adam", "cosine", h.lr0)
