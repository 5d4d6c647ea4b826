"""Shared by the dataset tests (was utils/data/export.py; no user path called it): a verified split
written back out as a COCO ground-truth dict, YOLO txt labels and VOC XML files, so that the tests
can compare the three readers on the same boxes.

Image files are not copied: ``link_images`` symlinks them into the new layout.
"""
from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from utils.data.records import DatasetInfo


def coco_dict_from_records(info: DatasetInfo) -> dict:
    """COCO ground truth of ``info`` (``bbox`` = ``[x, y, w, h]`` pixels, ``category_id`` from
    ``info.category_ids``). VOC "difficult" boxes are written as ``iscrowd: 1`` (pycocotools then
    ignores detections matched to them, close to VOC's rule)."""
    images, anns = [], []
    for r in info.records:
        images.append({"id": int(r.image_id), "file_name": Path(r.path).name, "width": r.width, "height": r.height})
        for b, c, crowd, area, diff in zip(r.boxes_xyxy.tolist(), r.classes.tolist(), r.iscrowd, r.area, r.difficult):
            anns.append({"id": len(anns) + 1, "image_id": int(r.image_id), "category_id": int(info.category_ids[c]),
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": float(area),
                         "iscrowd": int(bool(crowd) or bool(diff))})
    cats = [{"id": int(i), "name": n} for n, i in zip(info.names, info.category_ids)]
    return {"images": images, "annotations": anns, "categories": cats}


def link_images(info: DatasetInfo, folder: Path) -> list[Path]:
    """Symlink every image of ``info`` into ``folder`` (same file names); returns the new paths."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for r in info.records:
        dst = folder / Path(r.path).name
        if not dst.exists():
            os.symlink(os.path.abspath(r.path), dst)
        out.append(dst)
    return out


def write_yolo_labels(info: DatasetInfo, label_dir: Path, include_crowd: bool = False) -> None:
    """One ``<stem>.txt`` per image: ``class cx cy w h`` normalised, 6 decimals. Crowd / difficult
    boxes are left out unless ``include_crowd`` (YOLO txt cannot flag them)."""
    label_dir.mkdir(parents=True, exist_ok=True)
    for r in info.records:
        keep = np.ones(len(r), bool) if include_crowd else r.train_mask
        b = r.boxes_xyxy[keep].astype(np.float64)
        lines = [f"{c} {(x1 + x2) / 2 / r.width:.6f} {(y1 + y2) / 2 / r.height:.6f} "
                 f"{(x2 - x1) / r.width:.6f} {(y2 - y1) / r.height:.6f}"
                 for c, (x1, y1, x2, y2) in zip(r.classes[keep].tolist(), b.tolist())]
        (label_dir / (Path(r.path).stem + ".txt")).write_text("".join(f"{line}\n" for line in lines))


def voc_xml(info: DatasetInfo, index: int) -> str:
    """VOC annotation XML of record ``index``; corners rounded to 1-based integer pixels
    (``xmin = round(x1) + 1``, ``xmax = round(x2)``), crowd boxes written as difficult."""
    r = info.records[index]
    objects = []
    for b, c, crowd, diff in zip(r.boxes_xyxy.tolist(), r.classes.tolist(), r.iscrowd, r.difficult):
        x1, y1, x2, y2 = round(b[0]) + 1, round(b[1]) + 1, round(b[2]), round(b[3])
        objects.append(f"  <object>\n    <name>{escape(info.names[c])}</name>\n"
                       f"    <difficult>{int(bool(crowd) or bool(diff))}</difficult>\n"
                       f"    <bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>\n"
                       f"  </object>\n")
    return (f"<annotation>\n  <filename>{escape(Path(r.path).name)}</filename>\n"
            f"  <size><width>{r.width}</width><height>{r.height}</height><depth>3</depth></size>\n"
            + "".join(objects) + "</annotation>\n")


def write_voc(info: DatasetInfo, year_dir: Path, list_name: str = "trainval") -> Path:
    """A VOC year folder: ``JPEGImages/`` (symlinks, ``.jpg`` only), ``Annotations/*.xml`` and
    ``ImageSets/Main/<list_name>.txt``; returns the list file."""
    link_images(info, year_dir / "JPEGImages")
    (year_dir / "Annotations").mkdir(parents=True, exist_ok=True)
    for k, r in enumerate(info.records):
        (year_dir / "Annotations" / (Path(r.path).stem + ".xml")).write_text(voc_xml(info, k))
    list_file = year_dir / "ImageSets" / "Main" / f"{list_name}.txt"
    list_file.parent.mkdir(parents=True, exist_ok=True)
    list_file.write_text("".join(Path(r.path).stem + "\n" for r in info.records))
    return list_file
