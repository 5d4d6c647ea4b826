"""Activations whose backward needs their input (SiLU, Mish, Hardswish): in place only where no
gradient is recorded.

torch's in-place ``silu_`` / ``mish_`` / ``hardswish_`` keep their input for the backward by cloning it
first, so in a training pass ``inplace=True`` costs a copy of every activation map on top of the
out-of-place kernel (a Conv-BN-SiLU block at [16, 8, 160, 160] channels_last, forward + backward on 2
CPU cores: 22.9 ms in place, 17.9 ms out of place). Out of place in training gives the same values
and gradients bit for bit without the copy; in inference (``no_grad``, or an input that does not
require grad) the in-place kernel saves an allocation per layer (~10 % of a yolov4_n forward at
640 px on a CPU, one A/B of 6 alternating blocks). Each class is a subclass of torch's, so code that asks ``isinstance(m, nn.SiLU)``
(the darknet export's activation names) is unchanged. ReLU and LeakyReLU keep torch's ``inplace=True``:
their backward reads the output, so no copy is made.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _InPlaceWhenUnrecorded:
    """``forward`` = ``fn(x, inplace=...)``: in place unless autograd records ``x``. ``inplace`` stays False
    on the module (it is decided per call)."""
    fn = None   # the functional form, e.g. F.silu

    def __init__(self):
        super().__init__(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return type(self).fn(x, inplace=not (torch.is_grad_enabled() and x.requires_grad))


class SiLU(_InPlaceWhenUnrecorded, nn.SiLU):
    fn = staticmethod(F.silu)


class Mish(_InPlaceWhenUnrecorded, nn.Mish):
    fn = staticmethod(F.mish)


class Hardswish(_InPlaceWhenUnrecorded, nn.Hardswish):
    fn = staticmethod(F.hardswish)
