"""torchvision ImageNet weights: a saved torchvision state dict loads into our backbones, and our
stride-8/16/32 feature maps then equal torchvision's intermediate outputs exactly (no download)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from models.yolo import Model, ModelConfigError, load_model_cfg

CFG = Path(__file__).resolve().parents[2] / "configs"


def _randomise_bn(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def _tv_resnet_features(m, x):
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    c2 = m.layer1(x)
    c3 = m.layer2(c2)
    c4 = m.layer3(c3)
    return [c3, c4, m.layer4(c4)]


def _tv_mobilenet_features(m, x, taps):
    outs = []
    for i, f in enumerate(m.features):
        x = f(x)
        if i in taps:
            outs.append(x)
    return outs


CASES = {
    # config: (torchvision constructor, feature extractor, our rows at stride 8/16/32)
    "yolov4_resnet50": (torchvision.models.resnet50, _tv_resnet_features, (5, 6, 7)),
    "yolov4_resnet18": (torchvision.models.resnet18, _tv_resnet_features, (5, 6, 7)),
    "yolov4_mobilenetv2": (torchvision.models.mobilenet_v2,
                           lambda m, x: _tv_mobilenet_features(m, x, (6, 13, 18)), (3, 5, 8)),
    "yolov4_mobilenetv3_large_tv": (torchvision.models.mobilenet_v3_large,
                                    lambda m, x: _tv_mobilenet_features(m, x, (6, 12, 16)), (6, 12, 16)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_torchvision_weights_give_identical_features(tmp_path, name):
    make_tv, tv_features, rows = CASES[name]
    torch.manual_seed(0)
    tv = make_tv()
    _randomise_bn(tv)
    weights = tmp_path / f"{name}.pth"
    torch.save(tv.state_dict(), weights)

    cfg = load_model_cfg(CFG / f"{name}.yaml")
    cfg["pretrained"] = str(weights)
    ours = Model(cfg).eval()
    tv.eval()
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        expected = tv_features(tv, x)
        feats = ours.forward_features(x)
    for row, want, stride in zip(rows, expected, (8, 16, 32)):
        got = feats[row]
        assert got.shape == want.shape and got.shape[2] == 96 // stride
        assert torch.equal(got, want), f"row {row}: max diff {(got - want).abs().max()}"


def test_pretrained_needs_a_known_backbone(tmp_path):
    cfg = load_model_cfg(CFG / "yolov4_s.yaml")
    cfg["pretrained"] = str(tmp_path / "x.pth")
    with pytest.raises(ModelConfigError.__mro__[1], match="torchvision_backbone"):
        Model(cfg)


def test_missing_weights_file_is_reported(tmp_path):
    cfg = load_model_cfg(CFG / "yolov4_resnet18.yaml")
    cfg["pretrained"] = str(tmp_path / "missing.pth")
    with pytest.raises(ModelConfigError.__mro__[1], match="not found"):
        Model(cfg)


def test_wrong_architecture_weights_are_reported(tmp_path):
    weights = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    cfg = load_model_cfg(CFG / "yolov4_resnet50.yaml")
    cfg["pretrained"] = str(weights)
    with pytest.raises(ModelConfigError.__mro__[1], match="does not fit"):
        Model(cfg)
