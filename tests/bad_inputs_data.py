"""Tiny datasets written into a test's tmp_path for the bad-input tests: YOLO, COCO and VOC
layouts of a few 64 x 48 JPEGs, each with one bright box at a known place."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import yaml

NAMES = ["motorcycle", "car", "bus", "truck"]   # 4 classes, as the session's tiny_weights
BOX = (16, 12, 40, 36)                            # x1 y1 x2 y2 of the bright block, pixels
W, H = 64, 48


def write_jpg(path: Path, w: int = W, h: int = H, box: tuple[int, int, int, int] = BOX) -> Path:
    img = np.full((h, w, 3), 40, np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = 230
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def yolo_line(cls: int = 1, box=BOX, w: int = W, h: int = H) -> str:
    x1, y1, x2, y2 = box
    return f"{cls} {(x1 + x2) / 2 / w} {(y1 + y2) / 2 / h} {(x2 - x1) / w} {(y2 - y1) / h}\n"


def write_yaml(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def yolo_dataset(root: Path, n: int = 4, labels: dict[int, str | None] | None = None) -> Path:
    """``root/images/{train,val}/i.jpg`` + labels; ``labels[i]`` overrides image i's label text
    (None: no label file). Returns the data YAML."""
    labels = labels or {}
    for split in ("train", "val"):
        for i in range(n):
            write_jpg(root / "images" / split / f"{i}.jpg")
            text = labels.get(i, yolo_line())
            if text is not None:
                (root / "labels" / split).mkdir(parents=True, exist_ok=True)
                (root / "labels" / split / f"{i}.txt").write_text(text)
    return write_yaml(root / "data.yaml", {"path": str(root), "format": "yolo", "train": "images/train",
                                           "val": "images/val", "names": NAMES})


def coco_json(n: int = 3) -> dict:
    """A valid COCO detection JSON for images 0.jpg .. n-1.jpg (category ids 3, 4, 6, 8)."""
    x1, y1, x2, y2 = BOX
    return {"images": [{"id": i + 1, "file_name": f"{i}.jpg", "width": W, "height": H} for i in range(n)],
            "categories": [{"id": c, "name": nm} for c, nm in zip((4, 3, 6, 8), NAMES)],
            "annotations": [{"id": 100 + i, "image_id": i + 1, "category_id": 3, "bbox": [x1, y1, x2 - x1, y2 - y1],
                             "area": float((x2 - x1) * (y2 - y1)), "iscrowd": 0} for i in range(n)]}


def coco_dataset(root: Path, data=None, n: int = 3) -> Path:
    """Images + ``annotations/val.json`` (``data``, default :func:`coco_json`) for train and val."""
    for i in range(n):
        write_jpg(root / "images" / f"{i}.jpg")
    ann = root / "annotations" / "val.json"
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text(json.dumps(coco_json(n) if data is None else data))
    return write_yaml(root / "data.yaml", {"path": str(root), "format": "coco", "train": "images", "val": "images",
                                           "train_annotations": "annotations/val.json",
                                           "val_annotations": "annotations/val.json", "names": NAMES})


VOC_XML = """<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objects}</annotation>"""
VOC_OBJECT = ("<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>17</xmin><ymin>13</ymin>"
              "<xmax>40</xmax><ymax>36</ymax></bndbox></object>")


def voc_dataset(root: Path, xml: dict[int, str | None] | None = None, n: int = 3) -> Path:
    """``root/VOC2007`` with JPEGImages, Annotations and ImageSets/Main/{train,val}.txt; ``xml[i]``
    overrides image i's XML text (None: no XML file)."""
    year = root / "VOC2007"
    xml = xml or {}
    for i in range(n):
        write_jpg(year / "JPEGImages" / f"{i:06d}.jpg")
        text = xml.get(i, VOC_XML.format(w=W, h=H, objects=VOC_OBJECT.format(name="car")))
        if text is not None:
            (year / "Annotations").mkdir(parents=True, exist_ok=True)
            (year / "Annotations" / f"{i:06d}.xml").write_text(text)
    lists = year / "ImageSets" / "Main"
    lists.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        (lists / f"{split}.txt").write_text("".join(f"{i:06d}\n" for i in range(n)))
    return write_yaml(root / "data.yaml", {"path": str(year), "format": "voc", "train": "ImageSets/Main/train.txt",
                                           "val": "ImageSets/Main/val.txt", "names": NAMES})
