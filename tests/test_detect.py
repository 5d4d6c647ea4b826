"""detect.py end to end on COCO128 images with a tiny untrained model, plus its helpers.

The model is YOLOv4-S at width 0.25 / depth 0.33 with nc=4, random weights; with
``--conf-thres 0.0001`` it returns boxes on every image, which exercises labels, drawing and JSON.
"""
from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from utils.infer.annotate import annotate, coco_image_id, coco_results, count_per_class, yolo_label_lines
from utils.train.runs import increment_path
from utils.infer.sources import SourceError, resolve_source

ROOT = Path(__file__).resolve().parents[1]
COCO128 = ROOT / ".." / "shared" / "datasets" / "coco128"
IMAGES = COCO128 / "images" / "train2017"
NAMES = ["motorcycle", "car", "bus", "truck"]
CATEGORY_IDS = [4, 3, 6, 8]  # COCO ids of the four vehicle classes
STEMS = ["000000000009", "000000000025", "000000000034"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "detect.py", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def weights(tiny_weights) -> Path:
    return tiny_weights


@pytest.fixture(scope="module")
def coco128() -> Path:
    if not all((IMAGES / f"{s}.jpg").is_file() for s in STEMS):
        pytest.skip(f"COCO128 images not found under {IMAGES}")
    return COCO128


# ------------------------------------------------------------------------------ helpers, by hand
def test_detector_is_channels_last_and_equals_the_plain_model(weights):
    """load_detector runs the fused model in channels_last: same predictions as the NCHW model."""
    from utils.infer.load import load_detector
    from utils.train.checkpoint import load_model
    det, _ = load_detector(str(weights), torch.device("cpu"), half=False)
    conv = next(m for m in det.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    plain, _ = load_model(weights, device="cpu")
    plain.eval()
    x = torch.rand(2, 3, 96, 128)
    with torch.inference_mode():
        a, b = det(x)[0], plain(x)[0]
    assert a.shape == b.shape == (2, 3 * (12 * 16 + 6 * 8 + 3 * 4), 9)
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-3)


def test_label_and_coco_formats_by_hand():
    # box x 10..50, y 20..60 on a 200 (w) x 100 (h) image
    det = np.array([[10.0, 20.0, 50.0, 60.0, 0.9, 2.0]])
    assert yolo_label_lines(det, (100, 200)) == ["2 0.150000 0.400000 0.200000 0.400000"]
    assert yolo_label_lines(det, (100, 200), save_conf=True)[0].endswith(" 0.900000")
    assert coco_results(det, 9, CATEGORY_IDS) == [{"image_id": 9, "category_id": 6,
                                                   "bbox": [10.0, 20.0, 40.0, 40.0], "score": 0.9}]
    assert coco_results(det, "a")[0]["category_id"] == 2
    assert coco_image_id(Path("000000000009.jpg")) == 9 and coco_image_id(Path("img_3.jpg")) == "img_3"
    det2 = np.array([[0, 0, 1, 1, 0.5, 1], [0, 0, 2, 2, 0.4, 1], [0, 0, 3, 3, 0.3, 3]], dtype=float)
    assert count_per_class(det2, NAMES) == "2 car, 1 truck"
    assert count_per_class(np.zeros((0, 6)), NAMES) == "no detections"


def test_annotate_draws_inside_the_box_only():
    img = np.zeros((40, 60, 3), np.uint8)
    out = annotate(img, np.array([[10, 10, 30, 20, 0.9, 0]]), NAMES, line_thickness=1, hide_labels=True)
    assert out.shape == img.shape and not img.any()  # a copy; the input is untouched
    ys, xs = np.nonzero(out.any(2))
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10, 30, 10, 20)  # 1-px rectangle outline
    assert not out[12:19, 12:29].any()  # hollow


def test_increment_path(tmp_path):
    assert increment_path(tmp_path / "exp") == tmp_path / "exp"
    (tmp_path / "exp").mkdir()
    assert increment_path(tmp_path / "exp") == tmp_path / "exp2"
    (tmp_path / "exp2").mkdir()
    (tmp_path / "exp4").mkdir()
    assert increment_path(tmp_path / "exp") == tmp_path / "exp3"
    assert increment_path(tmp_path / "exp", exist_ok=True) == tmp_path / "exp"


def test_resolve_source_kinds_and_errors(tmp_path):
    for name in ("b.jpg", "a.png", "c.mp4", "notes.md"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in resolve_source(tmp_path)] == ["a.png", "b.jpg", "c.mp4"]
    assert [p.name for p in resolve_source(str(tmp_path / "*.jpg"))] == ["b.jpg"]
    lst = tmp_path / "list.txt"
    lst.write_text("# two images\nb.jpg\n\n" + str(tmp_path / "a.png") + "\n")
    assert resolve_source(lst) == [tmp_path / "b.jpg", tmp_path / "a.png"]
    lst.write_text("b.jpg\nmissing.jpg\n")
    with pytest.raises(SourceError, match=r"list.txt:2: listed file not found: missing.jpg"):
        resolve_source(lst)
    with pytest.raises(SourceError, match="source not found"):
        resolve_source(tmp_path / "nope.jpg")
    with pytest.raises(SourceError, match="matches no images"):
        resolve_source(str(tmp_path / "*.bmp"))
    with pytest.raises(SourceError, match="unknown file type"):
        resolve_source(tmp_path / "notes.md")


# ------------------------------------------------------------------------------ the CLI
def test_detect_end_to_end(weights, coco128, tmp_path):
    lst = tmp_path / "images.txt"
    lst.write_text("".join(f"{(IMAGES / s).resolve()}.jpg\n" for s in STEMS))
    r = run_cli("--weights", weights, "--source", lst, "--img-size", 128, "--conf-thres", 0.0001,
                "--max-det", 20, "--save-txt", "--save-conf", "--save-json", "--project", tmp_path / "runs")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "runs" / "exp"
    log = r.stdout + r.stderr
    assert "Speed:" in log and "3 image(s)/frame(s) processed, 0 skipped" in log
    n_lines = {}
    for s in STEMS:
        assert f"{s}.jpg" in log
        original = cv2.imread(str(IMAGES / f"{s}.jpg"))
        drawn = cv2.imread(str(out / f"{s}.jpg"))
        assert drawn is not None and drawn.shape == original.shape
        rows = [line.split() for line in (out / "labels" / f"{s}.txt").read_text().splitlines()]
        assert 1 <= len(rows) <= 20  # --max-det 20
        vals = np.array(rows, dtype=float)
        assert vals.shape[1] == 6 and set(vals[:, 0]) <= {0, 1, 2, 3}
        assert (vals[:, 1:5] >= 0).all() and (vals[:, 1:5] <= 1).all()
        assert (vals[:, 5] > 0.0001).all() and (vals[:, 5] <= 1).all()
        n_lines[s] = vals
    preds = json.loads((out / "predictions.json").read_text())
    assert len(preds) == sum(len(v) for v in n_lines.values())
    assert {p["image_id"] for p in preds} == {int(s) for s in STEMS}
    assert {p["category_id"] for p in preds} <= set(CATEGORY_IDS)
    # the JSON box (xywh pixels) and the label line (normalised cx cy w h) describe the same box
    s = STEMS[0]
    h, w = cv2.imread(str(IMAGES / f"{s}.jpg")).shape[:2]
    first = [p for p in preds if p["image_id"] == int(s)][0]
    x, y, bw, bh = first["bbox"]
    np.testing.assert_allclose(n_lines[s][0, 1:5], [(x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h], atol=2e-6)
    assert CATEGORY_IDS[int(n_lines[s][0, 0])] == first["category_id"]
    # pycocotools accepts the file as detections for the COCO128 ground truth
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco128 / "annotations" / "instances_train2017.json"))
        dt = gt.loadRes(str(out / "predictions.json"))
    anns = dt.loadAnns(dt.getAnnIds())
    assert len(anns) == len(preds) and {a["image_id"] for a in anns} == {int(s) for s in STEMS}
    assert anns[0]["area"] == pytest.approx(first["bbox"][2] * first["bbox"][3])


def test_unreadable_image_skipped_and_video_frames(weights, coco128, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    good = cv2.imread(str(IMAGES / f"{STEMS[0]}.jpg"))
    cv2.imwrite(str(src / "good.jpg"), good)
    (src / "broken.jpg").write_bytes((IMAGES / f"{STEMS[1]}.jpg").read_bytes()[:300])
    writer = cv2.VideoWriter(str(src / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (96, 64))
    for k in range(3):
        writer.write(cv2.resize(good, (96, 64)) // (k + 1))
    writer.release()
    r = run_cli("--weights", weights, "--source", src, "--img-size", 128, "--conf-thres", 0.0001,
                "--save-txt", "--classes", 1, "--half", "--project", tmp_path / "runs")
    assert r.returncode == 0, r.stderr
    log = r.stdout + r.stderr
    assert "--half needs CUDA" in log
    assert f"cannot read image {src / 'broken.jpg'}" in log
    assert "4 image(s)/frame(s) processed, 1 skipped (unreadable): " + str(src / "broken.jpg") in log
    out = tmp_path / "runs" / "exp"
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["clip_1.txt", "clip_2.txt", "clip_3.txt", "good.txt"]
    assert not (out / "broken.jpg").exists()
    classes = {line.split()[0] for f in (out / "labels").iterdir() for line in f.read_text().splitlines()}
    assert classes == {"1"}  # --classes 1
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (96, 64)
    cap.release()


def test_missing_source_exits_2(weights, tmp_path):
    r = run_cli("--weights", weights, "--source", tmp_path / "no_such_dir", "--project", tmp_path / "runs")
    assert r.returncode == 2
    assert f"error: source not found: {tmp_path / 'no_such_dir'}" in r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("kind", ["tensor", "garbage"])
def test_wrong_checkpoint_exits_2(kind, coco128, tmp_path):
    bad = tmp_path / "bad.pt"
    if kind == "tensor":
        torch.save(torch.zeros(3), bad)
        expect = "not a checkpoint of this framework"
    else:
        bad.write_bytes(b"\x00not a torch file" * 10)
        expect = "not a loadable checkpoint"
    r = run_cli("--weights", bad, "--source", IMAGES / f"{STEMS[0]}.jpg", "--project", tmp_path / "runs")
    assert r.returncode == 2
    assert expect in r.stderr and str(bad) in r.stderr
    assert "Traceback" not in r.stdout + r.stderr
