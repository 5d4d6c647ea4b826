"""Every bad input gives its warning or error; the verification cache."""
import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

import utils.data.datasets as datasets_module
from utils.config import ConfigError
from utils.data.config import data_config_from_dict, load_data_config
from utils.data.datasets import load_split
from utils.data.verify import cache_path, check_image_file

REPO = Path(__file__).resolve().parents[3]


def jpeg_bytes(h=48, w=64, seed=0) -> bytes:
    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def make_yolo(root: Path, items: dict, split="train") -> Path:
    """items: stem -> (image bytes, label text or None). Returns a dataset YAML path."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for stem, (data, label) in items.items():
        (root / "images" / split / f"{stem}.jpg").write_bytes(data)
        if label is not None:
            (root / "labels" / split / f"{stem}.txt").write_text(label)
    y = root / "data.yaml"
    y.write_text(f"path: .\ntrain: images/{split}\nval: images/{split}\nnames: [a, b]\n")
    return y


def issues_by_kind(info):
    return {k: [str(i) for i in info.report.issues if i.kind == k] for k in info.report.counts()}


def test_bad_images_and_label_lines_are_reported(tmp_path, caplog):
    good = jpeg_bytes()
    y = make_yolo(tmp_path, {
        "ok": (good, "0 0.5 0.5 0.25 0.25\n"),
        "truncated": (good[: len(good) * 6 // 10], "0 0.5 0.5 0.2 0.2\n"),
        "random": (np.random.default_rng(1).integers(0, 255, 500, dtype=np.uint8).tobytes(), ""),
        "nonnumeric": (good, "0 0.5 0.5 0.2 0.2\n1 0.5 abc 0.2 0.2\n"),
        "range": (good, "0 0.95 0.5 0.2 0.2\n1 0.5 0.5 0.2 1.015\n"),  # x2 = 1.05 (warned); y in tolerance
        "badclass": (good, "5 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n"),
        "dupes": (good, "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n"),
        "negative": (good, None),
    })
    with caplog.at_level(logging.INFO):
        info = load_split(load_data_config(y), "train", cache=False)
    by = issues_by_kind(info)
    assert {Path(r.path).stem for r in info.records} == {"ok", "range", "badclass", "dupes", "negative"}
    assert len(by["corrupt_image"]) == 2
    assert any("truncated.jpg" in s and "truncated JPEG" in s for s in by["corrupt_image"])
    assert any("random.jpg" in s and "cannot decode" in s for s in by["corrupt_image"])
    assert by["bad_label_line"] == [f"{tmp_path / 'labels/train/nonnumeric.txt'} (line 2): "
                                    "non-numeric value in '1 0.5 abc 0.2 0.2'"]
    assert len(by["out_of_range"]) == 1 and "range.txt (line 1)" in by["out_of_range"][0]
    assert len(by["bad_class"]) == 1 and "badclass.txt (line 1)" in by["bad_class"][0]
    assert len(by["duplicate"]) == 1 and "dupes.txt (line 2)" in by["duplicate"][0] and "line 1" in by["duplicate"][0]
    rec = {Path(r.path).stem: r for r in info.records}
    # 0.95 +- 0.1 of 64 px -> x in [54.4, 67.2] clipped to 64; y in tolerance clipped silently to 48
    np.testing.assert_allclose(rec["range"].boxes_xyxy, [[54.4, 19.2, 64, 28.8], [25.6, 0, 38.4, 48]], atol=1e-4)
    assert rec["badclass"].classes.tolist() == [1] and len(rec["dupes"]) == 2 and len(rec["negative"]) == 0
    assert info.report.summary() == ("train: 5/8 images usable (1 without boxes), 6 boxes; skipped 3 images "
                                     "{'corrupt_image': 2, 'bad_label_line': 1}; dropped 2 boxes "
                                     "{'bad_class': 1, 'duplicate': 1}; clipped 1 out-of-range boxes")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 7 and any("nonnumeric.txt (line 2)" in w for w in warned)
    assert any("negative.jpg: no label file" in w and "1 of 8 images have none" in w for w in warned)
    assert any(info.report.summary() in r.getMessage() for r in caplog.records)


def test_check_image_file_reasons(tmp_path):
    good = jpeg_bytes(30, 40)
    (tmp_path / "a.jpg").write_bytes(good)
    (tmp_path / "padded.jpg").write_bytes(good + b"\x00" * 10)  # zero padding after EOI is accepted
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert check_image_file(tmp_path / "a.jpg") == (40, 30, None)
    assert check_image_file(tmp_path / "padded.jpg") == (40, 30, None)
    assert check_image_file(tmp_path / "empty.jpg")[2] == "empty image file"
    assert "cannot read" in check_image_file(tmp_path / "absent.jpg")[2]
    png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    (tmp_path / "cut.png").write_bytes(png[:-12])
    assert "truncated PNG" in check_image_file(tmp_path / "cut.png")[2]


def test_coco_bad_entries(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / "images" / name).write_bytes(jpeg_bytes(48, 64))
    ann = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
                      {"id": 2, "file_name": "b.jpg", "width": 64, "height": 48},
                      {"id": 3, "file_name": "c.jpg", "width": 100, "height": 48},
                      {"id": 4, "file_name": "gone.jpg", "width": 64, "height": 48}],
           "annotations": [{"id": 10, "image_id": 1, "category_id": 7, "bbox": [1, 2, 10, 20], "area": 150,
                            "iscrowd": 0},
                           {"id": 11, "image_id": 2, "category_id": 7, "bbox": [1, 2, "x", 20], "iscrowd": 0}],
           "categories": [{"id": 7, "name": "thing"}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    cfg = data_config_from_dict({"path": ".", "train": "images", "val": "images", "train_annotations": "ann.json",
                                 "val_annotations": "ann.json"}, tmp_path / "d.yaml")
    info = load_split(cfg, "train", cache=False)
    by = issues_by_kind(info)
    assert [r.image_id for r in info.records] == [1]
    np.testing.assert_allclose(info.records[0].boxes_xyxy, [[1, 2, 11, 22]])
    assert by["bad_label_line"][0].startswith(f"{tmp_path / 'ann.json'} (annotation id 11)")
    assert "annotations say 100x48, image is 64x48" in by["size_mismatch"][0]
    assert "gone.jpg" in by["missing_image"][0]
    assert info.names == ["thing"] and info.category_ids == [7]


def test_missing_split_paths_name_file_and_key(tmp_path):
    y = tmp_path / "d.yaml"
    y.write_text("path: nowhere\ntrain: images/train\nval: images/val\nnames: [a]\n")
    with pytest.raises(ConfigError, match=rf"{y}: key 'path': dataset folder .*nowhere not found"):
        load_split(load_data_config(y), "train")
    (tmp_path / "nowhere" / "images" / "train").mkdir(parents=True)
    (tmp_path / "nowhere" / "images" / "train" / "notes.txt").write_text("no images here")
    with pytest.raises(ConfigError, match=rf"{y}: key 'train': no images in"):
        load_split(load_data_config(y), "train")
    with pytest.raises(ConfigError, match=rf"{y}: key 'val': .*images/val not found"):
        load_split(load_data_config(y), "val")


@pytest.mark.parametrize("text,message", [
    ("path: .\ntrain: a\nval: a\nnames: [a]\nclasses: 3\n", r"unknown key\(s\) classes"),
    ("path: .\nformat: kitti\ntrain: a\nval: a\nnames: [a]\n", r"key 'format' must be one of .*'kitti'"),
    ("path: .\ntrain: a\nval: a\ntrain_annotations: x.json\n", r"key 'val_annotations' is missing"),
    ("path: .\ntrain: a\nnames: [a]\n", r"key 'val' is missing"),
    ("path: .\ntrain: a\nval: a\nnames: [a, b]\nnc: 3\n", r"key 'nc' must equal the number of names \(2\)"),
    ("path: .\ntrain: a\nval: a\n", r"key 'names' is required for format yolo"),
    ("path: [oops\n", r"not valid YAML"),
])
def test_bad_data_yaml_names_file_and_key(tmp_path, text, message):
    y = tmp_path / "d.yaml"
    y.write_text(text)
    with pytest.raises(ConfigError, match=rf"{y}: {message}"):
        load_data_config(y)


def test_cache_hit_replays_and_invalidates(tmp_path, monkeypatch):
    y = make_yolo(tmp_path, {"a": (jpeg_bytes(), "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n"),
                             "b": (jpeg_bytes(seed=2), "1 0.3 0.3 0.1 0.1\n")})
    cfg = load_data_config(y)
    first = load_split(cfg, "train")
    assert (tmp_path / "train.cache.npz").is_file()

    def no_read(*args, **kwargs):
        raise AssertionError("cache miss")
    monkeypatch.setattr(datasets_module, "read_split", no_read)
    second = load_split(cfg, "train")
    assert [str(i) for i in second.report.issues] == [str(i) for i in first.report.issues]  # duplicate replayed
    for r1, r2 in zip(first.records, second.records):
        assert (r1.path, r1.width, r1.height, r1.label_file) == (r2.path, r2.width, r2.height, r2.label_file)
        np.testing.assert_array_equal(r1.boxes_xyxy, r2.boxes_xyxy)
        np.testing.assert_array_equal(r1.classes, r2.classes)
    assert second.names == ["a", "b"] and second.category_ids == [1, 2]
    label = tmp_path / "labels" / "train" / "b.txt"
    label.write_text("1 0.3 0.3 0.1 0.12\n")
    os.utime(label, ns=(1, 1))  # a different mtime even on coarse file systems
    with pytest.raises(AssertionError, match="cache miss"):
        load_split(cfg, "train")


def test_read_only_dataset_is_never_written(tmp_path, monkeypatch):
    ds = tmp_path / "ro"
    y = make_yolo(ds, {"a": (jpeg_bytes(), "0 0.5 0.5 0.2 0.2\n")})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home_cache"))
    ds.chmod(0o555)
    try:
        info = load_split(load_data_config(y), "train")
        assert len(info.records) == 1
        assert not list(ds.glob("*.cache*"))
        cached = list((tmp_path / "home_cache" / "yolo-data-cache").glob("ro-*-train.cache.npz"))
        assert len(cached) == 1
    finally:
        ds.chmod(0o755)
    shared = REPO / ".." / "shared" / "datasets" / "coco128"
    if shared.is_dir():
        p = cache_path(shared.resolve(), "train")
        assert p is not None and (tmp_path / "home_cache") in p.parents
