"""Coordinate attention (Hou, Zhou and Feng, "Coordinate Attention for Efficient Mobile Network
Design", CVPR 2021).

The feature map is pooled along each spatial axis separately, the two strips are encoded together
by one shared 1x1 conv, then split into a height gate and a width gate; the output is the input
times both gates, so the attention keeps where along each axis a channel responds.
"""
from __future__ import annotations

import torch
from torch import nn

from models.blocks import make_act


class CoordAtt(nn.Module):
    """Coordinate attention; YAML name ``CA``. Args ``(c1, c2, reduction=32)`` with ``c2 == c1``."""

    def __init__(self, c1: int, c2: int, reduction: int = 32):
        super().__init__()
        if c1 != c2:
            raise ValueError(f"CA keeps the channel count: got c1={c1}, c2={c2}")
        mip = max(8, c1 // reduction)
        self.conv1 = nn.Conv2d(c1, mip, 1)
        self.bn1 = nn.BatchNorm2d(mip)
        self.act = make_act("hswish")
        self.conv_h = nn.Conv2d(mip, c2, 1)
        self.conv_w = nn.Conv2d(mip, c2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        strip_h = x.mean(dim=3, keepdim=True)                      # [B, C, H, 1]
        strip_w = x.mean(dim=2, keepdim=True).transpose(2, 3)      # [B, C, W, 1]
        y = self.act(self.bn1(self.conv1(torch.cat((strip_h, strip_w), 2))))
        y_h, y_w = torch.split(y, (h, w), dim=2)
        gate_h = self.conv_h(y_h).sigmoid()                        # [B, C, H, 1]
        gate_w = self.conv_w(y_w.transpose(2, 3)).sigmoid()        # [B, C, 1, W]
        return x * gate_h * gate_w
