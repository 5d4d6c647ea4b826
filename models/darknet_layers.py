"""Layers with darknet's exact semantics, for models imported from (or exported to) darknet ``.cfg`` files.

Each class computes what the darknet section of the same name computes at inference:

* :class:`DarknetConv` ``[convolutional]``: conv (bias only without BN), BN, activation; an
  ``nn.Sequential`` so the keys are ``N.0.*`` (conv) and ``N.1.*`` (BN) and Conv+BN fusing applies;
* :class:`DarknetMaxPool` ``[maxpool]``: darknet pads ``padding`` (default ``size - 1``) cells,
  ``padding // 2`` before and the rest after, with -inf; out = ``(in + padding - size) // stride + 1``
  (so ``size=2 stride=1`` keeps the size, ``size=2 stride=2`` on 13 gives 7);
* :class:`DarknetReorg` ``[reorg]``: darknet's own order, which is not a space-to-depth: the input
  memory is read as ``[C/s^2, H, s, W, s]``, permuted to ``[s, s, C/s^2, H, W]`` and the result read
  as ``[C*s^2, H/s, W/s]`` (equal to OpenCV's darknet importer, checked in the tests);
* :class:`Route` ``[route]`` with ``groups``/``group_id``, :class:`Shortcut` ``[shortcut]`` (sum of
  the inputs, then the activation), :class:`DarknetUpsample`, :class:`GlobalAvgPool`
  ``[avgpool]`` and :class:`ChannelSoftmax` ``[softmax]``.

BatchNorm epsilon is :data:`BN_EPS` = 1e-6 inside the square root, as OpenCV's darknet importer
(measured in the tests); darknet itself divides by ``sqrt(var) + 1e-6`` on the CPU and by
``sqrt(var + 1e-5)`` with cuDNN -- all three agree to < 1e-5 relative for variances above 0.01.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.activations import Mish, SiLU

BN_EPS = 1e-6

ACTIVATIONS = {
    "linear": nn.Identity,
    "leaky": lambda: nn.LeakyReLU(0.1, inplace=True),
    "mish": Mish,
    "swish": SiLU,
    "logistic": nn.Sigmoid,
    "relu": lambda: nn.ReLU(inplace=True),
    "tanh": nn.Tanh,
}


def darknet_act(name: str) -> nn.Module:
    """Activation module for a darknet ``activation=`` value."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown darknet activation {name!r}; supported: {sorted(ACTIVATIONS)}") from None


class DarknetConv(nn.Sequential):
    """``[convolutional]``: Conv2d (with bias only when there is no BN) -> BatchNorm2d -> activation."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int = 0, g: int = 1, bn: bool = True,
                 act: str = "leaky"):
        layers: list[nn.Module] = [nn.Conv2d(c1, c2, k, s, p, groups=g, bias=not bn)]
        if bn:
            layers.append(nn.BatchNorm2d(c2, eps=BN_EPS))
        layers.append(darknet_act(act))
        super().__init__(*layers)


class DarknetMaxPool(nn.Module):
    """``[maxpool]`` with darknet's padding rule (see the module docstring)."""

    def __init__(self, size: int = 2, stride: int = 2, padding: int | None = None):
        super().__init__()
        self.size, self.stride = int(size), int(stride)
        self.padding = self.size - 1 if padding is None else int(padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding
        if p % 2 == 0 and p // 2 <= self.size // 2:  # symmetric: torch pads with -inf itself
            return F.max_pool2d(x, self.size, self.stride, p // 2)
        x = F.pad(x, (p // 2, p - p // 2, p // 2, p - p // 2), value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)


class DarknetReorg(nn.Module):
    """``[reorg]`` in darknet's order: ``[B, C, H, W] -> [B, C*s*s, H/s, W/s]`` (C divisible by s*s)."""

    def __init__(self, stride: int = 2):
        super().__init__()
        self.stride = int(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.stride
        y = x.reshape(b, c // (s * s), h, s, w, s).permute(0, 3, 5, 1, 2, 4)
        return y.reshape(b, c * s * s, h // s, w // s)


class Route(nn.Module):
    """``[route]``: concatenation of the inputs' channel group ``group_id`` of ``groups``."""

    def __init__(self, groups: int = 1, group_id: int = 0):
        super().__init__()
        self.groups, self.group_id = int(groups), int(group_id)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        if self.groups > 1:
            xs = [x.chunk(self.groups, 1)[self.group_id] for x in xs]
        return xs[0] if len(xs) == 1 else torch.cat(xs, 1)


class Shortcut(nn.Module):
    """``[shortcut]``: the sum of the inputs (all of one shape), then ``activation``."""

    def __init__(self, act: str = "linear"):
        super().__init__()
        self.act = darknet_act(act)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        y = xs[0]
        for x in xs[1:]:
            y = y + x
        return self.act(y)


class DarknetUpsample(nn.Module):
    """``[upsample]``: nearest-neighbour upsampling by ``stride``, times ``scale``."""

    def __init__(self, stride: int = 2, scale: float = 1.0):
        super().__init__()
        self.stride, self.scale = int(stride), float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.interpolate(x, scale_factor=self.stride, mode="nearest")
        return y * self.scale if self.scale != 1.0 else y


class GlobalAvgPool(nn.Module):
    """``[avgpool]``: mean over H and W, ``[B, C, H, W] -> [B, C, 1, 1]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


class ChannelSoftmax(nn.Module):
    """``[softmax]`` (groups=1): softmax over the channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.softmax(1)
