"""ImageNet weights from torchvision for the ResNet and MobileNet backbones.

A model YAML names its torchvision counterpart (``torchvision_backbone: resnet50``) and sets
``pretrained``: ``true`` fetches torchvision's default weights through its weights API (a download,
for users with internet); a path loads a local torchvision state dict (``torch.load`` with
``weights_only=True``), which is how it works offline and how it is tested.

The mapping is by position: torchvision's top-level feature units (``conv1``, ``bn1``,
``layer1..4`` for ResNet; ``features.0..N`` for MobileNet) are matched in order to the backbone
rows (a ``MV2Stage`` row contributes one unit per inverted residual). Every mapped tensor must
exist in the model with the same shape, or loading stops with a message naming the key.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import nn

from models.mobilenet import ConvBNAct, InvertedResidualV3, MV2Stage
from models.resnet import ResBasicLayer, ResLayer
from utils.config import ConfigError

LOGGER = logging.getLogger(__name__)

SUPPORTED = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
             "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")


def backbone_units(model: nn.Module, arch: str) -> list[str]:
    """Model key prefixes of the backbone units, in torchvision's order."""
    units: list[str] = []
    for i, m in enumerate(model.model):
        if arch.startswith("resnet"):
            if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, ResLayer, ResBasicLayer)):
                units.append(f"model.{i}.layers." if isinstance(m, (ResLayer, ResBasicLayer)) else f"model.{i}.")
        elif isinstance(m, MV2Stage):
            units += [f"model.{i}.blocks.{j}." for j in range(len(m.blocks))]
        elif isinstance(m, (ConvBNAct, InvertedResidualV3)):
            units.append(f"model.{i}.")
    return units


def _torchvision_units(arch: str, state: dict[str, torch.Tensor]) -> list[str]:
    if arch.startswith("resnet"):
        return ["conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4."]
    idx = sorted({int(m.group(1)) for k in state if (m := re.match(r"features\.(\d+)\.", k))})
    return [f"features.{i}." for i in idx]


def map_torchvision_state(model: nn.Module, arch: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision state dict to this model's keys (classifier / fc weights are dropped)."""
    ours, theirs = backbone_units(model, arch), _torchvision_units(arch, state)
    if len(ours) != len(theirs):
        raise ConfigError(f"backbone of {model.yaml.get('source')} has {len(ours)} units but torchvision "
                          f"{arch} has {len(theirs)}: the YAML's backbone rows do not match {arch}")
    own = model.state_dict()
    mapped = {}
    for t_prefix, o_prefix in zip(theirs, ours):
        for k, v in state.items():
            if not k.startswith(t_prefix):
                continue
            key = o_prefix + k[len(t_prefix):]
            if key not in own or own[key].shape != v.shape:
                got = tuple(own[key].shape) if key in own else "missing"
                raise ConfigError(f"torchvision {arch} key {k} {tuple(v.shape)} does not fit model key {key} ({got})")
            mapped[key] = v
    return mapped


def _fetch_state(arch: str, source: bool | str | Path) -> dict[str, torch.Tensor]:
    if source is True:
        import torchvision
        weights = torchvision.models.get_model_weights(arch).DEFAULT
        LOGGER.info("downloading torchvision %s weights %s", arch, weights)
        return weights.get_state_dict(progress=True)
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"pretrained weights file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: expected a torchvision state dict")
    return state


def load_torchvision_backbone(model: nn.Module, arch: str | None, source: bool | str | Path) -> int:
    """Load torchvision ImageNet weights into the backbone rows; returns the number of tensors loaded."""
    if arch not in SUPPORTED:
        raise ConfigError(f"{model.yaml.get('source')}: 'pretrained' needs 'torchvision_backbone' "
                          f"set to one of {SUPPORTED}, got {arch!r}")
    mapped = map_torchvision_state(model, arch, _fetch_state(arch, source))
    model.load_state_dict(mapped, strict=False)
    LOGGER.info("loaded %d tensors of torchvision %s into the backbone", len(mapped), arch)
    return len(mapped)
