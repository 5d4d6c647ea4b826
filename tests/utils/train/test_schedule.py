"""lr schedules (step, cosine, linear), warm-up of lr and momentum, the three optimiser parameter
groups, and the gradient-accumulation ramp (utils/train/schedule.py)."""
from __future__ import annotations

import copy

import pytest
import torch

from utils.config import Hyp, replace
from utils.train.schedule import accumulation_at, build_optimizer, lr_factor, set_lr, warmup_iterations


def test_step_schedule_is_seed_003():
    # seed 003: lr 1e-4 for epochs 0-29, 5e-5 from 30, 1e-5 from 50
    h = Hyp(lr0=1e-4, lr_schedule="step", lr_steps=((30, 5e-5), (50, 1e-5)))
    lrs = [h.lr0 * lr_factor(h, 100, e) for e in (0, 29, 30, 49, 50, 99)]
    assert lrs == pytest.approx([1e-4, 1e-4, 5e-5, 5e-5, 1e-5, 1e-5])


def test_poly_schedule_seed_004():
    h = Hyp(lr0=0.1, lr_schedule="poly", lr_power=4.0)
    # darknet's poly: lr0 * (1 - epoch / epochs) ** 4; half-way through 160 epochs: 0.1 / 16
    assert [lr_factor(h, 160, e) * h.lr0 for e in (0, 80, 120, 160)] == pytest.approx([0.1, 0.1 / 16, 0.1 / 256, 0.0])



def test_cosine_and_linear_schedules():
    h = Hyp(lr_schedule="cosine", lrf=0.0)
    # eta_t = eta_max (1 + cos(pi t / T)) / 2: 1 at t=0, 1/2 at T/2, (1 + cos(pi/4))/2 at T/4
    assert lr_factor(h, 100, 0) == pytest.approx(1.0)
    assert lr_factor(h, 100, 50) == pytest.approx(0.5)
    assert lr_factor(h, 100, 25) == pytest.approx((1 + 2 ** -0.5) / 2)
    lin = Hyp(lr_schedule="linear", lrf=0.01)
    assert lr_factor(lin, 10, 0) == pytest.approx(1.0) and lr_factor(lin, 10, 10) == pytest.approx(0.01)


def test_warmup_and_parameter_groups():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 1))
    opt = build_optimizer(model, "SGD", 0.01, 0.937, 5e-4)
    sizes = [sum(p.numel() for p in g["params"]) for g in opt.param_groups]
    assert sizes == [4, 3 * 4 * 9 + 4 * 2, 4 + 4 + 2]       # BN weights | conv weights | all biases (BN's too)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.0, 5e-4, 0.0]
    h = Hyp(lr0=0.01, warmup_bias_lr=0.1, warmup_momentum=0.8, lr_schedule="linear", lrf=0.01)
    set_lr(opt, h, epochs=10, epoch=0, ni=0, nw=100)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.0, 0.0, 0.1])
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.8)
    set_lr(opt, h, epochs=10, epoch=0, ni=50, nw=100)       # half way: lr0/2 and (0.1 + lr0)/2
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.005, 0.005, 0.055])
    set_lr(opt, h, epochs=10, epoch=5, ni=500, nw=100)      # after warm-up: lr0 * ((1 - 0.5) * 0.99 + 0.01)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.00505] * 3)


def test_warmup_length_and_accumulation_ramp():
    # yolov5: warm-up lasts max(warmup_epochs * batches, 100) batches ...
    assert warmup_iterations(Hyp(warmup_epochs=3.0), 25) == 100
    assert warmup_iterations(Hyp(warmup_epochs=3.0), 50) == 150
    assert warmup_iterations(Hyp(warmup_epochs=1.0, warmup_min_iters=0), 25) == 25
    assert warmup_iterations(Hyp(warmup_epochs=0.0), 25) == 0
    # ... and the batches per optimiser step rise 1 -> nbs/batch (4 here): 1 + 3 ni / 100, rounded
    assert [accumulation_at(ni, 100, 4) for ni in (0, 16, 17, 50, 83, 84, 100, 5000)] == [1, 1, 2, 2, 3, 4, 4, 4]
    assert accumulation_at(0, 0, 4) == 4 and accumulation_at(10, 100, 1) == 1


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_optimizer_steps_equal_the_per_tensor_ones_bitwise(name):
    """build_optimizer's multi-tensor (foreach) steps are torch's single-tensor steps to the last bit,
    with the three groups' decays: a trained run's trajectory does not depend on the implementation."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 4, 1))
    twin = copy.deepcopy(model)
    opt = build_optimizer(model, name, 0.01, 0.9, 5e-4)
    assert all(g["foreach"] for g in opt.param_groups)
    ref = build_optimizer(twin, name, 0.01, 0.9, 5e-4)
    for g in ref.param_groups:
        g["foreach"] = False
    x = torch.randn(4, 3, 9, 9)
    for _ in range(4):
        for m, o in ((model, opt), (twin, ref)):
            o.zero_grad()
            m(x).square().mean().backward()
            o.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_mosaic_closes_for_the_last_epochs():
    from utils.train.schedule import mosaic_on
    on = [[mosaic_on(replace(Hyp(), close_mosaic=n), 5, e) for e in range(5)] for n in (0, 2, 5, 9)]
    assert on == [[True] * 5, [True, True, True, False, False], [False] * 5, [False] * 5]
