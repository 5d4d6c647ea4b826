"""The darknet commands end to end on a tiny yolov3-tiny-like cfg: python -m utils.darknet.io,
train.py --cfg x.cfg --weights x.weights, detect.py on the checkpoint, export.py --include darknet
(back to a cfg OpenCV reads to the same outputs), and the error for a model darknet cannot express."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from utils.train.checkpoint import load_model
from utils.darknet.build import translate
from utils.darknet.cfg import read_cfg
from utils.darknet.weights import random_state, write_weights

ROOT = Path(__file__).resolve().parents[1]


def _conv(f, k, act="leaky", bn=1):
    return f"[convolutional]\n{'batch_normalize=1' if bn else ''}\nfilters={f}\nsize={k}\nstride=1\npad=1\nactivation={act}\n"


ANCHORS = "anchors=4,6, 8,10, 12,16, 18,20, 26,30, 40,44"
TINY = "\n".join([
    "[net]\nwidth=64\nheight=64\nchannels=3\n",
    _conv(8, 3), "[maxpool]\nsize=2\nstride=2\n", _conv(16, 3), "[maxpool]\nsize=2\nstride=2\n",
    _conv(32, 3), "[maxpool]\nsize=2\nstride=2\n", _conv(64, 3), "[maxpool]\nsize=2\nstride=1\n",   # 4 .. 7
    _conv(32, 1), _conv(64, 3), _conv(27, 1, "linear", 0),                                          # 8 .. 10
    f"[yolo]\nmask=3,4,5\n{ANCHORS}\nclasses=4\nnum=6\n",                                          # 11
    "[route]\nlayers=-4\n", _conv(16, 1), "[upsample]\nstride=2\n", "[route]\nlayers=-1,4\n",       # 12 .. 15
    _conv(32, 3), _conv(27, 1, "linear", 0), f"[yolo]\nmask=0,1,2\n{ANCHORS}\nclasses=4\nnum=6\n",  # 16 .. 18
])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("darknet_tiny")
    cfg, weights = folder / "tiny.cfg", folder / "tiny.weights"
    cfg.write_text(TINY)
    convs = translate(read_cfg(cfg))[1]
    write_weights(weights, random_state(convs, seed=0), convs)
    return cfg, weights


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300)


def _opencv_heads(cfg: Path, weights: Path, x: torch.Tensor) -> list[np.ndarray]:
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.enableWinograd(False)
    net.setInput(x.numpy())
    feeds = [c for c in translate(read_cfg(cfg))[1] if ".m." in c.prefix]
    return [(int(c.prefix.rsplit(".", 1)[1]), out) for c, out in zip(feeds, net.forward([f"conv_{c.layer}" for c in feeds]))]


def test_convert_detect_train_export(tiny, tmp_path):
    cfg, weights = tiny
    ckpt = tmp_path / "tiny.pt"
    proc = _run("-m", "utils.darknet.io", "--cfg", cfg, "--weights", weights, "--out", ckpt)
    assert proc.returncode == 0, proc.stderr
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["kind"] == "yolo-checkpoint"
    model, _ = load_model(ckpt)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        raw = model(x)[1]
    for level, ref in _opencv_heads(cfg, weights, x):
        assert np.abs(raw[level].permute(0, 1, 4, 2, 3).reshape(ref.shape).numpy() - ref).max() <= 1e-3 * np.abs(ref).max()
    image = tmp_path / "img.jpg"
    cv2.imwrite(str(image), (np.random.RandomState(0).rand(80, 100, 3) * 255).astype(np.uint8))
    proc = _run("detect.py", "--weights", ckpt, "--source", image, "--img-size", 64, "--project", tmp_path / "det",
                "--conf-thres", 0.01, "--save-txt")
    assert proc.returncode == 0, proc.stderr
    proc = _run("export.py", "--weights", ckpt, "--include", "darknet", "--output", tmp_path / "back")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "back.weights").read_bytes()[20:] == weights.read_bytes()[20:]


def test_train_from_cfg_and_darknet_weights(tiny, tmp_path):
    from make_shapes import make_shapes

    import train
    make_shapes(tmp_path / "shapes", n_train=8, n_val=4, seed=1)
    data = tmp_path / "shapes.yaml"
    data.write_text(yaml.safe_dump({"path": str(tmp_path / "shapes"), "format": "yolo", "train": "images/train",
                                    "val": "images/val", "names": ["circle", "square", "triangle", "star"]}))
    cfg, weights = tiny
    rc = train.main(["--cfg", str(cfg), "--weights", str(weights), "--data", str(data), "--hyp", "configs/hyp.shapes.yaml",
                     "--epochs", "1", "--batch-size", "4", "--img-size", "64", "--workers", "0", "--device", "cpu",
                     "--project", str(tmp_path / "runs"), "--name", "exp", "--quiet", "--noautoanchor"])
    assert rc == 0
    last = tmp_path / "runs" / "exp" / "weights" / "last.pt"
    model, _ = load_model(last)
    assert model.yaml["darknet"]["sections"][1][0] == "convolutional"
    proc = _run("export.py", "--weights", last, "--include", "darknet", "--output", tmp_path / "trained")
    assert proc.returncode == 0, proc.stderr
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        raw = model(x)[1]
    for level, ref in _opencv_heads(tmp_path / "trained.cfg", tmp_path / "trained.weights", x):
        assert np.abs(raw[level].permute(0, 1, 4, 2, 3).reshape(ref.shape).numpy() - ref).max() <= 1e-3 * np.abs(ref).max()


def test_export_names_the_row_darknet_cannot_express(tiny_weights, tmp_path):
    proc = _run("export.py", "--weights", tiny_weights, "--include", "darknet", "--output", tmp_path / "x")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "yolov4_s.yaml: layer 4 (backbone row 4)" in lines[0]
    assert "BottleneckCSP has no darknet equivalent" in lines[0] and not (tmp_path / "x.cfg").exists()


def test_yaml_rows_export_to_what_opencv_computes(tmp_path):
    """Conv, Bottleneck, Darknet19Block, SPPPool, nn.MaxPool2d, nn.Upsample, Concat and the three Detect
    decodings' heads written as darknet sections: OpenCV computes the model's head inputs."""
    from models.yolo import Model
    from utils.darknet.io import write_darknet
    rows = [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Bottleneck", [16]], [-1, 2, "Darknet19Block", [32]],
            [-1, 1, "SPPPool", [[3, 5]]], [-1, 1, "nn.MaxPool2d", [3, 1, 1]], [-1, 1, "Conv", [32, 3, 2, {"act": "mish"}]],
            [-1, 1, "nn.Upsample", [None, 2, "nearest"]], [[-1, 3], 1, "Concat", [1]], [-1, 1, "Conv", [16, 1, 1]]]
    for decode in ("exp", "scaled"):
        cfg = {"nc": 2, "anchors": [[4, 5, 8, 9], [10, 12, 20, 22]], "activation": "leaky", "backbone": rows,
               "head": [[[8, 5], 1, "Detect", ["nc", "anchors", decode]]], "source": f"tiny_{decode}"}
        torch.manual_seed(0)
        model = Model(cfg).eval()
        for m in model.modules():  # non-trivial BN statistics
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
        cfg_path, weights = write_darknet(model, tmp_path / decode, img_size=64)
        x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            raw = model(x)[1]
        heads = _opencv_heads(cfg_path, weights, x)
        assert len(heads) == 2
        text = cfg_path.read_text()  # scaled = darknet's new_coords after a logistic conv
        assert (text.count("activation=logistic") == 2 and text.count("new_coords=1") == 2) == (decode == "scaled")
        for level, ref in heads:
            ours = raw[level].permute(0, 1, 4, 2, 3).reshape(ref.shape).numpy()  # OpenCV: before the activation
            assert np.abs(ours - ref).max() <= 1e-3 * np.abs(ref).max(), (decode, level)
