"""Darknet building blocks: Darknet-19 stages and the passthrough layer (YOLOv2, seed 004),
Darknet-53 residual stacks (YOLOv3, seed 003) and CSPDarknet53 stages (YOLOv4, seed 002)."""
from __future__ import annotations

import torch
from torch import nn

from models.blocks import Conv


class Darknet19Block(nn.Module):
    """Optional 2x2 max-pool, then ``n`` 3x3 convs to ``c2`` with 1x1 convs to ``c2 // 2`` between them.

    Darknet-19 is ``[32]``, ``M 64``, ``M 128 64 128``, ``M 256 128 256``, ``M 512 256 512 256 512``,
    ``M 1024 512 1024 512 1024``: blocks with n = 1, 1, 2, 2, 3, 3.
    """

    def __init__(self, c1: int, c2: int, n: int = 1, pool: bool = True, act: str = "leaky"):
        super().__init__()
        layers: list[nn.Module] = [nn.MaxPool2d(2, 2)] if pool else []
        layers.append(Conv(c1, c2, 3, 1, act=act))
        for _ in range(n - 1):
            layers += [Conv(c2, c2 // 2, 1, 1, act=act), Conv(c2 // 2, c2, 3, 1, act=act)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Reorg(nn.Module):
    """YOLOv2 passthrough (space-to-depth): ``[B, C, H, W] -> [B, C*s*s, H/s, W/s]``."""

    def __init__(self, stride: int = 2):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.pixel_unshuffle(x, self.stride)


class DarkResidual(nn.Module):
    """``n`` Darknet-53 residual units (1x1 to ``c2 // 2``, 3x3 back to ``c2``, add).

    With ``shortcut=False`` it is the plain 1x1/3x3 pair stack of the YOLOv3 head (seed 003's
    ``ResidualBlock(use_residual=False)``).
    """

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, act: str = "leaky"):
        super().__init__()
        if shortcut and c1 != c2:
            raise ValueError(f"DarkResidual with shortcut needs c1 == c2, got {c1} and {c2}")
        self.units = nn.ModuleList(
            nn.Sequential(Conv(c1 if i == 0 else c2, c2 // 2, 1, 1, act=act), Conv(c2 // 2, c2, 3, 1, act=act))
            for i in range(n))
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for unit in self.units:
            x = x + unit(x) if self.shortcut else unit(x)
        return x


class _CSPResUnit(nn.Module):
    def __init__(self, c: int, hidden: int, act: str):
        super().__init__()
        self.block = nn.Sequential(Conv(c, hidden, 1, 1, act=act), Conv(hidden, c, 3, 1, act=act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class CSPStage(nn.Module):
    """One CSPDarknet53 stage (seed 002's ``Resblock_body``): 3x3/2 downsample, split into two 1x1
    paths, ``n`` residual units on one, concat, 1x1 fuse. The ``first`` stage keeps full width."""

    def __init__(self, c1: int, c2: int, n: int = 1, first: bool = False, act: str = "mish"):
        super().__init__()
        c_ = c2 if first else c2 // 2
        self.downsample = Conv(c1, c2, 3, 2, act=act)
        self.split0 = Conv(c2, c_, 1, 1, act=act)
        self.split1 = Conv(c2, c_, 1, 1, act=act)
        units = [_CSPResUnit(c_, c2 // 2 if first else c_, act) for _ in range(n)]
        self.blocks = nn.Sequential(*units, Conv(c_, c_, 1, 1, act=act))
        self.fuse = Conv(2 * c_, c2, 1, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        return self.fuse(torch.cat((self.blocks(self.split1(x)), self.split0(x)), 1))
