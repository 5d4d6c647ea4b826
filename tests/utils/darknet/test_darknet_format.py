"""Darknet cfg/weights format, judged by OpenCV's darknet importer on small synthetic cfgs: every
section type and option the reader supports, darknet's maxpool padding and reorg order, BN epsilon,
the weights header rules and the one-line errors."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from utils.darknet.build import translate
from utils.darknet.cfg import DarknetError, parse_cfg_text, read_cfg
from utils.darknet.io import import_darknet
from utils.darknet.weights import random_state, read_weights, write_weights

cv2 = pytest.importorskip("cv2")
if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromDarknet"):
    pytest.skip("OpenCV without the darknet importer (OpenCV 5 removed it; pin opencv<5)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[3]


def conv(filters, size=1, stride=1, act="leaky", bn=1, **kw):
    opts = {"batch_normalize": bn, "filters": filters, "size": size, "stride": stride, "pad": 1, "activation": act, **kw}
    return "[convolutional]\n" + "".join(f"{k}={v}\n" for k, v in opts.items() if not (k == "batch_normalize" and not v))


ZOO = "\n".join([
    "[net]\nwidth=52\nheight=52\nchannels=3\n",
    conv(16, 3),                                   # 0
    "[maxpool]\nsize=2\nstride=1\n",               # 1  darknet pads right/bottom: 52 -> 52
    conv(32, 3, 2, "mish"),                        # 2  -> 26
    "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n",  # 3  second half of the channels
    conv(16, 3, 1, "swish"),                       # 4
    "[shortcut]\nfrom=-2\nactivation=leaky\n",     # 5
    conv(32, 1, 1, "relu", groups=2),              # 6  grouped conv
    "[route]\nlayers=-1,-5\n",                     # 7  concat 32 + 32
    "[maxpool]\nsize=3\nstride=2\n",               # 8  26 -> 13
    "[maxpool]\nsize=2\nstride=2\n",               # 9  13 -> 7 (darknet's padding rule)
    "[upsample]\nstride=2\n",                      # 10 -> 14
    conv(8, 3, 1, "logistic"),                     # 11
    "[route]\nlayers=2\n",                         # 12
    "[reorg]\nstride=2\n",                         # 13 darknet order -> 128 x 13 x 13
    "[route]\nlayers=-1,8\n",                      # 14
    conv(18, 1, 1, "logistic", bn=0),              # 15
    "[yolo]\nmask=0,1,2\nanchors=10,14, 23,27, 37,58\nclasses=1\nnum=3\nnew_coords=1\nscale_x_y=2.0\n",  # 16
])
# OpenCV layer holding the output of darknet layer N (its activations are numbered N + 1)
ZOO_OPENCV = {1: "pool_1", 3: "slice_3", 5: "leaky_6", 6: "relu_7", 7: "concat_7", 8: "pool_8", 9: "pool_9",
              10: "upsample_10", 11: "logistic_12", 12: "identity_12", 13: "reorg_13", 14: "concat_14"}


def _write(tmp_path: Path, text: str, name: str = "net", seed: int = 0) -> tuple[Path, Path, list]:
    cfg = tmp_path / f"{name}.cfg"
    cfg.write_text(text)
    convs = translate(read_cfg(cfg))[1]
    weights = tmp_path / f"{name}.weights"
    write_weights(weights, random_state(convs, seed), convs)
    return cfg, weights, convs


def _opencv(cfg: Path, weights: Path, x: torch.Tensor, names: list[str]) -> list[np.ndarray]:
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.enableWinograd(False)
    net.setInput(x.numpy())
    return net.forward(names)


def _close(ours: np.ndarray, ref: np.ndarray) -> bool:
    return ours.shape == ref.shape and float(np.abs(ours - ref).max()) <= 1e-3 * max(float(np.abs(ref).max()), 1e-6)


def test_every_section_type_equals_opencv(tmp_path):
    cfg, weights, _ = _write(tmp_path, ZOO)
    model, _ = import_darknet(cfg, weights)
    rows = model.yaml["darknet"]["rows"]
    x = torch.rand(1, 3, 52, 52, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feats = model.forward_features(x)
        pred, raw = model(x)
    names = list(ZOO_OPENCV.values()) + ["conv_15", "yolo_16"]
    ref = dict(zip(names, _opencv(cfg, weights, x, names)))
    for layer, name in ZOO_OPENCV.items():
        assert _close(feats[rows[layer]].numpy(), ref[name]), (layer, name)
    assert ref["pool_9"].shape[-1] == 7 and ref["pool_1"].shape[-1] == 52
    # conv_15 is OpenCV's pre-logistic conv output: our raw logits; new_coords decoding as darknet's
    assert _close(raw[0].permute(0, 1, 4, 2, 3).reshape(1, 18, 13, 13).numpy(), ref["conv_15"])
    ours = pred[0].view(3, 13, 13, 6).permute(1, 2, 0, 3).reshape(-1, 6).numpy().copy()
    ours[:, :4] /= 52
    ours[:, 5:] *= ours[:, 4:5]
    assert _close(ours[:, :5], ref["yolo_16"][:, :5])
    assert np.allclose(np.where(ref["yolo_16"][:, 5:] > 0, ours[:, 5:], 0), ref["yolo_16"][:, 5:], atol=1e-5)


def test_reorg_is_not_space_to_depth(tmp_path):
    """darknet's [reorg] mixes rows: a channel permutation of pixel_unshuffle cannot reproduce it."""
    cfg, weights, _ = _write(tmp_path, "[net]\nwidth=8\nheight=8\nchannels=3\n\n" + conv(4, bn=0, act="linear")
                             + "\n[reorg]\nstride=2\n")
    model, _ = import_darknet(cfg, weights)
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feats = model.forward_features(x)
    ref = _opencv(cfg, weights, x, ["reorg_1"])[0]
    assert _close(feats[-1].numpy(), ref)
    unshuffled = torch.nn.functional.pixel_unshuffle(feats[0], 2)[0].numpy()
    assert not any(np.allclose(ref[0, 0], unshuffled[k]) for k in range(16))


def test_bn_epsilon_is_opencvs(tmp_path):
    """With variances of 1e-6 the epsilon decides the output: 1e-6 (ours, OpenCV) vs 1e-5 differ by 2.3x."""
    cfg, weights, convs = _write(tmp_path, "[net]\nwidth=8\nheight=8\nchannels=3\n\n" + conv(4, act="linear")
                                 + "\n" + conv(4))
    state = random_state(convs, 0)
    state["model.0.1.running_var"] = torch.full((4,), 1e-6)
    write_weights(weights, state, convs)
    model, _ = import_darknet(cfg, weights)
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model.forward_features(x)[0].numpy()
        model.model[0][1].eps = 1e-5
        other = model.forward_features(x)[0].numpy()
    ref = _opencv(cfg, weights, x, ["bn_0"])[0]
    assert _close(ours, ref) and not _close(other, ref)


def test_header_seen_width(tmp_path):
    """seen is uint64 when major*10 + minor >= 2, else uint32 (16-byte header)."""
    cfg, weights, convs = _write(tmp_path, "[net]\nwidth=8\nheight=8\nchannels=3\n\n" + conv(4) + "\n" + conv(4))
    body = weights.read_bytes()[20:]
    old = tmp_path / "old.weights"
    old.write_bytes(np.array([0, 1, 0, 1234], "<i4").tobytes() + body)
    header, _ = read_weights(old, convs)
    assert header == {"major": 0, "minor": 1, "revision": 0, "seen": 1234}
    new = tmp_path / "new.weights"
    new.write_bytes(np.array([0, 2, 5], "<i4").tobytes() + np.array([2 ** 40], "<u8").tobytes() + body)
    assert read_weights(new, convs)[0]["seen"] == 2 ** 40


def test_length_errors_name_layer_and_offset(tmp_path):
    cfg, weights, convs = _write(tmp_path, "[net]\nwidth=8\nheight=8\nchannels=3\n\n" + conv(4) + "\n" + conv(8, 3))
    data = weights.read_bytes()
    short = tmp_path / "short.weights"
    short.write_bytes(data[:-4])
    # hand count: 20 header + conv 0 (4 x (bias, scale, mean, var) + 4x3x1x1) + conv 1 (8 x 4 + 8x4x3x3) floats
    assert len(data) == 20 + 4 * (4 * 4 + 4 * 3) + 4 * (8 * 4 + 8 * 4 * 9) == 1412
    with pytest.raises(DarknetError, match=r"ends at byte 1408 inside layer 1 \[convolutional\] \(.*line 14\), "
                                           r"which needs bytes 132\.\.1412"):
        read_weights(short, convs, str(cfg))
    long = tmp_path / "long.weights"
    long.write_bytes(data + b"\0" * 12)
    with pytest.raises(DarknetError, match=r"12 bytes left over after layer 1 \(byte 1412 of 1424\)"):
        read_weights(long, convs)


def test_cfg_errors_are_one_line(tmp_path):
    with pytest.raises(DarknetError, match=r"x.cfg:6: layer 1 \[frobnicate\]: unknown section"):
        translate(parse_cfg_text("[net]\nwidth=8\n[convolutional]\nfilters=2\n\n[frobnicate]\nsize=3\n", "x.cfg"))
    with pytest.raises(DarknetError, match=r"x.cfg:2: layer 0 \[convolutional\]: activation=gelu is not supported"):
        translate(parse_cfg_text("[net]\n[convolutional]\nfilters=2\nactivation=gelu\n", "x.cfg"))
    with pytest.raises(DarknetError, match=r"layer 1 \[route\]: refers to layer 5"):
        translate(parse_cfg_text("[net]\n[convolutional]\nfilters=2\n[route]\nlayers=5\n", "x.cfg"))
    with pytest.raises(DarknetError, match=r"filters=10 but the next \[yolo\] needs 3 x \(classes 1 \+ 5\)"):
        translate(parse_cfg_text("[net]\n" + conv(8) + conv(10, bn=0, act="linear") + "[yolo]\nmask=0,1,2\n"
                                 "anchors=1,1,2,2,3,3\nclasses=1\nnum=3\n", "x.cfg"))


def test_cli_writes_a_checkpoint_and_reports_bad_files(tmp_path):
    cfg, weights, _ = _write(tmp_path, "[net]\nwidth=8\nheight=8\nchannels=3\n\n" + conv(4) + "\n" + conv(8, 3))
    bad_cfg = tmp_path / "bad.cfg"
    bad_cfg.write_text("[net]\nwidth=8\n\n[frobnicate]\n")
    out = tmp_path / "x.pt"
    run = lambda *a: subprocess.run([sys.executable, "-m", "utils.darknet.io", *a], cwd=ROOT, capture_output=True,
                                    text=True, timeout=120)
    proc = run("--cfg", str(bad_cfg), "--out", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "bad.cfg:4: layer 0 [frobnicate]: unknown section" in proc.stderr and not out.exists()
    truncated = tmp_path / "t.weights"
    truncated.write_bytes(weights.read_bytes()[:300])
    proc = run("--cfg", str(cfg), "--weights", str(truncated), "--out", str(out))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "ends at byte 300 inside layer 1 [convolutional]" in proc.stderr
