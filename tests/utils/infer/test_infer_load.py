"""utils.infer.load: class names out of a checkpoint, and the one-line error of a checkpoint that
holds no usable model."""
from __future__ import annotations

import pytest
import torch

from utils.infer.load import class_names, load_detector, load_fused
from utils.train.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint


def test_class_names_from_a_list_a_dict_or_indices():
    assert class_names({"names": ["car", "bus"]}, 2) == ["car", "bus"]
    assert class_names({"names": ("car", "bus")}, 2) == ["car", "bus"]
    assert class_names({"names": {1: "bus", 0: "car"}}, 2) == ["car", "bus"]  # by index, not insertion order
    assert class_names({"names": ["car"]}, 3) == ["0", "1", "2"]  # wrong count: indices
    assert class_names({}, 2) == ["0", "1"]


def test_loaded_detector_is_fused_eval_and_keeps_the_checkpoint(tiny_weights):
    model, ckpt = load_detector(str(tiny_weights), torch.device("cpu"), half=False)
    assert not model.training and ckpt["names"] == ["motorcycle", "car", "bus", "truck"]
    plain, _ = load_model(tiny_weights)
    n_bn = [sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) for net in (plain, model)]
    assert n_bn[1] < n_bn[0]  # the BNs that follow a conv are folded into it (a BN after a concat stays)
    assert class_names(ckpt, model.nc) == ["motorcycle", "car", "bus", "truck"]


def test_a_checkpoint_without_weights_names_the_file_and_the_cause(tiny_weights, tmp_path):
    ckpt = load_checkpoint(tiny_weights)
    bad = tmp_path / "no_model.pt"
    save_checkpoint({k: v for k, v in ckpt.items() if k != "model"}, bad)
    with pytest.raises(CheckpointError) as e:
        load_fused(bad)
    assert str(e.value) == f"{bad}: checkpoint does not hold a usable model (KeyError: 'model')"
