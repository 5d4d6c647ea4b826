"""Hyp.iou_t (utils/config.py): a yolov5 hyp key kept so those YAMLs load unchanged; range-checked
like every key, and read by nothing (the loss assigns targets by anchor_t, as yolov5's does)."""
from pathlib import Path

import pytest
import torch

from models.yolo import Model
from utils.config import ConfigError, load_hyp, replace
from utils.train.loss import build_criterion

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_a_yolov5_style_hyp_with_iou_t_loads_and_a_bad_value_is_named(tmp_path):
    y = tmp_path / "hyp.v5.yaml"
    y.write_text("lr0: 0.01\nbox: 0.05\niou_t: 0.20  # IoU training threshold\nanchor_t: 4.0\n")
    assert load_hyp(y).iou_t == 0.20 and load_hyp(y).anchor_t == 4.0
    y.write_text("iou_t: 1.5\n")
    with pytest.raises(ConfigError, match=r"hyp.v5.yaml: key 'iou_t' must be in \[0, 1\], got 1.5"):
        load_hyp(y)


def test_iou_t_changes_no_loss():
    torch.manual_seed(0)
    model = Model(CONFIGS / "yolov5n_layout.yaml", nc=3).train()
    preds = model(torch.rand(2, 3, 64, 64))
    targets = torch.tensor([[0, 0, 0.30, 0.45, 0.3, 0.3], [0, 2, 0.70, 0.25, 0.5, 0.2], [1, 1, 0.5, 0.6, 0.6, 0.7]])
    hyp = load_hyp(CONFIGS / "hyp.scratch.yaml")
    low, _ = build_criterion(model, replace(hyp, iou_t=0.05), 64)(preds, targets)
    high, _ = build_criterion(model, replace(hyp, iou_t=0.95), 64)(preds, targets)
    assert low.item() > 0 and torch.equal(low, high)
