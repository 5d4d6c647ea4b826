"""Inputs of issue #10 that used to be accepted silently: each is now an error, or a warning that
names the file and gives a count. Also the download rules and the one EXIF rule (an
orientation-6 JPEG through verification, the training loader, test.py and detect.py)."""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bad_inputs_data import BOX, NAMES, VOC_OBJECT, VOC_XML, coco_dataset, coco_json, voc_dataset, write_yaml, \
    yolo_dataset, yolo_line
from test_bad_inputs import CLIS, run_cli
from utils.train.checkpoint import remove_stale_temporaries, save_checkpoint
from utils.config import RANGES, ConfigError, Hyp, hyp_from_dict
from utils.data.config import load_data_config
from utils.data.datasets import load_split
from utils.data.downloads import DownloadError, extract_inside, may_download, run_download


def issues(info, kind: str) -> list[str]:
    return [str(i) for i in info.report.issues if i.kind == kind]


# ------------------------------------------------------------------------------ hyp ranges
def test_every_hyp_key_has_a_range_and_defaults_are_inside():
    fields = {f.name for f in dataclasses.fields(Hyp)}
    assert set(RANGES) == fields
    hyp_from_dict(Hyp().to_dict())


@pytest.mark.parametrize("key", sorted(k for k, r in RANGES.items() if isinstance(r, str) and r != "pairs"))
def test_each_numeric_hyp_rejects_values_just_outside_its_range(key):
    rule = RANGES[key]
    lo, hi = (float(x) for x in rule[1:-1].split(","))
    is_int = isinstance(getattr(Hyp(), key), int)
    below = lo if rule[0] == "(" else lo - (1 if is_int else 1e-9 * max(1, abs(lo)))
    above = hi if rule[-1] == ")" else hi + (1 if is_int else 1e-9 * max(1, abs(hi)))
    for bad in (below, above, float("nan")):
        value = int(bad) if is_int and bad == bad else bad
        with pytest.raises(ConfigError, match=f"'{key}'"):
            hyp_from_dict({key: value}, "h.yaml")


# ------------------------------------------------------------------------------ COCO
def test_coco_annotation_of_an_unknown_image_is_counted_and_named(tmp_path, caplog):
    data = coco_json()
    data["annotations"] += [dict(data["annotations"][0], id=555, image_id=99), dict(data["annotations"][0], id=556,
                                                                                      image_id=98)]
    with caplog.at_level(logging.WARNING):
        info = load_split(load_data_config(coco_dataset(tmp_path, data)), "val", cache=False)
    (msg,) = issues(info, "unmatched")
    assert "2 of 5 annotations refer to an image_id not in 'images'" in msg and "annotation id 555" in msg
    assert "val.json" in msg and any("unmatched" in r.getMessage() for r in caplog.records)
    assert sum(len(r) for r in info.records) == 3


def test_coco_category_not_in_the_json_names_the_annotation(tmp_path):
    data = coco_json()
    data["annotations"][1]["category_id"] = 77
    info = load_split(load_data_config(coco_dataset(tmp_path, data)), "val", cache=False)
    (msg,) = issues(info, "bad_class")
    assert "annotation id 101" in msg and "category_id 77" in msg
    assert "dropped 1 boxes {'bad_class': 1}" in info.report.summary()


def test_coco_sizes_of_the_stored_pixels_are_flagged_as_swapped(tmp_path):
    data = coco_json(1)
    data["images"][0].update(width=48, height=64)
    with pytest.raises(ConfigError, match="none of the 1 images is usable.*48x64, image is 64x48.*swapped"):
        load_split(load_data_config(coco_dataset(tmp_path, data, n=1)), "val", cache=False)


# ------------------------------------------------------------------------------ YOLO / VOC
def test_missing_yolo_labels_are_counted_naming_the_first_image(tmp_path):
    info = load_split(load_data_config(yolo_dataset(tmp_path, labels={1: None, 3: None})), "train", cache=False)
    (msg,) = issues(info, "no_label")
    assert msg.startswith(str(tmp_path / "images" / "train" / "1.jpg"))
    assert "2 of 4 images have none" in msg and str(tmp_path / "labels" / "train" / "1.txt") in msg


def test_polygon_lines_are_reported_once_per_split_with_a_count(tmp_path, caplog):
    x1, y1, x2, y2 = (v / s for v, s in zip(BOX, (64, 48, 64, 48)))
    poly = f"1 {x1} {y1} {x2} {y1} {x2} {y2}\n"                     # 7 values: a triangle
    y = yolo_dataset(tmp_path, labels={0: poly, 2: yolo_line() + poly + poly})
    with caplog.at_level(logging.WARNING):
        info = load_split(load_data_config(y), "train", cache=False)
    (msg,) = issues(info, "polygon")
    assert "3 label lines in 2 files are polygons" in msg and "0.txt (line 1)" in msg
    assert sum("[polygon]" in r.getMessage() for r in caplog.records) == 1
    np.testing.assert_allclose(info.records[0].boxes_xyxy, [[16, 12, 40, 36]], atol=1e-4)  # the polygon's box


def test_missing_voc_xml_is_counted_like_a_missing_yolo_label(tmp_path):
    info = load_split(load_data_config(voc_dataset(tmp_path, {2: None})), "train", cache=False)
    (msg,) = issues(info, "no_label")
    assert "000002.jpg" in msg and "no annotation XML" in msg and "1 of 3 images have none" in msg


def test_voc_object_outside_names_names_the_file(tmp_path, caplog):
    xml = VOC_XML.format(w=64, h=48, objects=VOC_OBJECT.format(name="car") + VOC_OBJECT.format(name="dog"))
    with caplog.at_level(logging.INFO):
        load_split(load_data_config(voc_dataset(tmp_path, {1: xml})), "train", cache=False)
    assert any("dog x1 (first in 000001.xml)" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------ downloads
def test_consent_rules(tmp_path):
    sh = tmp_path / "get.sh"
    sh.write_text("exit 0\n")
    y, root = tmp_path / "d.yaml", tmp_path / "absent"
    asked = []
    assert not may_download(y, str(sh), root, allowed=False, interactive=False, ask=asked.append)
    assert asked == []                                             # non-interactive: never asks
    assert may_download(y, str(sh), root, allowed=True, interactive=False)
    assert may_download(y, str(sh), root, allowed=False, interactive=True, ask=lambda q: asked.append(q) or "y")
    assert str(sh.resolve()) in asked[0]                            # the prompt shows the absolute path
    assert not may_download(y, str(sh), root, allowed=False, interactive=True, ask=lambda q: "")
    assert may_download(y, "data/scripts/make_shapes.py", root, allowed=False, interactive=False)  # project generator


def test_python_download_runs_as_a_subprocess_not_imported(tmp_path):
    out = tmp_path / "ran.json"
    py = tmp_path / "get.py"
    py.write_text(f"import json, os, sys\njson.dump({{'name': __name__, 'pid': os.getpid(), 'root': sys.argv[1]}}, "
                  f"open({str(out)!r}, 'w'))\n")
    run_download(tmp_path / "d.yaml", str(py), tmp_path / "root")
    ran = json.loads(out.read_text())
    assert ran == {"name": "__main__", "pid": ran["pid"], "root": str(tmp_path / "root")} and ran["pid"] != os.getpid()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _tar(path: Path, members: dict[str, bytes], link: str | None = None) -> Path:
    with tarfile.open(path, "w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo("root/evil_link")
            info.type, info.linkname = tarfile.SYMTYPE, link
            t.addfile(info)
    return path


@pytest.mark.parametrize("kind, members, link", [
    ("zip", {"root/a.txt": b"a", "../escape.txt": b"x"}, None),
    ("zip", {"/abs/escape.txt": b"x"}, None),
    ("tar", {"root/a.txt": b"a", "root/../../escape.txt": b"x"}, None),
    ("tar", {"root/a.txt": b"a"}, "/etc/passwd"),
])
def test_hostile_archives_are_refused_before_anything_is_written(tmp_path, kind, members, link):
    root = tmp_path / "d" / "root"
    archive = _zip(tmp_path / "a.zip", members) if kind == "zip" else _tar(tmp_path / "a.tar", members, link)
    with pytest.raises(DownloadError, match="refusing the archive"):
        extract_inside(archive, root)
    assert not root.exists() and not (tmp_path / "d" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()


def test_archive_top_folder_named_like_the_root_is_stripped(tmp_path):
    root = tmp_path / "coco128"
    archive = _zip(tmp_path / "c.zip", {"coco128/images/a.jpg": b"j", "coco128/labels/a.txt": b"0 .5 .5 .1 .1"})
    written = extract_inside(archive, root)
    assert sorted(p.relative_to(root).as_posix() for p in written) == ["images/a.jpg", "labels/a.txt"]


def test_stale_checkpoint_temporaries_are_removed_on_save(tmp_path):
    dead = tmp_path / ".last.pt.999999999.abc.tmp"     # a pid that cannot run
    legacy = tmp_path / ".last.pt.k2j3h4x9.tmp"        # older name without a pid
    alive = tmp_path / f".last.pt.{os.getppid()}.xyz.tmp"
    other = tmp_path / ".best.pt.999999999.abc.tmp"
    for p in (dead, legacy, alive, other):
        p.write_bytes(b"x" * 10)
    save_checkpoint({"epoch": 1, "model": {"w": torch.ones(1)}}, tmp_path / "last.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, other.name, "last.pt"])
    assert remove_stale_temporaries(tmp_path / "best.pt") == [other]


# ------------------------------------------------------------------------------ EXIF
def orientation6_jpeg(path: Path) -> tuple[Path, np.ndarray]:
    """A 64 x 96 (w x h) upright image stored as 96 x 64 pixels with EXIF orientation 6
    ("rotate 90 degrees clockwise to display"); returns the file and the upright BGR pixels."""
    from PIL import Image
    upright = np.full((96, 64, 3), 30, np.uint8)
    upright[8:40, 24:56] = (40, 200, 240)                          # the object: x 24-56, y 8-40 upright
    stored = cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE)   # what the camera wrote
    exif = Image.Exif()
    exif[0x0112] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(stored[..., ::-1]).save(path, quality=95, exif=exif.tobytes())
    return path, upright


def test_exif_orientation_is_applied_in_verification_and_the_training_loader(tmp_path):
    from utils.data.loader import LoaderSettings, build_dataloader
    img, upright = orientation6_jpeg(tmp_path / "images" / "train" / "0.jpg")
    orientation6_jpeg(tmp_path / "images" / "val" / "0.jpg")
    for split in ("train", "val"):
        (tmp_path / "labels" / split).mkdir(parents=True)
        (tmp_path / "labels" / split / "0.txt").write_text(yolo_line(1, (24, 8, 56, 40), 64, 96))
    y = write_yaml(tmp_path / "d.yaml", {"path": str(tmp_path), "train": "images/train", "val": "images/val",
                                         "names": NAMES})
    info = load_split(load_data_config(y), "train", cache=False)
    rec = info.records[0]
    assert (rec.width, rec.height) == (64, 96) and not info.report.issues
    np.testing.assert_allclose(rec.boxes_xyxy, [[24, 8, 56, 40]], atol=1e-3)
    loader = build_dataloader(info, LoaderSettings(96, 1, augment=False, workers=0, stride=32))
    imgs, targets, _, shapes, _ = next(iter(loader))
    assert shapes[0][0] == (96, 64)
    x = imgs[0].permute(1, 2, 0).numpy()                            # RGB, letterboxed to 96 x 96
    (ratio_h, ratio_w), (pad_w, pad_h) = shapes[0][1]
    h0, w0 = 96, 64
    back = x[int(pad_h):int(pad_h) + h0, int(pad_w):int(pad_w) + w0, ::-1]  # the upright image again
    assert np.abs(back.astype(int) - upright).mean() < 4            # JPEG noise only
    cx, cy, w, h = targets[0, 2:].tolist()                          # the label lands on the object
    patch = x[int((cy - h / 2) * 96) + 2:int((cy + h / 2) * 96) - 2, int((cx - w / 2) * 96) + 2:int((cx + w / 2) * 96) - 2]
    assert abs(patch[..., 2].mean() - 40) < 8 and abs(patch[..., 0].mean() - 240) < 8


def test_exif_orientation_is_applied_in_test_py(tmp_path, tiny_weights, capsys):
    img, _ = orientation6_jpeg(tmp_path / "images" / "0.jpg")
    data = coco_json(1)
    data["images"][0].update(width=64, height=96)                  # COCO sizes of the upright image
    data["annotations"][0]["bbox"] = [24, 8, 32, 32]
    ann = tmp_path / "annotations" / "val.json"
    y = coco_dataset(tmp_path, data, n=0)
    assert json.loads(ann.read_text())["images"][0]["width"] == 64
    rc, err = run_cli("test", ["--weights", str(tiny_weights), "--data", str(y), "--img-size", "96", "--workers", "0",
                               "--project", str(tmp_path / "runs"), "--no-plots"], capsys)
    assert rc == 0, err
    metrics = json.loads((tmp_path / "runs" / "exp" / "metrics.json").read_text())
    assert (metrics["images"], metrics["instances"]) == (1, 1)   # verified at the upright size, not skipped
    data["images"][0].update(width=96, height=64)                  # sizes of the stored pixels: named, swapped
    ann.write_text(json.dumps(data))
    rc, err = run_cli("test", ["--weights", str(tiny_weights), "--data", str(y), "--img-size", "96", "--workers", "0",
                               "--project", str(tmp_path / "runs")], capsys)
    assert rc == 2 and "0.jpg" in err and "swapped" in err


def test_exif_orientation_is_applied_in_detect_py(tmp_path, tiny_weights, capsys, caplog):
    img, upright = orientation6_jpeg(tmp_path / "src" / "phone.jpg")
    with caplog.at_level(logging.INFO):
        rc, err = run_cli("detect", ["--weights", str(tiny_weights), "--source", str(img), "--img-size", "96",
                                     "--project", str(tmp_path / "runs"), "--conf-thres", "0.99"], capsys)
    assert rc == 0, err
    assert any(f"image {img} 64x96" in r.getMessage() for r in caplog.records)
    drawn = cv2.imread(str(tmp_path / "runs" / "exp" / "phone.jpg"), cv2.IMREAD_IGNORE_ORIENTATION | cv2.IMREAD_COLOR)
    assert drawn.shape[:2] == (96, 64) and np.abs(drawn.astype(int) - upright).mean() < 4
