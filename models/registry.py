"""The explicit name -> module registry that YAML rows resolve through (no ``eval``).

Each entry names its :class:`Kind`, defined below: how a row's arguments become constructor
arguments and what the row's output channels are (``parse_model`` in ``models/yolo.py`` only reads
the row, asks the kind and builds):

* ``conv``     ``[c2, *rest]``       -> ``M(c1, c2', *rest)``; out ``c2'`` (also ``nn.Conv2d``)
* ``conv_n``   ``[c2, *rest]``       -> ``M(c1, c2', n, *rest)`` (the block repeats inside); out ``c2' * expansion``
* ``mb3``      ``[cexp, c2, *rest]`` -> ``M(c1, cexp', c2', *rest)``; out ``c2'``
* ``bn``       ``[]`` or ``[c]``     -> ``nn.BatchNorm2d(c1)``
* ``same``     ``[*args]``           -> ``M(*args)``; out = in (pooling, upsampling, activations)
* ``reorg``    ``[s]``               -> ``Reorg(s)``; out ``c1 * s * s``
* ``spp_pool`` ``[k]``               -> ``SPPPool(k)``; out ``c1 * (len(k) + 1)``
* ``concat``   ``[d]``               -> ``Concat(d)``; out = sum of inputs
* ``route``    ``[groups, group_id]`` -> ``Route(groups, group_id)``; out = sum of inputs // groups
* ``detect``   ``[nc, anchors, decode?]`` -> ``Detect(nc, anchors, [c of each input], decode)``
* ``classify`` ``[nc]``              -> ``Classify(c1, nc)`` (1x1 conv + global average pool); out ``nc``

``c2'`` is ``c2`` times the width multiple, rounded to a multiple of 8. ``act`` is passed to the
modules marked ``act=True`` (the model's ``activation`` unless the row overrides it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NoReturn

from torch import nn

from models import attention, blocks, darknet, darknet_layers, head, mobilenet, resnet


def is_int(v: Any) -> bool:
    """An integer that is not a bool (YAML ``true`` is not a channel count)."""
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class Row:
    """One YAML row as its kind sees it: ``args`` with ``nc`` / ``anchors`` / ``None`` resolved and a
    trailing kwargs dict removed; ``c_in`` the channels of each ``from``; ``n`` after the depth
    multiple; ``fail(msg)`` raises the error that names the row."""

    name: str
    args: list
    c_in: list[int]
    n: int
    width_multiple: float
    fail: Callable[[str], NoReturn]

    @property
    def c1(self) -> int:
        return self.c_in[0]

    def width(self, c: int) -> int:
        """``c'``: ``c`` times the width multiple, rounded to a multiple of 8 (unchanged at 1)."""
        return blocks.make_divisible(c * self.width_multiple, 8) if self.width_multiple != 1 else c


@dataclass(frozen=True)
class Kind:
    """How a row turns into constructor arguments: ``build(spec, row) -> (args, output channels)``.
    ``repeats``: a row with ``n > 1`` is ``n`` copies in an ``nn.Sequential`` (the other kinds take
    ``n`` as their own argument, ``conv_n``, or have no use for it)."""

    build: Callable[["Spec", Row], tuple[list, int]]
    repeats: bool = False


def _out_channels(r: Row) -> tuple[int, list]:
    """``(c2', rest)`` of args ``[c2, *rest]``."""
    if not r.args or not is_int(r.args[0]) or r.args[0] < 1:
        r.fail(f"{r.name} needs the output channels (a positive integer) as its first argument, "
               f"got {r.args[0] if r.args else None!r}")
    return r.width(r.args[0]), r.args[1:]


def _conv(spec: "Spec", r: Row) -> tuple[list, int]:
    c2, rest = _out_channels(r)
    return [r.c1, c2, *rest], c2


def _conv_n(spec: "Spec", r: Row) -> tuple[list, int]:
    c2, rest = _out_channels(r)
    return [r.c1, c2, r.n, *rest], c2 * spec.expansion


def _mb3(spec: "Spec", r: Row) -> tuple[list, int]:
    if len(r.args) < 2 or not all(is_int(a) and a >= 1 for a in r.args[:2]):
        r.fail(f"{r.name} needs [expanded channels, output channels, ...] as positive integers")
    return [r.c1, r.width(r.args[0]), r.width(r.args[1]), *r.args[2:]], r.width(r.args[1])


def _reorg(spec: "Spec", r: Row) -> tuple[list, int]:
    s = r.args[0] if r.args else 2
    return [s], r.c1 * s * s


def _spp_pool(spec: "Spec", r: Row) -> tuple[list, int]:
    k = r.args[0] if r.args else (5, 9, 13)
    return [tuple(k)], r.c1 * (len(k) + 1)


def _route(spec: "Spec", r: Row) -> tuple[list, int]:
    groups = r.args[0] if r.args else 1
    return r.args, sum(c // groups for c in r.c_in)


def _classify(spec: "Spec", r: Row) -> tuple[list, int]:
    if len(r.args) != 1 or not is_int(r.args[0]) or r.args[0] < 1:
        r.fail(f"Classify needs [nc] (a positive number of classes), got {r.args!r}")
    return [r.c1, r.args[0]], r.args[0]


def _detect(spec: "Spec", r: Row) -> tuple[list, int]:
    if len(r.args) < 2:
        r.fail("Detect needs [nc, anchors] (and optionally a decode kind)")
    nc, anchors = r.args[:2]
    if not is_int(nc) or nc < 1:
        r.fail(f"Detect's number of classes must be a positive integer, got {nc!r}")
    ok = isinstance(anchors, list) and anchors and all(
        isinstance(level, list) and level and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1e5 for v in level)
        for level in anchors)
    if not ok:
        r.fail(f"Detect anchors must be a list of levels, each a list of positive w, h sizes, got {anchors!r}")
    return [nc, anchors, r.c_in, *r.args[2:]], 0


CONV = Kind(_conv, repeats=True)         # also nn.Conv2d: the same [c2, *rest]
CONV_N = Kind(_conv_n)
MB3 = Kind(_mb3, repeats=True)
BN = Kind(lambda spec, r: ([r.c1], r.c1), repeats=True)
SAME = Kind(lambda spec, r: (r.args, r.c1), repeats=True)
REORG = Kind(_reorg)
SPP_POOL = Kind(_spp_pool)
CONCAT = Kind(lambda spec, r: (r.args, sum(r.c_in)))
ROUTE = Kind(_route)
CLASSIFY = Kind(_classify)
DETECT = Kind(_detect)


@dataclass(frozen=True)
class Spec:
    cls: type[nn.Module]
    kind: Kind
    act: bool = False       # takes the model/row activation as ``act=``
    expansion: int = 1      # output channels = c2 * expansion (ResNet bottleneck: 4)


REGISTRY: dict[str, Spec] = {
    # generic blocks (models/blocks.py)
    "Conv": Spec(blocks.Conv, CONV, act=True),
    "Bottleneck": Spec(blocks.Bottleneck, CONV, act=True),
    "BottleneckCSP": Spec(blocks.BottleneckCSP, CONV_N, act=True),
    "BottleneckCSP2": Spec(blocks.BottleneckCSP2, CONV_N, act=True),
    "C3": Spec(blocks.C3, CONV_N, act=True),
    "SPP": Spec(blocks.SPP, CONV, act=True),
    "SPPF": Spec(blocks.SPPF, CONV, act=True),
    "SPPCSP": Spec(blocks.SPPCSP, CONV_N, act=True),
    "SPPPool": Spec(blocks.SPPPool, SPP_POOL),
    "Concat": Spec(blocks.Concat, CONCAT),
    # ResNet (models/resnet.py); YAML names as in seed 000
    "resLayer": Spec(resnet.ResLayer, CONV_N, expansion=4),
    "resBasicLayer": Spec(resnet.ResBasicLayer, CONV_N),
    # MobileNet (models/mobilenet.py); seed 001 names and torchvision-layout blocks
    "CBH": Spec(mobilenet.CBH, CONV),
    "mb3Block": Spec(mobilenet.mb3Block, MB3),
    "ConvBNAct": Spec(mobilenet.ConvBNAct, CONV),
    "MV2Stage": Spec(mobilenet.MV2Stage, CONV_N),
    "InvertedResidualV3": Spec(mobilenet.InvertedResidualV3, MB3),
    # Darknet (models/darknet.py)
    "Darknet19Block": Spec(darknet.Darknet19Block, CONV_N, act=True),
    "DarkResidual": Spec(darknet.DarkResidual, CONV_N, act=True),
    "CSPStage": Spec(darknet.CSPStage, CONV_N, act=True),
    "Reorg": Spec(darknet.Reorg, REORG),
    # darknet .cfg sections with darknet's exact semantics (models/darknet_layers.py)
    "DarknetConv": Spec(darknet_layers.DarknetConv, CONV, act=True),
    "DarknetMaxPool": Spec(darknet_layers.DarknetMaxPool, SAME),
    "DarknetReorg": Spec(darknet_layers.DarknetReorg, REORG),
    "DarknetUpsample": Spec(darknet_layers.DarknetUpsample, SAME),
    "Route": Spec(darknet_layers.Route, ROUTE),
    "Shortcut": Spec(darknet_layers.Shortcut, SAME),
    "GlobalAvgPool": Spec(darknet_layers.GlobalAvgPool, SAME),
    "ChannelSoftmax": Spec(darknet_layers.ChannelSoftmax, SAME),
    # attention (models/attention.py)
    "CA": Spec(attention.CoordAtt, CONV),
    # head
    "Detect": Spec(head.Detect, DETECT),
    "Classify": Spec(head.Classify, CLASSIFY),
    # plain torch layers
    "nn.Conv2d": Spec(nn.Conv2d, CONV),
    "nn.BatchNorm2d": Spec(nn.BatchNorm2d, BN),
    "nn.ReLU": Spec(nn.ReLU, SAME),
    "nn.MaxPool2d": Spec(nn.MaxPool2d, SAME),
    "nn.Upsample": Spec(nn.Upsample, SAME),
    "nn.Identity": Spec(nn.Identity, SAME),
}
