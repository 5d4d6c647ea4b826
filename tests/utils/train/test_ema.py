"""The model EMA's update rule with its warm-up (utils/train/ema.py)."""
from __future__ import annotations

import math

import pytest
import torch

from utils.train.ema import ModelEMA


def test_ema_update_formula():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.constant_(model.weight, 0.0)
    ema = ModelEMA(model, decay=0.9, tau=1.0)
    torch.nn.init.constant_(model.weight, 1.0)
    ema.update(model)                         # d = 0.9 (1 - e^-1) = 0.5689; ema = (1 - d) * 1
    d = 0.9 * (1 - torch.exp(torch.tensor(-1.0)))
    assert ema.ema.weight.item() == pytest.approx(float(1 - d))


def test_ema_update_equals_the_per_tensor_rule_bitwise():
    """The multi-tensor update is the per-tensor ``v * d + m * (1 - d)`` to the last bit, floats and
    BatchNorm's running statistics alike, and copies integer buffers (num_batches_tracked)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 4, 1))
    ema = ModelEMA(model, decay=0.99, tau=3.0)
    reference = {k: v.clone() for k, v in ema.ema.state_dict().items()}
    for step in range(1, 6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(2, 3, 9, 9))          # moves running_mean/var, num_batches_tracked
        ema.update(model)
        d = 0.99 * (1 - math.exp(-step / 3.0))
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                reference[k].mul_(d).add_(v, alpha=1 - d)
            else:
                reference[k].copy_(v)
    got = ema.ema.state_dict()
    assert got["1.num_batches_tracked"].item() == 5
    for k, v in reference.items():
        assert torch.equal(got[k], v), k


def test_a_tensor_under_two_names_is_averaged_once():
    """Model.detect is model[-1], so the head's tensors appear twice in state_dict(); each must get one
    EMA step per update (two would give v*d^2 + 2(1-d)*m: the anchors doubled, not averaged)."""
    from models.yolo import Model
    torch.manual_seed(0)
    model = Model("configs/yolov4_n.yaml", nc=4)
    assert model.state_dict()["detect.anchors"].data_ptr() == model.state_dict()["model.31.anchors"].data_ptr()
    ema = ModelEMA(model, decay=0.99, tau=1.0)
    before = {k: v.clone() for k, v in ema.ema.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    d = 0.99 * (1 - math.exp(-1.0))
    got, now = ema.ema.state_dict(), model.state_dict()
    for k in ("detect.m.0.weight", "model.31.m.2.bias", "model.0.conv.weight"):
        assert torch.equal(got[k], before[k].mul(d).add(now[k], alpha=1 - d)), k
    assert torch.allclose(got["detect.anchors"], now["detect.anchors"], rtol=1e-6)   # a constant stays put
