"""Test-time augmentation (utils/eval/tta.py) and ``test.py`` / ``detect.py --augment``.

The geometry is checked with a stub detector that sees a linear ramp image (channel 0 = x, channel
1 = y, sampled at pixel centres): bilinear down-scaling and flipping keep a ramp linear, so the stub
can locate a rectangle fixed in the picture's own coordinates exactly in whatever pass it is shown.
Mapped back, every pass must give the rectangle's input-pixel place (to 1e-4 px).
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from utils.eval.tta import TTA_FLIPS, TTA_SCALES, augmented_forward, scale_to_stride

ROOT = Path(__file__).resolve().parents[3]
H, W = 64, 96                       # input batch size (a multiple of the stride 32)
BOX_XYXY = (10.0, 5.0, 30.0, 40.0)  # the rectangle in input pixels
TRUTH = torch.tensor(BOX_XYXY, dtype=torch.float64)


def ramp(b: int = 1, h: int = H, w: int = W) -> torch.Tensor:
    """``[b, 3, h, w]`` float64 (the stub extrapolates from two pixels; float32 would cost ~2e-4 px):
    channel 0 = (col + 0.5) / w, channel 1 = (row + 0.5) / h, channel 2 = 0."""
    xs = ((torch.arange(w, dtype=torch.float64) + 0.5) / w).expand(h, w)
    ys = ((torch.arange(h, dtype=torch.float64) + 0.5) / h)[:, None].expand(h, w)
    return torch.stack([xs, ys, torch.zeros(h, w, dtype=torch.float64)])[None].repeat(b, 1, 1, 1)


class RampBoxDetector(nn.Module):
    """Three levels (strides 8/16/32, one anchor): every cell 'detects' the rectangle ``BOX_XYXY``
    (given in the ramp's coordinates), class = level index, objectness 0.9."""

    def __init__(self):
        super().__init__()
        self.register_buffer("stride", torch.tensor([8.0, 16.0, 32.0]))
        self.inputs: list[torch.Tensor] = []

    def locate(self, values: torch.Tensor, target: float) -> torch.Tensor:
        """Position (pixel-edge units) where a linear ramp sampled at pixel centres reaches ``target``."""
        slope = values[:, 1] - values[:, 0]
        return (target - (values[:, 0] - 0.5 * slope)) / slope

    def forward(self, x: torch.Tensor):
        self.inputs.append(x)
        x1, y1, x2, y2 = BOX_XYXY
        xa, xb = self.locate(x[:, 0, 0, :2], x1 / W), self.locate(x[:, 0, 0, :2], x2 / W)
        ya, yb = self.locate(x[:, 1, :2, 0], y1 / H), self.locate(x[:, 1, :2, 0], y2 / H)
        box = torch.stack([(xa + xb) / 2, (ya + yb) / 2, (xb - xa).abs(), (yb - ya).abs()], 1)  # [B, 4] cxcywh
        preds, raw = [], []
        for level, s in enumerate(self.stride.tolist()):
            n = (x.shape[2] // int(s)) * (x.shape[3] // int(s))
            rows = torch.cat([box, torch.full_like(box[:, :1], 0.9), nn.functional.one_hot(
                torch.tensor(level), 3).to(x.dtype).expand(len(x), 3)], 1)
            preds.append(rows[:, None].expand(-1, n, -1))
            raw.append(torch.zeros(len(x), 1, x.shape[2] // int(s), x.shape[3] // int(s), 8))
        return torch.cat(preds, 1), raw


def xyxy(pred: torch.Tensor) -> torch.Tensor:
    c, wh = pred[..., :2], pred[..., 2:4]
    return torch.cat([c - wh / 2, c + wh / 2], -1)


# --------------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("scale, flip", [*zip(TTA_SCALES, TTA_FLIPS), (0.67, "ud"), (0.5, "lr")])
def test_each_pass_maps_the_box_back_to_its_place(scale, flip):
    model = RampBoxDetector()
    pred, _ = augmented_forward(model, ramp(2), scales=(scale,), flips=(flip,), trim=False)
    seen = model.inputs[0]
    h, w = seen.shape[-2:]
    assert h % 32 == 0 and w % 32 == 0 and pred.shape == (2, h * w // 64 + h * w // 256 + h * w // 1024, 8)
    torch.testing.assert_close(xyxy(pred), TRUTH.expand_as(pred[..., :4]), atol=1e-4, rtol=0)
    if scale != 1.0:  # the stub saw the rectangle elsewhere: the mapping did the work
        assert (xyxy(model(seen)[0])[0, 0] - TRUTH).abs().max() > 2


def test_scaled_sizes_are_floored_then_padded_to_the_stride():
    """64 x 96 at 0.83: 53 x 79 (floors of 53.12 x 79.68) padded to 64 x 96 with grey 114/255; at
    0.67: 42 x 64 padded to 64 x 64. The per-axis ratios 53/64 and 79/96 (not 0.83) map back."""
    y, ratio = scale_to_stride(ramp(), 0.83, 32)
    assert y.shape[-2:] == (64, 96) and ratio == (53 / 64, 79 / 96)
    assert torch.all(y[:, :, 53:, :] == 114 / 255) and torch.all(y[:, :, :, 79:] == 114 / 255)
    assert torch.all(y[:, 2, :53, :79] == 0)  # the content (channel 2 of the ramp is 0) ends at 53 x 79
    y, ratio = scale_to_stride(ramp(), 0.67, 32)
    assert y.shape[-2:] == (64, 64) and ratio == (42 / 64, 64 / 96)
    y, ratio = scale_to_stride(ramp(h=50, w=70), 1.0, 32)  # off-stride input at scale 1: padded only
    assert y.shape[-2:] == (64, 96) and ratio == (1.0, 1.0) and torch.equal(y[..., :50, :70], ramp(h=50, w=70))


def test_three_passes_all_in_place_and_trimmed_as_yolov5():
    """Rows per pass at 64 x 96: levels 96 + 24 + 6 (scales 1 and 0.83) and 64 + 16 + 4 (0.67,
    padded to 64 x 64). Trimmed: scale 1 loses its 6 stride-32 rows, 0.67 its 64 stride-8 rows."""
    model = RampBoxDetector()
    full, _ = augmented_forward(model, ramp(), trim=False)
    pred, raw = augmented_forward(model, ramp())
    assert full.shape[1] == 126 + 126 + 84 and pred.shape[1] == 120 + 126 + 20
    assert [r.shape[2:4] for r in raw] == [(8, 12), (4, 6), (2, 3)]  # the first (plain) pass's levels
    torch.testing.assert_close(xyxy(pred), TRUTH.expand(1, 266, 4), atol=1e-4, rtol=0)
    per_level = pred[0, :, 5:].sum(0).tolist()
    assert per_level == [96 + 96 + 0, 24 + 24 + 16, 0 + 6 + 4]
    assert pred[0, :120, 7].sum() == 0 and pred[0, 246:, 5].sum() == 0
    assert [tuple(x.shape[-2:]) for x in model.inputs[3:]] == [(64, 96), (64, 96), (64, 64)]
    assert torch.equal(model.inputs[4], scale_to_stride(ramp().flip(-1), 0.83, 32)[0])  # flipped, then scaled


@pytest.fixture(scope="module")
def tiny_model():
    from models.yolo import Model, load_model_cfg
    torch.manual_seed(0)
    return Model({**load_model_cfg(ROOT / "configs" / "yolov4_n.yaml"), "nc": 4}).eval()


@torch.no_grad()
def test_real_model_plain_and_flipped_passes(tiny_model):
    """On yolov4_n: one unflipped scale-1 pass is the plain forward; a flipped pass equals the
    forward of the mirrored image with cx -> 96 - cx; the default's first block is the plain
    forward without its 2 x 3 x 3 stride-32 rows."""
    x = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(1))
    plain, raw = tiny_model(x)
    one, raw1 = augmented_forward(tiny_model, x, scales=(1.0,), flips=(None,))
    assert torch.equal(one, plain) and all(torch.equal(a, b) for a, b in zip(raw, raw1))
    mirrored = tiny_model(x.flip(-1))[0]
    flipped = augmented_forward(tiny_model, x, scales=(1.0,), flips=("lr",))[0]
    torch.testing.assert_close(flipped[..., 0], W - mirrored[..., 0], atol=1e-4, rtol=0)
    assert torch.equal(flipped[..., 1:], mirrored[..., 1:])
    default = augmented_forward(tiny_model, x)[0]
    n = plain.shape[1] - 3 * 2 * 3
    assert torch.equal(default[:, :n], plain[:, :n])


def test_bad_pass_lists_are_rejected():
    with pytest.raises(ValueError, match="one flip per scale"):
        augmented_forward(RampBoxDetector(), ramp(), scales=(1.0, 0.5), flips=(None,))
    with pytest.raises(ValueError, match="flips must be None, 'lr' or 'ud'"):
        augmented_forward(RampBoxDetector(), ramp(), scales=(1.0,), flips=("x",))


# ------------------------------------------------------------------------------------ the CLIs
def run_script(script: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_test_py_augment_end_to_end(tiny_weights, shapes_yaml, tmp_path):
    """Same split, same ground truth; the augmented model's detections differ and the run says so."""
    common = ["--weights", tiny_weights, "--data", shapes_yaml, "--img-size", 64, "--batch-size", 16,
              "--conf-thres", 0.0001, "--workers", 0, "--save-json", "--no-plots", "--project", tmp_path]
    runs = {}
    for name, extra in (("plain", []), ("tta", ["--augment"])):
        p = run_script("test.py", *common, "--name", name, *extra)
        assert p.returncode == 0, p.stderr[-3000:]
        runs[name] = (json.loads((tmp_path / name / "metrics.json").read_text()),
                      json.loads((tmp_path / name / "predictions.json").read_text()), p.stdout + p.stderr)
    (m0, d0, log0), (m1, d1, log1) = runs["plain"], runs["tta"]
    assert m0["settings"]["augment"] is False and m1["settings"]["augment"] is True
    assert m0["images"] == m1["images"] == 16
    assert {k: v["instances"] for k, v in m0["per_class"].items()} == {k: v["instances"] for k, v in
                                                                        m1["per_class"].items()}
    assert d0 and d1 and d0 != d1
    assert "augmented x3" in log1 and "augmented x3" not in log0


def test_detect_py_augment_equals_the_library_passes(tiny_weights, shapes_yaml, tmp_path):
    """detect.py --augment writes the labels that letterbox + augmented_forward + NMS + scale_boxes
    give in-process; without --augment it writes other ones."""
    import cv2

    from utils.infer.load import load_detector
    from utils.infer.annotate import yolo_label_lines
    from utils.data.augment import letterbox
    from utils.ops.nms import non_max_suppression, scale_boxes
    image = sorted((shapes_yaml.parent / "shapes" / "images" / "val").glob("*"))[0]
    out = {}
    for name, extra in (("plain", []), ("tta", ["--augment"])):
        p = run_script("detect.py", "--weights", tiny_weights, "--source", image, "--img-size", 64, "--conf-thres",
                       0.0001, "--max-det", 20, "--save-txt", "--save-conf", "--nosave", "--project", tmp_path,
                       "--name", name, *extra)
        assert p.returncode == 0, p.stderr[-3000:]
        out[name] = (tmp_path / name / "labels" / f"{image.stem}.txt").read_text().splitlines()
    model, _ = load_detector(str(tiny_weights), torch.device("cpu"), half=False)
    bgr = cv2.imread(str(image))
    img, ratio, pad = letterbox(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), 64, auto=True, stride=32)
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].float() / 255
    with torch.inference_mode():
        det = non_max_suppression(augmented_forward(model, x)[0], 0.0001, 0.45, max_det=20)[0]
        det[:, :4] = scale_boxes(det[:, :4], tuple(x.shape[2:]), bgr.shape[:2], (ratio, pad))
    assert len(out["tta"]) == 20 and out["tta"] == yolo_label_lines(det.numpy(), bgr.shape[:2], True)
    assert out["plain"] != out["tta"]


def load_cli(script: str):
    spec = importlib.util.spec_from_file_location(f"cli_{script[:-3]}", ROOT / script)  # "test" is a stdlib name
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script, args", [("test.py", ["--data", "d.yaml", "--augment=yes"]),
                                          ("detect.py", ["--weights", "w.pt", "--source", "x", "--augment=1"])])
def test_augment_flag_takes_no_value(capsys, script, args):
    with pytest.raises(SystemExit) as exc:
        load_cli(script).parse_opt(args)
    err = capsys.readouterr().err.splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "argument --augment: ignored explicit argument" in err[0]


@pytest.mark.parametrize("source, message", [
    ("predictions", "error: --augment re-runs a model (--weights); --predictions scores a saved file as it is"),
    ("weights", "error: --augment: {path} is a classifier; test-time augmentation is for detectors")])
def test_augment_without_a_detector_is_one_line(tmp_path, source, message):
    from utils.train.checkpoint import save_checkpoint
    path = tmp_path / "input"
    if source == "predictions":
        path.write_text("[]")
    else:
        save_checkpoint({"task": "classify"}, path)  # what test.py reads to pick the classifier path
    p = run_script("test.py", f"--{source}", path, "--data", "data/coco_vehicles.yaml", "--augment",
                   "--project", tmp_path / "runs")
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [message.format(path=path)]
    assert not (tmp_path / "runs").exists()
