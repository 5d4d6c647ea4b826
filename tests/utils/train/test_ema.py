"""The model EMA's update rule with its warm-up (utils/train/ema.py)."""
from __future__ import annotations

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
