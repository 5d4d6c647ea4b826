"""export.py: ONNX round trip of a tiny model, compared with PyTorch through onnxruntime.

Tiny model: YOLOv4-S at width 0.25 / depth 0.33, nc=4, input 128x128 -> levels 16x16, 8x8, 4x4
with 3 anchors each, so the decoded output has N = 3 x (256 + 64 + 16) = 1008 rows of 4 + 1 + 4 = 9.
Scores (0..1) and raw logits must match within 1e-4 absolute; decoded boxes are pixel values
up to ~500 (float32 step 3e-5 there), so they get 1e-4 + 1e-5 x |value|.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from utils.train.checkpoint import load_model

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["motorcycle", "car", "bus", "truck"]
SIZE = 128


@pytest.fixture
def weights(tiny_weights) -> Path:
    return tiny_weights


@pytest.fixture(scope="module")
def ort():
    pytest.importorskip("onnx", reason="optional extra 'onnx' not installed")
    return pytest.importorskip("onnxruntime", reason="optional extra 'onnxruntime' not installed")


def export_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "export.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def torch_model(weights: Path, raw: bool):
    model, _ = load_model(weights)
    model.fuse().eval()
    model.detect.export_raw = raw
    return model


def test_decoded_dynamic_batch(weights, ort, tmp_path):
    onnx_path = tmp_path / "tiny.onnx"
    r = export_cli("--weights", weights, "--img-size", SIZE, "--dynamic", "--output", onnx_path)
    assert r.returncode == 0, r.stderr
    assert "batch 1: max abs diff" in r.stderr and "batch 2: max abs diff" in r.stderr  # the CLI's own check
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert session.get_inputs()[0].shape == ["batch", 3, SIZE, SIZE]
    assert [o.name for o in session.get_outputs()] == ["pred"]
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["names"]) == NAMES and json.loads(meta["stride"]) == [8.0, 16.0, 32.0]
    model = torch_model(weights, raw=False)
    gen = torch.Generator().manual_seed(1)
    for b in (1, 2):
        x = torch.rand(b, 3, SIZE, SIZE, generator=gen)
        got = session.run(None, {"images": x.numpy()})[0]
        with torch.no_grad():
            ref = model(x)[0].numpy()
        assert got.shape == ref.shape == (b, 1008, 9)
        assert np.abs(got[..., 4:] - ref[..., 4:]).max() < 1e-4  # objectness and class scores
        np.testing.assert_allclose(got[..., :4], ref[..., :4], rtol=1e-5, atol=1e-4)  # boxes, pixels
        assert np.abs(got - ref).max() < 1e-3


def test_raw_levels_static_batch(weights, ort, tmp_path):
    onnx_path = tmp_path / "raw.onnx"
    r = export_cli("--weights", weights, "--img-size", SIZE, "--batch-size", 2, "--no-decode",
                   "--output", onnx_path)
    assert r.returncode == 0, r.stderr
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [2, 3, SIZE, SIZE]
    assert [o.name for o in session.get_outputs()] == ["raw_s8", "raw_s16", "raw_s32"]
    model = torch_model(weights, raw=True)
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    got = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        ref = [t.numpy() for t in model(x)]
    assert [g.shape for g in got] == [(2, 3, 16, 16, 9), (2, 3, 8, 8, 9), (2, 3, 4, 4, 9)]
    for g, t in zip(got, ref):
        assert np.abs(g - t).max() < 1e-4


def test_bad_checkpoint_and_options_exit_2(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"model": torch.zeros(2)}, bad)
    r = export_cli("--weights", bad, "--output", tmp_path / "x.onnx")
    assert r.returncode == 2 and "not a checkpoint of this framework" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "x.onnx").exists()


def test_missing_onnx_is_a_clear_error(weights, monkeypatch, capsys):
    import export
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    assert export.main(["--weights", str(weights), "--opset", "17"]) == 2
    assert "needs the optional package 'onnx'" in capsys.readouterr().err
    assert export.main(["--weights", str(weights), "--opset", "12"]) == 2
    assert "--opset 12: 17 or newer" in capsys.readouterr().err
