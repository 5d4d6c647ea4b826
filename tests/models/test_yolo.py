"""Model system: seed totals, per-row tables, output shapes, width variants, YAML errors, fusing."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from models.summary import count_parameters
from models.yolo import Model, ModelConfigError, load_model_cfg

ROOT = Path(__file__).resolve().parents[2]
CFG = ROOT / "configs"

# (config, nc, parameter tensors, parameters). Seeds 000/001 print "Model Summary: L layers, P
# parameters" with L = parameter tensors; yolov4_l, resnet50 and mobilenetv3_large are exact in the
# issue; the seeds print the others with 6 significant digits (checked separately below).
TOTALS = [
    ("yolov4_s", 4, 226, 9_124_609),
    ("yolov4_l", 4, 334, 52_515_505),
    ("yolov4_resnet18", 4, 198, 36_489_617),
    ("yolov4_resnet34", 4, 246, 46_597_777),
    ("yolov4_resnet50", 4, 297, 50_639_761),
    ("yolov4_mobilenetv2", 4, 294, 28_270_161),
    ("yolov4_mobilenetv3_small", 4, 264, 25_798_409),
    ("yolov4_mobilenetv3_large", 4, 301, 27_176_233),
    # classic YOLOv4 at nc=80 is the well-known 64,363,101-parameter network (seed 002's layout)
    ("yolov4_csp_darknet53", 80, 327, 64_363_101),
    # seed 003's YOLOv3 at nc=20 (VOC): Darknet-53 + its head = 61,626,049
    ("yolov3", 20, 222, 61_626_049),
    # seed 004's YOLOv2 at nc=20: Darknet-19 19,817,376 + 2x conv3x3x1024 18,878,464 + passthrough
    # 32,896 + conv 1280->1024 11,798,528 + prediction 1024*125+125 = 50,655,389
    ("yolov2", 20, 68, 50_655_389),
    # YOLOv4-L + CA(256) 6,680 + CA(512) 25,648 + CA(1024) 100,448
    ("yolov4_l_ca", 4, 358, 52_515_505 + 6_680 + 25_648 + 100_448),
    ("yolov4_mobilenetv3_large_tv", 4, 308, 28_695_681),
    # yolov5n's layout at nc=80: "YOLOv5n summary: 214 layers, 1872157 parameters" (yolov5 7.0, which
    # counts modules as layers; 1,872,157 parameters in 177 tensors)
    ("yolov5n_layout", 80, 177, 1_872_157),
]
# yolov5 7.0's per-layer parameter column for yolov5n.yaml at nc=80 (its model summary table)
YOLOV5N_ROWS = [1760, 4672, 4800, 18560, 29184, 73984, 156928, 295424, 296448, 164608, 33024, 0, 0, 90880,
                8320, 0, 0, 22912, 36992, 0, 74496, 147712, 0, 296448, 115005]

# The seeds' printed totals (%g): the exact numbers above must print the same way.
SEED_PRINTED = {"yolov4_s": "9.12461e+06", "yolov4_l": "5.25155e+07", "yolov4_resnet18": "3.64896e+07",
                "yolov4_resnet34": "4.65978e+07", "yolov4_resnet50": "5.06398e+07",
                "yolov4_mobilenetv2": "2.82702e+07", "yolov4_mobilenetv3_small": "2.57984e+07",
                "yolov4_mobilenetv3_large": "2.71762e+07"}


@pytest.fixture(scope="module")
def built():
    cache: dict[tuple[str, int], Model] = {}

    def get(name: str, nc: int) -> Model:
        if (name, nc) not in cache:
            cache[(name, nc)] = Model(CFG / f"{name}.yaml", nc=nc)
        return cache[(name, nc)]
    return get


@pytest.mark.parametrize("name,nc,layers,params", TOTALS, ids=[t[0] for t in TOTALS])
def test_config_totals(built, name, nc, layers, params):
    n_layers, n_params, n_grad = count_parameters(built(name, nc))
    assert (n_layers, n_params, n_grad) == (layers, params, params)
    if name in SEED_PRINTED:
        assert f"{n_params:g}" == SEED_PRINTED[name]


def test_yolov5n_layout_rows_match_yolov5(built):
    model = built("yolov5n_layout", 80)
    assert [sum(p.numel() for p in layer.parameters()) for layer in model.model] == YOLOV5N_ROWS


# Backbone rows of the seeds' tables: (params, printed arguments) per row.
SEED_ROWS = {
    "yolov4_l": [(928, [3, 32, 3, 1]), (18560, [32, 64, 3, 2]), (20672, [64, 64]), (73984, [64, 128, 3, 2]),
                 (119936, [128, 128, 2]), (295424, [128, 256, 3, 2]), (1463552, [256, 256, 8]),
                 (1180672, [256, 512, 3, 2]), (5843456, [512, 512, 8]), (4720640, [512, 1024, 3, 2]),
                 (12858368, [1024, 1024, 4]), (7610368, [1024, 512, 1])],
    "yolov4_s": [(464, [3, 16, 3, 1]), (4672, [16, 32, 3, 2]), (5216, [32, 32]), (18560, [32, 64, 3, 2]),
                 (19904, [64, 64, 1]), (73984, [64, 128, 3, 2]), (161152, [128, 128, 3]),
                 (295424, [128, 256, 3, 2]), (641792, [256, 256, 3]), (1180672, [256, 512, 3, 2]),
                 (1248768, [512, 512, 1]), (1904640, [512, 256, 1])],
    "yolov4_resnet18": [(9408, [3, 64, 7, 2, 3, 1, 1, False]), (128, [64]), (0, [True]), (0, [3, 2, 1]),
                        (147968, [64, 64, 2, 1, 1, 64, False]), (525568, [64, 128, 2, 2, 1, 64, True]),
                        (2099712, [128, 256, 2, 2, 1, 64, True]), (8393728, [256, 512, 2, 2, 1, 64, True]),
                        (7086080, [512, 512, 1])],
    "yolov4_resnet34": [(9408, [3, 64, 7, 2, 3, 1, 1, False]), (128, [64]), (0, [True]), (0, [3, 2, 1]),
                        (221952, [64, 64, 3, 1, 1, 64, False]), (1116416, [64, 128, 4, 2, 1, 64, True]),
                        (6822400, [128, 256, 6, 2, 1, 64, True]), (13114368, [256, 512, 3, 2, 1, 64, True]),
                        (7086080, [512, 512, 1])],
    "yolov4_resnet50": [(9408, [3, 64, 7, 2, 3, 1, 1, False]), (128, [64]), (0, [True]), (0, [3, 2, 1]),
                        (215808, [64, 64, 3, 1, 1, 64, True]), (1219584, [256, 128, 4, 2, 1, 64, True]),
                        (7098368, [512, 256, 6, 2, 1, 64, True]), (14964736, [1024, 512, 3, 2, 1, 64, True]),
                        (8658944, [2048, 512, 1])],
    "yolov4_mobilenetv3_small": [
        (464, [3, 16, 3, 2]), (880, [16, 16, 16, 3, 2, "S", "R"]), (3864, [16, 72, 24, 3, 2, None, "R"]),
        (5416, [24, 88, 24, 3, 1, None, "R"]), (9808, [24, 96, 40, 5, 2, "S", "H"]),
        (27040, [40, 240, 40, 5, 1, "S", "H"]), (27040, [40, 240, 40, 5, 1, "S", "H"]),
        (17304, [40, 120, 48, 5, 1, "S", "H"]), (19248, [48, 144, 48, 5, 1, "S", "H"]),
        (54624, [48, 288, 96, 5, 2, "S", "H"]), (132096, [96, 576, 96, 5, 1, "S", "H"]),
        (132096, [96, 576, 96, 5, 1, "S", "H"]), (56448, [96, 576, 1, 1]), (7151616, [576, 512, 1])],
    "yolov4_mobilenetv3_large": [
        (464, [3, 16, 3, 2]), (752, [16, 16, 16, 3, 1, None, "R"]), (3440, [16, 64, 24, 3, 2, None, "R"]),
        (4440, [24, 72, 24, 3, 1, None, "R"]), (7576, [24, 72, 40, 5, 2, "S", "R"]),
        (13960, [40, 120, 40, 5, 1, "S", "R"]), (13960, [40, 120, 40, 5, 1, "S", "R"]),
        (32080, [40, 240, 80, 3, 2, None, "H"]), (34760, [80, 200, 80, 3, 1, None, "H"]),
        (31992, [80, 184, 80, 3, 1, None, "H"]), (31992, [80, 184, 80, 3, 1, None, "H"]),
        (114080, [80, 480, 112, 3, 1, "S", "H"]), (165760, [112, 672, 112, 3, 1, "S", "H"]),
        (233632, [112, 672, 160, 5, 1, "S", "H"]), (247648, [160, 672, 160, 5, 2, "S", "H"]),
        (348160, [160, 960, 160, 5, 1, "S", "H"]), (155520, [160, 960, 1, 1]), (7544832, [960, 512, 1])],
}


@pytest.mark.parametrize("name", sorted(SEED_ROWS))
def test_backbone_rows_match_seed_tables(built, name):
    rows = built(name, 4).rows[:len(SEED_ROWS[name])]
    assert [(r["params"], r["args"]) for r in rows] == SEED_ROWS[name]


SHAPE_CONFIGS = [t[0] for t in TOTALS]


@pytest.mark.parametrize("name", SHAPE_CONFIGS)
def test_output_shapes_two_sizes(built, name):
    model = built(name, 4 if name not in ("yolov3", "yolov2") else 20).eval()
    det = model.detect
    expected_strides = [32.0] if name == "yolov2" else [8.0, 16.0, 32.0]
    assert det.stride.tolist() == expected_strides
    for h, w in ((64, 64), (96, 128)):
        with torch.no_grad():
            pred, raw = model(torch.zeros(1, 3, h, w))
        for r, s in zip(raw, expected_strides):
            assert r.shape == (1, det.na, h // s, w // s, det.nc + 5)
        assert pred.shape == (1, sum(det.na * (h // s) * (w // s) for s in expected_strides), det.nc + 5)


def test_width_multiple_variant_builds():
    cfg = load_model_cfg(CFG / "yolov4_l.yaml")
    cfg.update(depth_multiple=0.33, width_multiple=0.25)
    model = Model(cfg, nc=4)
    _, n_params, _ = count_parameters(model)
    assert n_params < 52_515_505 / 10
    assert model.rows[0]["args"] == [3, 8, 3, 1]          # 32 * 0.25
    assert model.rows[6]["n"] == 3                         # round(8 * 0.33)
    model.train()
    outs = model(torch.zeros(2, 3, 64, 64))
    assert [o.shape[2] for o in outs] == [8, 4, 2]


def _cfg_with(**changes) -> dict:
    cfg = load_model_cfg(CFG / "yolov4_s.yaml")
    cfg.update(changes)
    return cfg


def test_unknown_module_names_the_row():
    cfg = _cfg_with()
    cfg["backbone"] = copy.deepcopy(cfg["backbone"])
    cfg["backbone"][3] = [-1, 1, "NotAModule", [128, 3, 2]]
    with pytest.raises(ModelConfigError, match=r"yolov4_s.yaml: layer 3 \(backbone row 3\).*unknown module 'NotAModule'"):
        Model(cfg)


def test_bad_from_index_names_the_row():
    cfg = _cfg_with()
    cfg["head"] = copy.deepcopy(cfg["head"])
    cfg["head"][3] = [40, 1, "Conv", [256, 1, 1]]
    with pytest.raises(ModelConfigError, match=r"layer 14 \(head row 3\).*'from' index 40"):
        Model(cfg)


def test_wrong_arguments_name_the_row():
    cfg = _cfg_with()
    cfg["backbone"] = copy.deepcopy(cfg["backbone"])
    cfg["backbone"][0] = [-1, 1, "Conv", [32, 3, 1, None, 1, "bogus_activation"]]
    with pytest.raises(ModelConfigError, match=r"layer 0 \(backbone row 0\).*wrong arguments"):
        Model(cfg)


def test_unknown_top_level_key():
    with pytest.raises(ModelConfigError, match="unknown top-level key"):
        Model(_cfg_with(depth_multiplier=0.5))


def test_bn_eps_key_sets_every_batchnorm():
    model = Model(CFG / "yolov5n_layout.yaml")          # bn_eps: 0.001, as yolov5's initialize_weights
    eps = {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert eps == {0.001}
    assert {m.eps for m in Model(CFG / "yolov4_n.yaml").modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-5}
    for bad in (0, -1e-3, 0.5, "abc", True):
        with pytest.raises(ModelConfigError, match="bn_eps"):
            Model(_cfg_with(bn_eps=bad))


def test_channel_mismatch_is_reported_not_crashed():
    cfg = _cfg_with()
    cfg["head"] = copy.deepcopy(cfg["head"])
    cfg["head"][4] = [[-1, 6], 1, "Concat", [1]]   # P4 route concat with a stride-8 map
    with pytest.raises(ModelConfigError, match=r"\(head row 4\).*do not fit together"):
        Model(cfg)


def test_cli_error_has_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    cfg = load_model_cfg(CFG / "yolov4_s.yaml")
    cfg.pop("source")
    cfg["backbone"][2] = [-1, 1, "Bottlenek", [64]]
    bad.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, str(ROOT / "models" / "yolo.py"), "--cfg", str(bad)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "layer 2 (backbone row 2)" in proc.stderr and "unknown module 'Bottlenek'" in proc.stderr


def test_cli_prints_seed_table():
    proc = subprocess.run([sys.executable, str(ROOT / "models" / "yolo.py"), "--cfg",
                           str(CFG / "yolov4_resnet18.yaml"), "--img-size", "64"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["from", "n", "params", "module", "arguments"]
    assert "resBasicLayer" not in lines[5] and "ResBasicLayer" in lines[5] and "147968" in lines[5]
    assert lines[-1].startswith("Model Summary: 198 layers, 36489617 parameters, 36489617 gradients")
    assert "GFLOPs at 64" in lines[-1]


def _randomise_bn(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g, dtype=m.running_mean.dtype) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g, dtype=m.running_var.dtype) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g, dtype=m.weight.dtype) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g, dtype=m.bias.dtype) * 0.1)


@pytest.mark.parametrize("name", ["yolov4_l", "yolov4_resnet50", "yolov4_mobilenetv2",
                                  "yolov4_mobilenetv3_large", "yolov4_mobilenetv3_large_tv",
                                  "yolov4_csp_darknet53", "yolov3", "yolov2", "yolov4_l_ca"])
def test_fuse_keeps_outputs(name):
    cfg = load_model_cfg(CFG / f"{name}.yaml")
    cfg.update(width_multiple=0.25, depth_multiple=0.33)
    model = Model(cfg).double().eval()
    _randomise_bn(model)
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        before = model(x)[1]
        n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        model.fuse()
        after = model(x)[1]
    left = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert left < n_bn / 2   # only the CSP concat BNs stay
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
