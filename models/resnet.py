"""ResNet stages as YAML rows (seed 000): basic-block layers (ResNet18/34) and bottleneck layers (ResNet50+).

Attribute names (``conv1``, ``bn1`` ... ``downsample.0/1``) mirror torchvision's ResNet so that an
ImageNet state dict maps onto a ``ResLayer`` by renaming ``layerK.`` to ``model.<row>.layers.``.
"""
from __future__ import annotations

import torch
from torch import nn


def conv3x3(c1: int, c2: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c1, c2, 3, stride, padding=dilation, groups=groups, bias=False, dilation=dilation)


def conv1x1(c1: int, c2: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c1, c2, 1, stride, bias=False)


def _downsample(c1: int, c2: int, stride: int) -> nn.Sequential:
    return nn.Sequential(conv1x1(c1, c2, stride), nn.BatchNorm2d(c2))


class ResBasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut; output channels = ``planes``."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, groups: int = 1,
                 base_width: int = 64, downsample: bool = False):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("ResBasicBlock supports only groups=1 and base_width=64 (as torchvision)")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(inplanes, planes, stride) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResBottleneck(nn.Module):
    """1x1 -> 3x3 (stride here, as torchvision's "ResNet v1.5") -> 1x1 expanding to ``4 * planes``."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, groups: int = 1,
                 base_width: int = 64, downsample: bool = False):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(inplanes, planes * self.expansion, stride) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class _ResStage(nn.Module):
    block: type[nn.Module] = ResBottleneck

    def __init__(self, c1: int, c2: int, n: int = 1, s: int = 1, g: int = 1, w: int = 64,
                 downsample: bool = False):
        super().__init__()
        e = self.block.expansion
        blocks = [self.block(c1, c2, stride=s, groups=g, base_width=w, downsample=downsample)]
        blocks += [self.block(c2 * e, c2, stride=1, groups=g, base_width=w) for _ in range(n - 1)]
        self.layers = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ResLayer(_ResStage):
    """``n`` bottleneck blocks (ResNet50/101/152 stage); YAML ``resLayer``; out = 4 * c2."""

    block = ResBottleneck


class ResBasicLayer(_ResStage):
    """``n`` basic blocks (ResNet18/34 stage); YAML ``resBasicLayer``; out = c2."""

    block = ResBasicBlock
