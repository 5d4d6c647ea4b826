"""MobileNet blocks as YAML rows (seed 001).

Two families live here:

* The seed's own MobileNetV3 building blocks, ``CBH`` (conv-BN-hswish) and ``mb3Block`` (expand,
  depthwise, project, SE on the projected output, 1x1 projection shortcut when the width changes).
  They reproduce seed 001's parameter tables exactly but have no torchvision counterpart.
* torchvision-layout blocks, ``ConvBNAct``, ``MV2Stage`` (MobileNetV2 inverted residuals) and
  ``InvertedResidualV3`` (MobileNetV3 with SE after the depthwise conv, hardsigmoid gate, BN eps
  1e-3). Their attribute layout mirrors ``torchvision.models.mobilenet_v2/v3`` so ImageNet
  weights load by renaming ``features.i`` only (see :mod:`models.pretrained`).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from models.blocks import Conv, make_act, make_divisible


# ----------------------------------------------------------------------------------------------
# Seed 001 blocks
# ----------------------------------------------------------------------------------------------
class CBH(Conv):
    """Conv-BN-hardswish (seed 001's MobileNetV3 stem and last conv)."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1):
        super().__init__(c1, c2, k, s, act="hswish")


class HSigmoid(nn.Module):
    """relu6(x + 3) / 6."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) / 6.0


class SeedSE(nn.Module):
    """Squeeze-excitation of seed 001: bias-free 1x1 convs, reduction 4, hardsigmoid gate."""

    def __init__(self, c: int, reduction: int = 4):
        super().__init__()
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(c, c // reduction, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(c // reduction, c, 1, bias=False),
            HSigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.se(x)


def _seed_act(code: str | None) -> nn.Module:
    if code not in ("H", "R"):
        raise ValueError(f"mb3Block activation must be 'H' (hardswish) or 'R' (ReLU), got {code!r}")
    return make_act("hswish" if code == "H" else "relu")


class mb3Block(nn.Module):  # noqa: N801  (the seed's YAML name)
    """Seed 001 MobileNetV3 block: args ``(c1, cexp, c2, k, s, se, act)``, se 'S' or None, act 'H'|'R'."""

    def __init__(self, c1: int, cexp: int, c2: int, k: int = 3, s: int = 1, se: str | None = None,
                 act: str = "H"):
        super().__init__()
        if se not in ("S", None):
            raise ValueError(f"mb3Block se must be 'S' or null, got {se!r}")
        self.stride = s
        self.conv1 = nn.Conv2d(c1, cexp, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cexp)
        self.act1 = _seed_act(act)
        self.conv2 = nn.Conv2d(cexp, cexp, k, s, padding=k // 2, groups=cexp, bias=False)
        self.bn2 = nn.BatchNorm2d(cexp)
        self.act2 = _seed_act(act)
        self.conv3 = nn.Conv2d(cexp, c2, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c2)
        self.sem = SeedSE(c2) if se == "S" else None
        proj = s == 1 and c1 != c2
        self.shortcut = nn.Sequential(nn.Conv2d(c1, c2, 1, bias=False), nn.BatchNorm2d(c2)) if proj else nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.sem is not None:
            out = self.sem(out)
        return out + self.shortcut(x) if self.stride == 1 else out


# ----------------------------------------------------------------------------------------------
# torchvision-layout blocks
# ----------------------------------------------------------------------------------------------
class ConvBNAct(nn.Sequential):
    """Conv2d(bias=False) -> BatchNorm2d(eps) [-> activation], indexed 0/1/2 like torchvision."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act: str = "relu6",
                 eps: float = 1e-5):
        layers = [nn.Conv2d(c1, c2, k, s, (k - 1) // 2, groups=g, bias=False), nn.BatchNorm2d(c2, eps=eps)]
        if act != "linear":
            layers.append(make_act(act))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (ratio ``t``), 3x3 depthwise, linear 1x1 projection."""

    def __init__(self, c1: int, c2: int, s: int, t: float):
        super().__init__()
        hidden = int(round(c1 * t))
        layers: list[nn.Module] = [ConvBNAct(c1, hidden, 1, act="relu6")] if t != 1 else []
        layers += [ConvBNAct(hidden, hidden, 3, s, g=hidden, act="relu6"),
                   nn.Conv2d(hidden, c2, 1, bias=False), nn.BatchNorm2d(c2)]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = s == 1 and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MV2Stage(nn.Module):
    """``n`` MobileNetV2 inverted residuals; only the first has stride ``s``. Args ``(c1, c2, n, s, t)``."""

    def __init__(self, c1: int, c2: int, n: int = 1, s: int = 1, t: float = 6):
        super().__init__()
        self.blocks = nn.Sequential(*(InvertedResidual(c1 if i == 0 else c2, c2, s if i == 0 else 1, t)
                                      for i in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class SqueezeExcite(nn.Module):
    """SE of torchvision's MobileNetV3: 1x1 convs with bias, ReLU, hardsigmoid gate."""

    def __init__(self, c: int, squeeze: int):
        super().__init__()
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = self.fc2(F.relu(self.fc1(s), inplace=True))
        return x * F.hardsigmoid(s, inplace=True)


class InvertedResidualV3(nn.Module):
    """torchvision MobileNetV3 block; args ``(c1, cexp, c2, k, s, se, act)``, se bool, act 'RE'|'HS'."""

    def __init__(self, c1: int, cexp: int, c2: int, k: int = 3, s: int = 1, se: bool = False,
                 act: str = "RE"):
        super().__init__()
        if act not in ("RE", "HS"):
            raise ValueError(f"InvertedResidualV3 act must be 'RE' or 'HS', got {act!r}")
        a = "relu" if act == "RE" else "hswish"
        layers: list[nn.Module] = [ConvBNAct(c1, cexp, 1, act=a, eps=1e-3)] if cexp != c1 else []
        layers.append(ConvBNAct(cexp, cexp, k, s, g=cexp, act=a, eps=1e-3))
        if se:
            layers.append(SqueezeExcite(cexp, make_divisible(cexp // 4, 8)))
        layers.append(ConvBNAct(cexp, c2, 1, act="linear", eps=1e-3))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = s == 1 and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res_connect else y
