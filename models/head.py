"""The anchor-based YOLO detection head shared by every model (YOLOv2 ... YOLOv4).

Output layout per level: ``[B, na, H, W, no]`` with ``no = nc + 5`` ordered
``(tx, ty, tw, th, objectness, class_0 ... class_{nc-1})``.

Two box decodings are supported (``decode`` argument):

* ``"scaled"`` (Scaled-YOLOv4 / yolov5, used by the PyTorch_YOLOv4 YAML models):
  ``xy = (2 sigmoid(t) - 0.5 + cell) * stride``, ``wh = (2 sigmoid(t))^2 * anchor``.
  Centres may fall half a cell outside their cell, so the loss assigns neighbouring cells too,
  and a box can be at most 4x its anchor (hence ``anchor_t = 4``).
* ``"exp"`` (YOLOv2/YOLOv3, seeds 003 and 004): ``xy = (sigmoid(t) + cell) * stride``,
  ``wh = exp(t) * anchor``. Only the centre cell can predict a box.
* ``"region"`` (the YOLOv2 ``[region]`` layer of darknet): as ``"exp"``, but the class scores are a
  softmax over the classes (the detection score ``obj * cls`` is then darknet's probability).

``scale_xy`` (one per level, darknet's ``scale_x_y``; default 2 for ``"scaled"``, 1 otherwise)
widens the centre range: ``xy = (sigmoid(t) * s - (s - 1) / 2 + cell) * stride`` (yolov4.cfg: 1.2,
1.1, 1.05). With ``s = 2`` that is the scaled decode's ``2 sigmoid(t) - 0.5``.
"""
from __future__ import annotations

import torch
from torch import nn

DECODINGS = ("scaled", "exp", "region")


class Detect(nn.Module):
    """Per-level 1x1 convolutions that predict ``na * (nc + 5)`` values per cell.

    Args:
        nc: number of classes.
        anchors: per level, a flat list ``[w0, h0, w1, h1, ...]`` of anchor sizes in input pixels.
        ch: input channels of each level.
        decode: ``"scaled"``, ``"exp"`` or ``"region"`` (see module docstring).
        scale_xy: per-level centre scale (darknet ``scale_x_y``); None = the decode's default.

    ``stride`` (tensor ``[nl]``) is filled in by :class:`models.yolo.Model` after one dummy forward.
    ``anchors`` is a buffer ``[nl, na, 2]`` in input pixels.
    Training mode returns the list of raw level outputs; eval mode returns
    ``(pred [B, N, no], raw)`` where ``pred`` holds decoded ``cx, cy, w, h`` in input pixels and
    sigmoid objectness and class scores.
    """

    def __init__(self, nc: int, anchors: list[list[float]], ch: list[int], decode: str = "scaled",
                 scale_xy: list[float] | None = None):
        super().__init__()
        if decode not in DECODINGS:
            raise ValueError(f"Detect decode must be one of {DECODINGS}, got {decode!r}")
        if len(anchors) != len(ch):
            raise ValueError(f"Detect got {len(anchors)} anchor levels for {len(ch)} input levels")
        if any(len(a) % 2 or len(a) != len(anchors[0]) for a in anchors):
            raise ValueError("Detect anchors: each level needs the same even number of values (w, h pairs)")
        self.nc = int(nc)
        self.no = self.nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.decode = decode
        if scale_xy is not None and len(scale_xy) != self.nl:
            raise ValueError(f"Detect scale_xy needs one value per level ({self.nl}), got {scale_xy}")
        default = 2.0 if decode == "scaled" else 1.0
        self.scale_xy = [float(v) for v in scale_xy] if scale_xy is not None else [default] * self.nl
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(self.nl, self.na, 2))
        self.register_buffer("stride", torch.zeros(self.nl))
        self.m = nn.ModuleList(nn.Conv2d(c, self.na * self.no, 1) for c in ch)
        self.export_raw = False  # export.py: return the raw levels only (no decoding)

    def forward(self, xs: list[torch.Tensor]):
        raw = []
        for i, x in enumerate(xs):
            y = self.m[i](x)
            b, _, h, w = y.shape
            raw.append(y.view(b, self.na, self.no, h, w).permute(0, 1, 3, 4, 2).contiguous())
        if self.training or self.export_raw:
            return raw
        return torch.cat([self.decode_level(i, r) for i, r in enumerate(raw)], 1), raw

    def decode_level(self, i: int, r: torch.Tensor) -> torch.Tensor:
        """Raw level output ``[B, na, H, W, no]`` -> ``[B, na*H*W, no]`` decoded (see module doc)."""
        b, _, h, w, _ = r.shape
        gy, gx = torch.meshgrid(torch.arange(h, device=r.device, dtype=r.dtype),
                                torch.arange(w, device=r.device, dtype=r.dtype), indexing="ij")
        grid = torch.stack((gx, gy), -1).view(1, 1, h, w, 2)
        anchor = self.anchors[i].to(r.dtype).view(1, self.na, 1, 1, 2)
        stride = self.stride[i].to(r.dtype)
        s = r.sigmoid()
        k = self.scale_xy[i]
        xy = ((s[..., :2] * k - (k - 1) / 2 if k != 1 else s[..., :2]) + grid) * stride
        if self.decode == "scaled":
            wh = (s[..., 2:4] * 2) ** 2 * anchor
        else:
            wh = torch.exp(r[..., 2:4].clamp(max=10.0)) * anchor
        cls = r[..., 5:].softmax(-1) if self.decode == "region" else s[..., 5:]
        return torch.cat((xy, wh, s[..., 4:5], cls), -1).view(b, -1, self.no)

    def init_biases(self, image_size: int = 640) -> None:
        """Prior-informed output biases (objectness ~8 objects per 640 image, classes ~0.6/nc)."""
        import math
        for conv, s in zip(self.m, self.stride.tolist()):
            if s <= 0:
                continue
            b = conv.bias.view(self.na, -1)
            with torch.no_grad():
                b[:, 4] += math.log(8 / (image_size / s) ** 2)
                b[:, 5:] += math.log(0.6 / (self.nc - 0.99)) if self.nc > 1 else 0.0


class Classify(nn.Module):
    """Image-classification head (seed 004's Darknet-19 classifier): a 1x1 conv to ``nc`` class
    maps, then global average pooling. Returns logits ``[B, nc]``; the seed's softmax is applied by
    the loss (cross entropy) and by :func:`utils.train.classify.predict` for probabilities."""

    def __init__(self, c1: int, nc: int):
        super().__init__()
        self.nc = nc
        self.pred = nn.Conv2d(c1, nc, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pred(x).mean((2, 3))
