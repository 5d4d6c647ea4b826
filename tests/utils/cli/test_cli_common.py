"""utils.cli.common: exit codes and one-line messages of the shared CLI wrapper, the --half
fallback, the stride rounding of --img-size and the shared flag groups."""
from __future__ import annotations

import logging

import pytest
import torch

from utils.cli.checks import OneLineParser
from utils.cli.common import (add_device_flags, add_nms_flags, add_run_dir_flags, exit_code, fp16_on, img_size_for,
                              round_up)
from utils.config import ConfigError


class Done(Exception):
    pass


class Mismatch(RuntimeError):
    pass


def _raise(e: BaseException):
    def call():
        raise e
    return call


def test_normal_return_is_exit_0_whatever_the_call_returns(capsys):
    assert exit_code(lambda: {"seen": 3}) == 0
    assert exit_code(lambda: 1) == 0
    assert capsys.readouterr() == ("", "")


def test_config_error_is_one_line_on_stderr_and_exit_2(capsys):
    assert exit_code(_raise(ConfigError("--weights: checkpoint not found: x.pt"))) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "error: --weights: checkpoint not found: x.pt\n"


def test_errors_are_the_kinds_named(capsys):
    assert exit_code(_raise(ValueError("no images in d/")), errors=(ConfigError, ValueError)) == 2
    assert capsys.readouterr().err == "error: no images in d/\n"
    with pytest.raises(ValueError):  # not named: a real bug keeps its traceback
        exit_code(_raise(ValueError("bug")))


def test_failures_take_their_prefix_and_code_before_errors(capsys):
    failures = ((Mismatch, "error: ONNX check failed: ", 1),)
    assert exit_code(_raise(Mismatch("pred differs by 0.5")), failures=failures) == 1
    assert capsys.readouterr().err == "error: ONNX check failed: pred differs by 0.5\n"
    # a kind in both lists: the failure rule wins
    assert exit_code(_raise(ConfigError("x")), failures=((ConfigError, "bad: ", 3),)) == 3
    assert capsys.readouterr().err == "bad: x\n"


def test_done_prints_on_stdout_and_exits_0(capsys):
    assert exit_code(_raise(Done("run already finished 40/40 epochs")), done=(Done,)) == 0
    assert capsys.readouterr() == ("run already finished 40/40 epochs\n", "")


def test_ctrl_c_is_130_with_a_hint_and_propagates_without_one(capsys):
    hint = "weights/last.pt holds the last finished epoch; continue with --resume"
    assert exit_code(_raise(KeyboardInterrupt()), interrupted=hint) == 130
    assert capsys.readouterr().err == f"interrupted: {hint}\n"
    with pytest.raises(KeyboardInterrupt):
        exit_code(_raise(KeyboardInterrupt()))


def test_half_is_cuda_only(caplog):
    with caplog.at_level(logging.WARNING):
        assert fp16_on(torch.device("cpu"), half=True) is False
    assert caplog.messages == ["warning: --half needs CUDA; running FP32 on cpu"]
    caplog.clear()
    assert fp16_on(torch.device("cpu"), half=False) is False
    assert fp16_on(torch.device("cuda", 0), half=True) is True  # no CUDA call: only the device type is read
    assert caplog.messages == []


def test_img_size_rounds_up_to_the_stride(caplog):
    assert [round_up(n, 32) for n in (1, 32, 33, 100, 640)] == [32, 32, 64, 128, 640]
    with caplog.at_level(logging.WARNING):
        assert img_size_for(640, 32) == 640
        assert caplog.messages == []
        assert img_size_for(100, 32) == 128
    assert caplog.messages == ["warning: --img-size 100 is not a multiple of the stride 32; using 128"]


def test_flag_groups_defaults_and_checks(capsys):
    ap = OneLineParser(prog="x.py")
    add_nms_flags(ap, conf_thres=0.25, iou_thres=0.45, kinds=("nms", "diou"))
    add_device_flags(ap)
    add_run_dir_flags(ap, "runs/detect")
    opt = ap.parse_args([])
    assert (opt.conf_thres, opt.iou_thres, opt.nms, opt.max_det, opt.augment) == (0.25, 0.45, "nms", 300, False)
    assert (opt.device, opt.half, opt.project, opt.name, opt.exist_ok) == ("cpu", False, "runs/detect", "exp", False)
    with pytest.raises(SystemExit) as exc:
        ap.parse_args(["--iou-thres", "1.5"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == ("error: argument --iou-thres: must be in [0, 1], got 1.5 "
                                       "(see x.py --help)\n")
