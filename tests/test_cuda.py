"""CUDA paths against their CPU results (marked ``cuda``; skipped without a CUDA device; run on a
GPU by ``pytest -m cuda`` or benchmarks/gpu_check.sh): AMP fp16/bf16 training steps through the
project's loop, NMS and DIoU-NMS through ``non_max_suppression``, and ``evaluate()`` on CUDA
outputs. The helpers take the device, so the same comparisons can be rehearsed on a CPU."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from models.yolo import Model
from utils.config import Hyp
from utils.train.ema import ModelEMA
from utils.eval.evaluate import EvalSettings, evaluate
from utils.train.loop import LoopSettings, LoopState, TrainParts, is_finite_model, train_one_epoch
from utils.train.loss import build_criterion
from utils.ops.nms import greedy_iou_nms, non_max_suppression
from utils.train.schedule import build_optimizer

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
IMG = 64
# (image in batch, class, cx, cy, w, h), normalised
TARGETS = torch.tensor([[0, 1, 0.50, 0.50, 0.30, 0.30], [1, 0, 0.30, 0.60, 0.40, 0.20],
                        [2, 3, 0.60, 0.40, 0.25, 0.35], [3, 2, 0.50, 0.50, 0.50, 0.50]])


# ------------------------------------------------------------------------------------ AMP steps
def fixed_batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (4, 3, IMG, IMG), dtype=torch.uint8, generator=g)


def batch_loss(model: nn.Module, crit, imgs: torch.Tensor, device: torch.device, amp=None) -> float:
    """Training-mode loss of the fixed batch, no step (BatchNorm on batch statistics)."""
    x = imgs.to(device).float() / 255
    with torch.no_grad(), torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        preds = model(x)
    return float(crit([p.float() for p in preds], TARGETS.to(device))[0])


def amp_run(device: torch.device, amp: torch.dtype, steps: int = 12) -> dict:
    """yolov4_n (nc=4) on one fixed batch: the CPU fp32 loss, the ``device`` fp32 and autocast
    losses on the same weights, then ``steps`` optimiser steps of ``train_one_epoch`` with ``amp``."""
    torch.manual_seed(0)
    model = Model(ROOT / "configs" / "yolov4_n.yaml", nc=4).train()
    hyp = Hyp()
    imgs = fixed_batch()
    cpu_loss = batch_loss(model, build_criterion(model, hyp, image_size=IMG), imgs, torch.device("cpu"))
    model = copy.deepcopy(model).to(device)
    crit = build_criterion(model, hyp, image_size=IMG)
    out = {"cpu_fp32": cpu_loss, "fp32": batch_loss(model, crit, imgs, device),
           "autocast": batch_loss(model, crit, imgs, device, amp)}
    opt = build_optimizer(model, hyp.optimizer, hyp.lr0, hyp.momentum, hyp.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    ema = ModelEMA(model, hyp.ema_decay)
    settings = LoopSettings(device, epochs=1, accumulate=1, warmup_iters=0, amp_dtype=amp, show_progress=False)
    state = LoopState()
    loader = [(imgs, TARGETS, ["x.jpg"] * 4, [None] * 4, [0, 1, 2, 3])] * steps
    out["epoch_losses"] = train_one_epoch(TrainParts(model, crit, opt, scaler, ema), loader, hyp, 0, settings, state)
    out.update(after=batch_loss(model, crit, imgs, device), ema_updates=ema.updates,
               skipped=state.skipped, finite_model=is_finite_model(model), scale=scaler.get_scale())
    return out


@pytest.mark.parametrize("amp,rel", [(torch.float16, 2e-2), (torch.bfloat16, 5e-2)])
def test_amp_training_steps_on_cuda(amp, rel, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)   # fp32 convolutions really fp32
    r = amp_run(torch.device("cuda"), amp)
    assert r["fp32"] == pytest.approx(r["cpu_fp32"], rel=1e-3)       # same weights, same batch
    assert r["autocast"] == pytest.approx(r["fp32"], rel=rel)
    assert all(np.isfinite(v) for v in r["epoch_losses"].values()) and not r["skipped"]
    # fp16: the GradScaler may skip the first steps while it lowers its scale from 2**16; bf16 never
    assert r["ema_updates"] >= (8 if amp == torch.float16 else 12)
    assert r["finite_model"] and r["after"] < r["fp32"]                 # the steps lowered the loss


# ------------------------------------------------------------------------------------------ NMS
def raw_prediction(batch: int, n: int, nc: int, seed: int) -> torch.Tensor:
    """``[batch, n, 5 + nc]`` rows (cx, cy, w, h, obj, cls...) in a 640 px image, crowded enough
    that suppression matters (8..128 px boxes, uniform scores)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(batch, n, 5 + nc, generator=g)
    p[..., :2] *= 640
    p[..., 2:4] = 8 + p[..., 2:4] * 120
    return p


@pytest.mark.parametrize("nms,multi_label", [("nms", True), ("nms", False), ("diou", True), ("diou", False)])
def test_non_max_suppression_cuda_equals_cpu(nms, multi_label):
    pred = raw_prediction(3, 4000, 6, seed=1)
    cpu = non_max_suppression(pred, 0.5, 0.45, multi_label=multi_label, max_det=10000, nms=nms)
    gpu = non_max_suppression(pred.cuda(), 0.5, 0.45, multi_label=multi_label, max_det=10000, nms=nms)
    assert [len(d) for d in cpu] == [len(d) for d in gpu] and all(1000 < len(d) < 10000 for d in cpu)
    for c, g in zip(cpu, gpu):
        assert g.is_cuda and torch.equal(c, g.cpu())


def test_greedy_iou_nms_cuda_equals_torchvision_cuda():
    p = raw_prediction(1, 3000, 0, seed=2)[0]
    boxes = torch.cat([p[:, :2] - p[:, 2:4] / 2, p[:, :2] + p[:, 2:4] / 2], 1)
    scores = (torch.randperm(3000, generator=torch.Generator().manual_seed(3)).float() + 1) / 3000
    idxs = torch.randint(0, 7, (3000,), generator=torch.Generator().manual_seed(4))
    expected = torchvision.ops.batched_nms(boxes, scores, idxs, 0.5)
    assert torch.equal(torchvision.ops.batched_nms(boxes.cuda(), scores.cuda(), idxs.cuda(), 0.5).cpu(), expected)
    assert torch.equal(greedy_iou_nms(boxes.cuda(), scores.cuda(), idxs.cuda(), 0.5).cpu(), expected)


# ------------------------------------------------------------------------------------- evaluate
class Replay(nn.Module):
    """Stands in for a model in eval mode: returns the k-th stored ``[B, N, 5 + nc]`` prediction on
    the k-th call, on the input's device (``raw`` is unused without a criterion)."""

    def __init__(self, preds: list[torch.Tensor]):
        super().__init__()
        self.preds, self.calls = preds, 0
        self.anchor = nn.Parameter(torch.zeros(1))   # gives the module a device

    def forward(self, x: torch.Tensor):
        p = self.preds[self.calls % len(self.preds)].to(x.device)
        self.calls += 1
        return p, []


def replay_predictions(loader, nc: int, seed: int) -> list[torch.Tensor]:
    """Per batch: every target box moved and resized by ~10 % of its size (score 0.4-1), plus 30
    random false positives per image (score 0-0.6), in the letterboxed input's pixels."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for imgs, targets, *_ in loader:
        b, _, h, w = imgs.shape
        rows = []
        for i in range(b):
            t = targets[targets[:, 0] == i]
            box = t[:, 2:6] * torch.tensor([w, h, w, h])
            box[:, :2] += 0.1 * box[:, 2:] * torch.randn(len(t), 2, generator=g)
            box[:, 2:] *= torch.exp(0.1 * torch.randn(len(t), 2, generator=g))
            fp = torch.rand(30, 4, generator=g) * torch.tensor([w, h, w / 3, h / 3])
            cls = torch.zeros(len(t) + 30, nc)
            labels = torch.cat([t[:, 1].long(), torch.randint(0, nc, (30,), generator=g)])
            cls[torch.arange(len(labels)), labels] = 1.0
            obj = torch.cat([0.4 + 0.6 * torch.rand(len(t), 1, generator=g), 0.6 * torch.rand(30, 1, generator=g)])
            rows.append(torch.cat([torch.cat([box, fp]), obj, cls], 1))
        n = max(len(r) for r in rows)
        out.append(torch.stack([torch.cat([r, torch.zeros(n - len(r), 5 + nc)]) for r in rows]))
    return out


def shapes_eval(tmp: Path):
    """A val loader and records over 12 generated shapes images (letterbox to 128, rect batches)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_shapes", ROOT / "data" / "scripts" / "make_shapes.py")
    make_shapes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_shapes)
    from utils.data.config import data_config_from_dict
    from utils.data.datasets import load_split
    from utils.data.loader import LoaderSettings, build_dataloader
    make_shapes.make_shapes(tmp / "shapes", n_train=1, n_val=12, seed=5)
    cfg = data_config_from_dict({"path": str(tmp / "shapes"), "format": "yolo", "train": "images/train",
                                 "val": "images/val", "names": list(make_shapes.CLASSES)}, tmp / "d.yaml")
    info = load_split(cfg, "val", cache=False)
    return info, build_dataloader(info, LoaderSettings(128, 4, workers=0, rect=True))


def eval_on(device: torch.device, loader, info, preds: list[torch.Tensor]):
    model = Replay(preds).to(device)
    return evaluate(model, loader, info.records, list(info.names), EvalSettings(), device, show_progress=False)


def test_evaluate_on_cuda_equals_cpu(tmp_path):
    info, loader = shapes_eval(tmp_path)
    preds = replay_predictions(loader, len(info.names), seed=6)
    cpu = eval_on(torch.device("cpu"), loader, info, preds)
    gpu = eval_on(torch.device("cuda"), loader, info, preds)
    assert 0.2 < cpu.metrics.map50 < 1.0                      # a non-trivial score to compare
    assert np.array_equal(cpu.metrics.coco.stats, gpu.metrics.coco.stats)     # the 12 COCO numbers
    assert (cpu.metrics.mp, cpu.metrics.mr, cpu.metrics.best_conf) == (gpu.metrics.mp, gpu.metrics.mr,
                                                                       gpu.metrics.best_conf)
    assert sorted(cpu.detections) == sorted(gpu.detections)
    for k, d in cpu.detections.items():
        assert np.array_equal(d.classes, gpu.detections[k].classes)
        np.testing.assert_allclose(d.boxes, gpu.detections[k].boxes, rtol=0, atol=1e-3)
        np.testing.assert_allclose(d.scores, gpu.detections[k].scores, rtol=0, atol=0)
