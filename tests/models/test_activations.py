"""The activations whose backward needs their input: out of place while autograd records (no copy of
the activation map, torch's in-place kernel clones it), in place otherwise, with torch's values and
gradients to the bit either way."""
import copy

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from models.activations import Hardswish, Mish, SiLU
from models.blocks import Conv, make_act
from models.darknet_layers import darknet_act


class OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


PAIRS = [(SiLU, lambda: nn.SiLU(inplace=True)), (Mish, lambda: nn.Mish(inplace=True)),
         (Hardswish, lambda: nn.Hardswish(inplace=True))]


@pytest.mark.parametrize("ours, torchs", PAIRS, ids=["silu", "mish", "hardswish"])
def test_training_pass_equals_torchs_in_place_module_without_its_copy(ours, torchs):
    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), ours())
    twin = copy.deepcopy(block)
    twin[2] = torchs()
    x = torch.randn(2, 3, 12, 12).contiguous(memory_format=torch.channels_last)
    for model in (block, twin):
        model.to(memory_format=torch.channels_last)
    logs = []
    for model in (block, twin):
        with OpLog() as log:
            model(x).square().sum().backward()
        logs.append(log.ops)
    # torch's in-place kernel copies its input for the backward; ours makes no copy at all
    assert "aten.clone" in logs[1]
    assert "aten.clone" not in logs[0] and "aten.copy_" not in logs[0]
    for a, b in zip(block.parameters(), twin.parameters()):
        assert torch.equal(a.grad, b.grad)
    with torch.no_grad():
        assert torch.equal(block(x), twin(x))


@pytest.mark.parametrize("act", [SiLU, Mish, Hardswish])
def test_in_place_where_nothing_is_recorded(act):
    x = torch.randn(4, 5) * 3
    expected = getattr(torch.nn.functional, act.__name__.lower())(x.clone())
    y = x.clone()
    with torch.no_grad():
        out = act()(y)
    assert out.data_ptr() == y.data_ptr() and torch.equal(y, expected)   # the input was overwritten
    leaf = x.clone().requires_grad_()
    out = act()(leaf)
    assert out.data_ptr() != leaf.data_ptr() and torch.equal(leaf.detach(), x)   # recorded: untouched


def test_the_libraries_use_them_and_stay_torchs_subclasses():
    assert type(make_act("silu")) is SiLU and type(make_act("mish")) is Mish and type(make_act("hswish")) is Hardswish
    assert type(darknet_act("swish")) is SiLU and type(darknet_act("mish")) is Mish
    assert isinstance(Conv(3, 8, 3, act="silu").act, nn.SiLU)   # the darknet export names it "swish"
