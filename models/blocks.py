"""Generic convolutional blocks: Conv (conv-BN-activation), Bottleneck, the CSP family (incl. yolov5's C3),
SPP/SPPF, Concat.

Channel arithmetic follows the YOLOv4 YAML models of PyTorch_YOLOv4 (seeds 000/001 give the
per-layer parameter counts these blocks reproduce). Every block that contains activations takes
``act`` (a name from :data:`ACTIVATIONS`), so the activation is chosen per model or per YAML row.
"""
from __future__ import annotations

import torch
from torch import nn

from models.activations import Hardswish, Mish, SiLU

ACTIVATIONS = {
    "leaky": lambda: nn.LeakyReLU(0.1, inplace=True),
    "mish": Mish,
    "silu": SiLU,
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "hswish": Hardswish,
    "linear": lambda: nn.Identity(),
}


def make_act(name: str) -> nn.Module:
    """Activation module by name (leaky, mish, silu, relu, relu6, hswish, linear)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round ``v`` to the nearest multiple of ``divisor``, never more than 10% below ``v`` (the
    width multiple's channel rounding; MobileNet's SE widths)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def autopad(k: int, p: int | None = None) -> int:
    """'Same' padding for an odd kernel."""
    return k // 2 if p is None else p


class Conv(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> activation."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1,
                 act: str = "mish"):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p), groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """1x1 reduce (by ``e``) then 3x3 back to ``c2``, with a residual when shapes allow."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5,
                 act: str = "mish"):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1, act=act)
        self.cv2 = Conv(c_, c2, 3, 1, g=g, act=act)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class _CSPMerge(nn.Module):
    """What the two CSP bottleneck blocks share: ``m``, the inner path of ``n`` Bottlenecks
    ``c_ -> c_``, and BatchNorm + activation over the ``2 c_`` concat of the two paths."""

    def _inner_and_merge(self, c_: int, n: int, shortcut: bool, g: int, act: str) -> None:
        self.bn = nn.BatchNorm2d(2 * c_)
        self.act = make_act(act)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0, act=act) for _ in range(n)))

    def _merge(self, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(torch.cat((y1, y2), 1)))


class BottleneckCSP(_CSPMerge):
    """CSP bottleneck (CSPNet): one path through ``n`` Bottlenecks, one plain 1x1 path; BN+act on the concat."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1,
                 e: float = 0.5, act: str = "mish"):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1, act=act)
        self.cv2 = nn.Conv2d(c1, c_, 1, 1, bias=False)
        self.cv3 = nn.Conv2d(c_, c_, 1, 1, bias=False)
        self.cv4 = Conv(2 * c_, c2, 1, 1, act=act)
        self._inner_and_merge(c_, n, shortcut, g, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv4(self._merge(self.cv3(self.m(self.cv1(x))), self.cv2(x)))


class BottleneckCSP2(_CSPMerge):
    """CSP block of the YOLOv4 PAN: both paths start from one 1x1 conv; no shortcuts by default."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1,
                 e: float = 0.5, act: str = "mish"):
        super().__init__()
        c_ = int(c2)
        self.cv1 = Conv(c1, c_, 1, 1, act=act)
        self.cv2 = nn.Conv2d(c_, c_, 1, 1, bias=False)
        self.cv3 = Conv(2 * c_, c2, 1, 1, act=act)
        self._inner_and_merge(c_, n, shortcut, g, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.cv1(x)
        return self.cv3(self._merge(self.m(x1), self.cv2(x1)))


class C3(nn.Module):
    """The yolov5 (v4.0+) CSP block: two 1x1 branches, ``n`` Bottlenecks on one, a 1x1 fuse of the
    concat (no separate BN on the concat, unlike BottleneckCSP)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1,
                 e: float = 0.5, act: str = "silu"):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1, act=act)
        self.cv2 = Conv(c1, c_, 1, 1, act=act)
        self.cv3 = Conv(2 * c_, c2, 1, 1, act=act)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0, act=act) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    """Fast SPP (yolov5 v6.0+): one ``k`` max-pool applied three times in a row equals the
    5/9/13 pyramid for k=5; 1x1 reduce to ``c1 // 2`` before, 1x1 fuse of the four maps after."""

    def __init__(self, c1: int, c2: int, k: int = 5, act: str = "silu"):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1, act=act)
        self.cv2 = Conv(4 * c_, c2, 1, 1, act=act)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


def _max_pools(ks: tuple[int, ...]) -> nn.ModuleList:
    return nn.ModuleList(nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2) for k in ks)


class SPP(nn.Module):
    """Spatial pyramid pooling with a 1x1 reduce before and a 1x1 fuse after (YOLOv3-SPP / yolov5)."""

    def __init__(self, c1: int, c2: int, k: tuple[int, ...] = (5, 9, 13), act: str = "mish"):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1, act=act)
        self.cv2 = Conv(c_ * (len(k) + 1), c2, 1, 1, act=act)
        self.m = _max_pools(tuple(k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [m(x) for m in self.m], 1))


class SPPPool(nn.Module):
    """The classic YOLOv4 SPP of seed 002: max-pools 13, 9, 5 concatenated with the input (no convs)."""

    def __init__(self, k: tuple[int, ...] = (5, 9, 13)):
        super().__init__()
        self.m = _max_pools(tuple(sorted(k, reverse=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(x) for m in self.m] + [x], 1)


class SPPCSP(nn.Module):
    """SPP inside a CSP split (YOLOv4-L neck): conv stack + pyramid on one path, 1x1 on the other."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1,
                 e: float = 0.5, k: tuple[int, ...] = (5, 9, 13), act: str = "mish"):
        super().__init__()
        c_ = int(2 * c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1, act=act)
        self.cv2 = nn.Conv2d(c1, c_, 1, 1, bias=False)
        self.cv3 = Conv(c_, c_, 3, 1, act=act)
        self.cv4 = Conv(c_, c_, 1, 1, act=act)
        self.m = _max_pools(tuple(k))
        self.cv5 = Conv((len(k) + 1) * c_, c_, 1, 1, act=act)
        self.cv6 = Conv(c_, c_, 3, 1, act=act)
        self.bn = nn.BatchNorm2d(2 * c_)
        self.act = make_act(act)
        self.cv7 = Conv(2 * c_, c2, 1, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y1 = self.cv6(self.cv5(torch.cat([x1] + [m(x1) for m in self.m], 1)))
        y2 = self.cv2(x)
        return self.cv7(self.act(self.bn(torch.cat((y1, y2), 1))))


class Concat(nn.Module):
    """Concatenate a list of tensors along ``dimension``."""

    def __init__(self, dimension: int = 1):
        super().__init__()
        self.d = dimension

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, self.d)
