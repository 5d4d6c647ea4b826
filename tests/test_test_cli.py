"""test.py end to end on the shared coco-mini val split, plus its helpers in utils/eval/coco_io.py.

Reference numbers: the coco-mini README (val: car 15, motorcycle 8, truck 5, bus 3 boxes in 79
images) and pycocotools' COCOeval run by the test itself on the same detections file.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from utils.config import ConfigError
from utils.eval.coco_io import (aligned, coco_results_of, detections_from_coco, evaluation_order,
                                 load_coco_predictions, split_image_ids)
from utils.eval.metrics import STAT_NAMES, ImageDet
from utils.data.records import DatasetInfo, make_record

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / ".." / "shared" / "datasets" / "coco-mini"
VAL_JSON = MINI / "annotations" / "instances_val2017.json"
VEHICLES = ["motorcycle", "car", "bus", "truck"]
VEHICLE_IDS = [4, 3, 6, 8]
VEHICLE_BOXES = {"motorcycle": 8, "car": 15, "bus": 3, "truck": 5}  # coco-mini README, val split
METRIC_KEYS = {"map50", "map", "precision", "recall", "per_class", "stats", "coco_stats", "images", "settings"}


# ----------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def coco_json() -> dict:
    if not (VAL_JSON.is_file() and (MINI / "images" / "val2017").is_dir()):
        pytest.skip(f"coco-mini val split not found under {MINI.resolve()}")
    return json.loads(VAL_JSON.read_text())


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    """Subprocess environment: dataset/matplotlib caches in a temporary folder, one torch thread."""
    return {**os.environ, "XDG_CACHE_HOME": str(tmp_path_factory.mktemp("cache")), "OMP_NUM_THREADS": "1"}


def data_yaml(folder: Path, names: list[str] | None) -> Path:
    lines = [f"path: {MINI.resolve()}", "format: coco", "train: images/val2017", "val: images/val2017",
             "train_annotations: annotations/instances_val2017.json",
             "val_annotations: annotations/instances_val2017.json"]
    if names:
        lines.append(f"names: [{', '.join(names)}]")
    path = folder / ("vehicles.yaml" if names else "all.yaml")
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(env: dict, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "test.py", *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def run_ok(env: dict, project: Path, *args) -> tuple[dict, str, Path]:
    p = run_cli(env, *args, "--project", project, "--name", "exp")
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads((project / "exp" / "metrics.json").read_text()), p.stdout + p.stderr, project / "exp"


def pycocotools_stats(pred_file: Path, category_ids: list[int]) -> np.ndarray:
    """COCOeval on the whole val split (every image of coco-mini val is usable) and ``category_ids``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(VAL_JSON))
        entries = [e for e in json.loads(pred_file.read_text()) if e["image_id"] in gt.imgs]
        ev = COCOeval(gt, gt.loadRes(entries), "bbox")
        ev.params.imgIds = sorted(gt.getImgIds())
        ev.params.catIds = sorted(category_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def assert_stats_equal_coco(metrics: dict, tol: float = 1e-4) -> None:
    ours = np.array([metrics["stats"][k] for k in STAT_NAMES])
    theirs = np.array([metrics["coco_stats"][k] for k in STAT_NAMES])
    np.testing.assert_allclose(ours, theirs, atol=tol, rtol=0)
    assert metrics["map"] == pytest.approx(theirs[0], abs=tol) and metrics["map50"] == pytest.approx(theirs[1], abs=tol)


# ------------------------------------------------------------------------- --predictions mode
def test_perfect_predictions_give_map_one(coco_json, env, tmp_path):
    gt = [a for a in coco_json["annotations"] if not a["iscrowd"]]
    preds = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0} for a in gt]
    pred_file = tmp_path / "perfect.json"
    pred_file.write_text(json.dumps(preds))
    m, out, run_dir = run_ok(env, tmp_path / "runs", "--predictions", pred_file, "--data",
                             data_yaml(tmp_path, VEHICLES))
    assert METRIC_KEYS <= set(m) and m["images"] == 79
    assert m["map"] == 1.0 and m["map50"] == 1.0 and m["precision"] == 1.0 and m["recall"] == 1.0
    assert {k: v["instances"] for k, v in m["per_class"].items()} == VEHICLE_BOXES
    assert all(v["ap"] == 1.0 and v["ap50"] == 1.0 for v in m["per_class"].values())
    assert_stats_equal_coco(m)
    assert m["coco_stats"]["AP"] == 1.0
    n_other = sum(a["category_id"] not in VEHICLE_IDS for a in gt)
    assert m["dropped_detections"] == {"unknown_image": 0, "unknown_category": n_other}
    assert f"{n_other} of categories outside" in out
    assert re.search(r"Class\s+Images\s+Instances\s+P\s+R\s+mAP@\.5\s+mAP@\.5:\.95", out)
    assert re.search(r"^\s+all\s+79\s+31\s", out, re.M)
    assert not re.search(r"^\s+car\s+7\s+15\s", out, re.M)  # per-class rows only with --verbose
    assert "Average Precision  (AP) @[ IoU=0.50:0.95" in out
    for png in ("PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png", "confusion_matrix.png"):
        assert (run_dir / png).stat().st_size > 0


def jittered(coco_json: dict, seed: int = 0) -> list[dict]:
    """Every annotation (crowd ones too) kept with p 0.8, moved and resized by ~10 %, random
    scores; 40 random false positives; 2 detections on an image id that is not in the split."""
    rng = np.random.default_rng(seed)
    out = []
    for a in coco_json["annotations"]:
        if rng.random() < 0.2:
            continue
        x, y, w, h = a["bbox"]
        x, y = x + rng.normal(0, 0.1) * w, y + rng.normal(0, 0.1) * h
        w, h = w * np.exp(rng.normal(0, 0.1)), h * np.exp(rng.normal(0, 0.1))
        out.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": [x, y, w, h],
                    "score": float(rng.random())})
    images = [im["id"] for im in coco_json["images"]]
    cats = sorted({a["category_id"] for a in coco_json["annotations"]})
    for _ in range(40):
        x, y, w, h = rng.uniform(0, 300, 2).tolist() + rng.uniform(10, 200, 2).tolist()
        out.append({"image_id": int(rng.choice(images)), "category_id": int(rng.choice(cats)),
                    "bbox": [x, y, w, h], "score": float(rng.random())})
    out += [{"image_id": 999999999, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 0.5}] * 2
    return out


@pytest.mark.parametrize("names", [VEHICLES, None], ids=["vehicles", "all-classes"])
def test_jittered_predictions_equal_pycocotools(coco_json, env, tmp_path, names):
    preds = jittered(coco_json)
    pred_file = tmp_path / "jittered.json"
    pred_file.write_text(json.dumps(preds))
    m, out, _ = run_ok(env, tmp_path / "runs", "--predictions", pred_file, "--data", data_yaml(tmp_path, names),
                       "--verbose", "--no-plots")
    cat_ids = VEHICLE_IDS if names else [c["id"] for c in coco_json["categories"]]
    assert_stats_equal_coco(m)
    np.testing.assert_allclose([m["coco_stats"][k] for k in STAT_NAMES], pycocotools_stats(pred_file, cat_ids),
                               atol=1e-12)
    assert 0.2 < m["map"] < 0.9 and m["map"] < m["map50"]  # a real, imperfect result
    outside = sum(p["category_id"] not in cat_ids for p in preds[:-2])
    assert m["dropped_detections"] == {"unknown_image": 2, "unknown_category": outside}
    assert "2 on images not in split 'val'" in out
    if names:
        assert re.search(r"^\s+car\s+7\s+15\s", out, re.M)  # --verbose: one row per class
        assert len(m["per_class"]) == 4
    else:
        assert len(m["per_class"]) == 80 and m["per_class"]["car"]["instances"] == 15


# ---------------------------------------------------------------------------------- model mode
def test_model_mode_end_to_end(coco_json, env, tmp_path, tiny_weights):
    m, out, run_dir = run_ok(env, tmp_path / "runs", "--weights", tiny_weights, "--data",
                             data_yaml(tmp_path, VEHICLES), "--img-size", 128, "--batch-size", 16,
                             "--workers", 0, "--save-json", "--no-plots")
    assert re.search(r"Class\s+Images\s+Instances\s+P\s+R\s+mAP@\.5\s+mAP@\.5:\.95", out)
    assert re.search(r"Speed: [\d.]+ ms pre-process, [\d.]+ ms inference, [\d.]+ ms NMS per image", out)
    assert METRIC_KEYS <= set(m) and m["images"] == 79 and m["settings"]["img_size"] == 128
    assert {k: v["instances"] for k, v in m["per_class"].items()} == VEHICLE_BOXES
    values = [m[k] for k in ("map50", "map", "precision", "recall")] + list(m["coco_stats"].values())
    assert all(0.0 <= v <= 1.0 for v in values), values
    assert_stats_equal_coco(m)
    preds = json.loads((run_dir / "predictions.json").read_text())
    assert preds and {p["category_id"] for p in preds} <= set(VEHICLE_IDS)
    assert {p["image_id"] for p in preds} <= {im["id"] for im in coco_json["images"]}
    per_image_class = np.unique([(p["image_id"], p["category_id"]) for p in preds], axis=0, return_counts=True)[1]
    assert len(preds) <= 300 * 79 and per_image_class.max() <= 300


# -------------------------------------------------------------------------------------- errors
def assert_clean_error(p: subprocess.CompletedProcess, *fragments: str) -> None:
    assert p.returncode == 2, p.stderr[-2000:]
    assert "Traceback" not in p.stderr, p.stderr
    assert re.search(r"^error: ", p.stderr, re.M), p.stderr
    for f in fragments:
        assert f in p.stderr, (f, p.stderr)


def test_missing_weights_exit_2(env, tmp_path):
    p = run_cli(env, "--weights", tmp_path / "nope.pt", "--data", "data/coco_vehicles.yaml",
                "--project", tmp_path / "runs")
    assert_clean_error(p, "nope.pt", "not found")
    assert not (tmp_path / "runs").exists()


def test_malformed_predictions_exit_2_naming_the_entry(env, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5], "score": 0.9},
                               {"image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5]}]))
    p = run_cli(env, "--predictions", bad, "--data", "data/coco_vehicles.yaml", "--project", tmp_path / "runs")
    assert_clean_error(p, "bad.json", "entry 1", "score")


def test_class_count_mismatch_exit_2(coco_json, env, tmp_path, tiny_weights):
    p = run_cli(env, "--weights", tiny_weights, "--data", data_yaml(tmp_path, None), "--img-size", 64,
                "--workers", 0, "--project", tmp_path / "runs")
    assert_clean_error(p, "4 classes", "has 80")


# ------------------------------------------------------------------------- helpers, by hand
@pytest.mark.parametrize("content, fragment", [
    ('{"image_id": 1}', "expected a JSON list"),
    ("[1, 2", "not a readable JSON"),
    ('[{"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 1}, 7]', "entry 1: expected an object"),
    ('[{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 1}]', "entry 0: missing key(s) category_id"),
    ('[{"image_id": 1, "category_id": 3, "bbox": [0, 0, 1], "score": 1}]', "entry 0: bbox must be 4"),
    ('[{"image_id": 1, "category_id": 3, "bbox": [0, 0, -1, 1], "score": 1}]', "width and height must be >= 0"),
    ('[{"image_id": 1, "category_id": "car", "bbox": [0, 0, 1, 1], "score": 1}]', "category_id must be an integer"),
    ('[{"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1], "score": NaN}]', "score must be a finite"),
])
def test_load_coco_predictions_rejects(tmp_path, content, fragment):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as e:
        load_coco_predictions(path)
    assert str(path) in str(e.value) and fragment in str(e.value)


def toy_info(fmt: str = "coco") -> DatasetInfo:
    """Two images, files 000000000042.jpg and 000000000007.jpg; classes 0 = COCO category 4,
    1 = category 3. Record image ids: the COCO ids for COCO, the positions 0, 1 otherwise."""
    ids = (42, 7) if fmt == "coco" else (0, 1)
    records = [make_record("/x/000000000042.jpg", ids[0], 100, 80, [[10, 10, 50, 40]], [1]),
               make_record("/x/000000000007.jpg", ids[1], 100, 80)]
    return DatasetInfo("val", fmt, Path("/x"), records, ["motorcycle", "car"], [4, 3])


def test_detections_map_back_through_ids_and_categories():
    info = toy_info()
    entries = [{"image_id": 42, "category_id": 3, "bbox": [10, 20, 30, 5], "score": 0.8},
               {"image_id": 7, "category_id": 4, "bbox": [0, 0, 1, 2], "score": 0.3},
               {"image_id": 99, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.3},   # unknown image
               {"image_id": 42, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.3}]   # person: not in subset
    dets, dropped = detections_from_coco(entries, info)
    assert (dropped.unknown_image, dropped.unknown_category) == (1, 1)
    np.testing.assert_array_equal(dets[0].boxes, [[10, 20, 40, 25]])  # xywh -> xyxy
    assert dets[0].classes.tolist() == [1] and dets[1].classes.tolist() == [0]
    back = coco_results_of(dets, info, rounded=False)
    assert back == [{"image_id": 42, "category_id": 3, "bbox": [10.0, 20.0, 30.0, 5.0], "score": 0.8},
                    {"image_id": 7, "category_id": 4, "bbox": [0.0, 0.0, 1.0, 2.0], "score": 0.3}]
    assert evaluation_order(info) == [1, 0]  # pycocotools' order: ascending image id
    gts, ds = aligned(info, {0: dets[0]})
    assert [len(g.classes) for g in gts] == [0, 1] and [len(d.classes) for d in ds] == [0, 1]


def test_non_coco_image_ids_are_file_stems():
    info = toy_info("yolo")
    assert split_image_ids(info) == [42, 7]  # detect.py's --save-json ids, not record positions
    empty = ImageDet(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
    assert coco_results_of({1: empty}, info) == []


@pytest.mark.parametrize("script,args,message", [
    ("test.py", ["--data", "d.yaml", "--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
    ("test.py", ["--data", "d.yaml", "--workers", "-2"], "argument --workers: must be >= 0, got -2"),
    ("detect.py", ["--weights", "w.pt", "--source", "x", "--img-size", "0"], "argument --img-size: must be >= 1, got 0"),
])
def test_bad_numeric_flags_exit_2(capsys, script, args, message):
    spec = importlib.util.spec_from_file_location(f"cli_{script[:-3]}", ROOT / script)  # "test" is also a stdlib package
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exc:
        module.parse_opt(args)
    assert exc.value.code == 2 and message in capsys.readouterr().err
