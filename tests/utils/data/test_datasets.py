"""Dataset YAMLs and the three readers (COCO JSON, YOLO txt, VOC XML) on the shared COCO128 slice."""
import json
from pathlib import Path

import numpy as np
import pytest

from formats_testkit import coco_dict_from_records, link_images, write_voc, write_yolo_labels  # tests/utils/data/
from utils.config import ConfigError
from utils.data.config import data_config_from_dict, load_data_config
from utils.data.datasets import load_split

REPO = Path(__file__).resolve().parents[3]
COCO128 = REPO / ".." / "shared" / "datasets" / "coco128"
needs_coco128 = pytest.mark.skipif(not COCO128.is_dir(), reason="../shared/datasets/coco128 not present")


def coco128_cfg(tmp_path, names=None):
    d = {"path": str(COCO128.resolve()), "train": "images/train2017", "val": "images/train2017",
         "train_annotations": "annotations/instances_train2017.json",
         "val_annotations": "annotations/instances_train2017.json"}
    if names:
        d["names"] = names
    return data_config_from_dict(d, tmp_path / "coco128.yaml")


@pytest.fixture(scope="module")
def coco128(tmp_path_factory):
    if not COCO128.is_dir():
        pytest.skip("../shared/datasets/coco128 not present")
    tmp = tmp_path_factory.mktemp("c128")
    return load_split(coco128_cfg(tmp), "train", cache=False)


@needs_coco128
def test_coco128_reads_all_annotations(coco128):
    raw = json.loads((COCO128 / "annotations" / "instances_train2017.json").read_text())
    assert len(coco128.records) == 128 and coco128.nc == 80
    assert sum(len(r) for r in coco128.records) == len(raw["annotations"]) == 939
    assert coco128.report.n_boxes == 929  # 10 crowd annotations are not training targets
    assert coco128.category_ids[:4] == [1, 2, 3, 4] and coco128.category_ids[-1] == 90
    assert coco128.annotation_json.name == "instances_train2017.json"
    # the first image's first annotation (JSON order is kept): bbox [x, y, w, h] -> xyxy
    rec = coco128.records[0]
    first = next(a for a in raw["annotations"] if a["image_id"] == rec.image_id)
    x, y, w, h = first["bbox"]
    np.testing.assert_allclose(rec.boxes_xyxy[0], [x, y, x + w, y + h], rtol=1e-6)
    assert rec.area[0] == pytest.approx(first["area"], rel=1e-6)
    assert coco128.category_ids[rec.classes[0]] == first["category_id"]


@needs_coco128
def test_vehicle_subset_counts(tmp_path):
    """README: 20 images hold a vehicle: car 47, truck 12, bus 7, motorcycle 5 boxes. One of the car
    boxes is a crowd annotation: 46 car training targets + 1 crowd region kept for evaluation."""
    info = load_split(coco128_cfg(tmp_path, ["motorcycle", "car", "bus", "truck"]), "train", cache=False)
    assert info.names == ["motorcycle", "car", "bus", "truck"] and info.category_ids == [4, 3, 6, 8]
    assert info.class_counts(include_ignored=True).tolist() == [5, 47, 7, 12]
    assert info.class_counts().tolist() == [5, 46, 7, 12]
    assert sum(int(r.iscrowd.sum()) for r in info.records) == 1
    assert sum(1 for r in info.records if len(r)) == 20
    assert len(info.records) == 128  # images without vehicles are kept as negatives


@needs_coco128
def test_three_formats_read_the_same_boxes(coco128, tmp_path):
    # YOLO layout: images/train2017 (symlinks) + labels/train2017/*.txt
    link_images(coco128, tmp_path / "yolo" / "images" / "train2017")
    write_yolo_labels(coco128, tmp_path / "yolo" / "labels" / "train2017")
    yolo_cfg = data_config_from_dict({"path": "yolo", "train": "images/train2017", "val": "images/train2017",
                                      "names": coco128.names}, tmp_path / "y.yaml")
    assert yolo_cfg.format == "yolo"
    yolo = load_split(yolo_cfg, "train", cache=False)
    # VOC layout: VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main/trainval.txt}
    write_voc(coco128, tmp_path / "VOCdevkit" / "VOC2007")
    voc_cfg = data_config_from_dict({"path": "VOCdevkit", "train": "VOC2007/ImageSets/Main/trainval.txt",
                                     "val": "VOC2007/ImageSets/Main/trainval.txt", "names": coco128.names},
                                    tmp_path / "v.yaml")
    assert voc_cfg.format == "voc"
    voc = load_split(voc_cfg, "train", cache=False)
    assert len(yolo.records) == len(voc.records) == 128
    for c, y, v in zip(coco128.records, yolo.records, voc.records):
        assert Path(c.path).name == Path(y.path).name == Path(v.path).name
        keep = c.train_mask
        np.testing.assert_array_equal(y.classes, c.classes[keep])
        np.testing.assert_allclose(y.boxes_xyxy, c.boxes_xyxy[keep], atol=2e-3)  # 6-decimal normalised text
        np.testing.assert_array_equal(v.classes, c.classes)  # crowd boxes written as difficult
        np.testing.assert_array_equal(v.difficult, c.iscrowd)
        np.testing.assert_allclose(v.boxes_xyxy, c.boxes_xyxy, atol=0.5 + 1e-4)  # integer VOC pixels


@needs_coco128
def test_coco_dict_round_trip(coco128):
    """The COCO dict made from records is the original ground truth (boxes, areas, crowd flags)."""
    d = coco_dict_from_records(coco128)
    raw = json.loads((COCO128 / "annotations" / "instances_train2017.json").read_text())
    ours = sorted((a["image_id"], a["category_id"], a["iscrowd"], *np.round(a["bbox"], 2)) for a in d["annotations"])
    ref = sorted((a["image_id"], a["category_id"], a["iscrowd"], *np.round(a["bbox"], 2)) for a in raw["annotations"])
    assert ours == ref
    assert {c["id"]: c["name"] for c in d["categories"]} == {c["id"]: c["name"] for c in raw["categories"]}


def test_yaml_paths_resolve_against_the_yaml_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    y = tmp_path / "sub" / "d.yaml"
    y.write_text("path: ../ds\ntrain: images/train\nval: [images/val, extra.txt]\nnames: {0: a, 1: b}\n")
    cfg = load_data_config(y)
    assert cfg.root == (tmp_path / "ds").resolve()
    assert cfg.splits["val"] == (cfg.root / "images/val", cfg.root / "extra.txt")
    assert cfg.names == ("a", "b") and cfg.format == "yolo"


def test_shipped_yamls_parse():
    for name, fmt, nc in [("coco.yaml", "coco", 80), ("coco_vehicles.yaml", "coco", 4), ("voc.yaml", "voc", 20),
                          ("shapes.yaml", "yolo", 4)]:
        cfg = load_data_config(REPO / "data" / name)
        assert cfg.format == fmt and len(cfg.names) == nc, name
        assert (REPO / "datasets").resolve() in cfg.root.parents, name  # <repo>/datasets (gitignored)
    cfg = load_data_config(REPO / "data" / "coco128.yaml")
    assert cfg.names is None and cfg.root == (REPO / "datasets" / "coco128").resolve()
    coco_names = load_data_config(REPO / "data" / "coco.yaml").names
    assert coco_names[:3] == ("person", "bicycle", "car") and coco_names[-1] == "toothbrush"


def test_coco_unknown_name_is_a_config_error(tmp_path):
    if not COCO128.is_dir():
        pytest.skip("../shared/datasets/coco128 not present")
    with pytest.raises(ConfigError, match=r"key 'names'.*spaceship"):
        load_split(coco128_cfg(tmp_path, ["car", "spaceship"]), "train", cache=False)


@pytest.mark.skipif(not COCO128.is_dir(), reason="../shared/datasets/coco128 not present")
def test_coco_list_file_restricts_the_split(tmp_path):
    """A list file for a COCO split keeps only the listed images (the JSON holds all 128)."""
    images = sorted((COCO128 / "images" / "train2017").glob("*.jpg"))[:3]
    lst = tmp_path / "three.txt"
    lst.write_text("\n".join(str(p) for p in images) + "\n")
    ann = "annotations/instances_train2017.json"
    cfg = data_config_from_dict({"path": str(COCO128), "format": "coco", "train": str(lst), "val": str(lst),
                                 "train_annotations": ann, "val_annotations": ann}, tmp_path / "d.yaml")
    info = load_split(cfg, "train", cache_dir=tmp_path)
    assert sorted(r.path for r in info.records) == sorted(str(p) for p in images)
