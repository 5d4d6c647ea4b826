"""The explicit name -> module registry that YAML rows resolve through (no ``eval``).

Each entry says how a row's arguments become constructor arguments (its ``kind``):

* ``conv``     ``[c2, *rest]``       -> ``M(c1, c2', *rest)``; out ``c2'``
* ``conv_n``   ``[c2, *rest]``       -> ``M(c1, c2', n, *rest)`` (the block repeats inside); out ``c2' * expansion``
* ``mb3``      ``[cexp, c2, *rest]`` -> ``M(c1, cexp', c2', *rest)``; out ``c2'``
* ``conv2d``   ``[c2, *rest]``       -> ``nn.Conv2d(c1, c2', *rest)``
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

from torch import nn

from models import attention, blocks, darknet, darknet_layers, head, mobilenet, resnet


@dataclass(frozen=True)
class Spec:
    cls: type[nn.Module]
    kind: str
    act: bool = False       # takes the model/row activation as ``act=``
    expansion: int = 1      # output channels = c2 * expansion (ResNet bottleneck: 4)


REGISTRY: dict[str, Spec] = {
    # generic blocks (models/blocks.py)
    "Conv": Spec(blocks.Conv, "conv", act=True),
    "Bottleneck": Spec(blocks.Bottleneck, "conv", act=True),
    "BottleneckCSP": Spec(blocks.BottleneckCSP, "conv_n", act=True),
    "BottleneckCSP2": Spec(blocks.BottleneckCSP2, "conv_n", act=True),
    "C3": Spec(blocks.C3, "conv_n", act=True),
    "SPP": Spec(blocks.SPP, "conv", act=True),
    "SPPF": Spec(blocks.SPPF, "conv", act=True),
    "SPPCSP": Spec(blocks.SPPCSP, "conv_n", act=True),
    "SPPPool": Spec(blocks.SPPPool, "spp_pool"),
    "Concat": Spec(blocks.Concat, "concat"),
    # ResNet (models/resnet.py); YAML names as in seed 000
    "resLayer": Spec(resnet.ResLayer, "conv_n", expansion=4),
    "resBasicLayer": Spec(resnet.ResBasicLayer, "conv_n"),
    # MobileNet (models/mobilenet.py); seed 001 names and torchvision-layout blocks
    "CBH": Spec(mobilenet.CBH, "conv"),
    "mb3Block": Spec(mobilenet.mb3Block, "mb3"),
    "ConvBNAct": Spec(mobilenet.ConvBNAct, "conv"),
    "MV2Stage": Spec(mobilenet.MV2Stage, "conv_n"),
    "InvertedResidualV3": Spec(mobilenet.InvertedResidualV3, "mb3"),
    # Darknet (models/darknet.py)
    "Darknet19Block": Spec(darknet.Darknet19Block, "conv_n", act=True),
    "DarkResidual": Spec(darknet.DarkResidual, "conv_n", act=True),
    "CSPStage": Spec(darknet.CSPStage, "conv_n", act=True),
    "Reorg": Spec(darknet.Reorg, "reorg"),
    # darknet .cfg sections with darknet's exact semantics (models/darknet_layers.py)
    "DarknetConv": Spec(darknet_layers.DarknetConv, "conv", act=True),
    "DarknetMaxPool": Spec(darknet_layers.DarknetMaxPool, "same"),
    "DarknetReorg": Spec(darknet_layers.DarknetReorg, "reorg"),
    "DarknetUpsample": Spec(darknet_layers.DarknetUpsample, "same"),
    "Route": Spec(darknet_layers.Route, "route"),
    "Shortcut": Spec(darknet_layers.Shortcut, "same"),
    "GlobalAvgPool": Spec(darknet_layers.GlobalAvgPool, "same"),
    "ChannelSoftmax": Spec(darknet_layers.ChannelSoftmax, "same"),
    # attention (models/attention.py)
    "CA": Spec(attention.CoordAtt, "conv"),
    # head
    "Detect": Spec(head.Detect, "detect"),
    "Classify": Spec(head.Classify, "classify"),
    # plain torch layers
    "nn.Conv2d": Spec(nn.Conv2d, "conv2d"),
    "nn.BatchNorm2d": Spec(nn.BatchNorm2d, "bn"),
    "nn.ReLU": Spec(nn.ReLU, "same"),
    "nn.MaxPool2d": Spec(nn.MaxPool2d, "same"),
    "nn.Upsample": Spec(nn.Upsample, "same"),
    "nn.Identity": Spec(nn.Identity, "same"),
}
