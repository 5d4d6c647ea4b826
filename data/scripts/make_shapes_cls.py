"""Generate "shapes_cls", the embedded image-classification set (data/shapes_cls.yaml), no download.

Object crops of the shapes detection set: ``make_shapes.py`` (run as a subprocess, seed 0, 600
train / 150 val scenes) draws the scenes, and every labelled box is cut out with a margin of 15 %
of its size on each side (clipped to the image), so a crop shows one circle, square, triangle or
star on its textured background. A crop that another object's box covers by more than
:data:`MAX_COVER` (25 %) of its area is left out: in the scenes half of the crops hold part of a
neighbour and a quarter more than 25 % of one, which makes their label ambiguous (measured: a
first set without this rule capped a small Darknet-19 at 0.87 top-1). 355-430 train and 84-96 val
crops per class remain, in the ImageNet layout::

    <out>/train/<class>/00000_0.jpg      # scene 00000, object 0
    <out>/val/<class>/...

Deterministic for a given seed and OpenCV build (the scenes are; cropping has no randomness).

    python data/scripts/make_shapes_cls.py --out datasets/shapes_cls [--seed 0] [--train 600] [--val 150]
    python data/scripts/make_shapes_cls.py datasets/shapes_cls     # as data/shapes_cls.yaml's download entry runs it
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("circle", "square", "triangle", "star")   # make_shapes.py's classes, in its order
MARGIN = 0.15
MAX_COVER = 0.25  # largest fraction of a crop that another object's box may cover
JPEG_PARAMS = [cv2.IMWRITE_JPEG_QUALITY, 92, cv2.IMWRITE_JPEG_OPTIMIZE, 0, cv2.IMWRITE_JPEG_PROGRESSIVE, 0]
SCENES = Path(__file__).resolve().parent / "make_shapes.py"


def crop_boxes(img: np.ndarray, label_lines: list[str]) -> list[tuple[int, int, np.ndarray]]:
    """``(object index, class, crop)`` for every YOLO-txt line ``class cx cy w h`` (normalised) of
    ``img`` whose crop no other object's box covers by more than ``MAX_COVER``."""
    h, w = img.shape[:2]
    rows = [[float(v) for v in line.split()] for line in label_lines]
    boxes = np.array([[cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2] for _, cx, cy, bw, bh in rows]) * [w, h, w, h]
    out = []
    for k, (c, cx, cy, bw, bh) in enumerate(rows):
        cx, cy, bw, bh = cx * w, cy * h, bw * w, bh * h
        x1, x2 = int(max(round(cx - bw * (0.5 + MARGIN)), 0)), int(min(round(cx + bw * (0.5 + MARGIN)), w))
        y1, y2 = int(max(round(cy - bh * (0.5 + MARGIN)), 0)), int(min(round(cy + bh * (0.5 + MARGIN)), h))
        others = np.delete(boxes, k, 0)
        iw = (np.minimum(others[:, 2], x2) - np.maximum(others[:, 0], x1)).clip(0)
        ih = (np.minimum(others[:, 3], y2) - np.maximum(others[:, 1], y1)).clip(0)
        if others.size and (iw * ih).max() > MAX_COVER * (x2 - x1) * (y2 - y1):
            continue
        out.append((k, int(c), img[y1:y2, x1:x2]))
    return out


def make_shapes_cls(out_dir: str | Path, n_train: int = 600, n_val: int = 150, seed: int = 0) -> Path:
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, str(SCENES), "--out", tmp, "--seed", str(seed), "--train", str(n_train),
                        "--val", str(n_val)], check=True, stdout=subprocess.DEVNULL)
        for split in ("train", "val"):
            for name in CLASSES:
                (out_dir / split / name).mkdir(parents=True, exist_ok=True)
            for img_path in sorted((Path(tmp) / "images" / split).glob("*.jpg")):
                img = cv2.imread(str(img_path))
                lines = (Path(tmp) / "labels" / split / f"{img_path.stem}.txt").read_text().split("\n")
                for k, c, crop in crop_boxes(img, [ln for ln in lines if ln.strip()]):
                    dst = out_dir / split / CLASSES[c] / f"{img_path.stem}_{k}.jpg"
                    if not cv2.imwrite(str(dst), crop, JPEG_PARAMS):
                        raise OSError(f"could not write {dst}")
    return out_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", help="output folder (how a dataset YAML's download entry calls it)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "datasets" / "shapes_cls"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train", type=int, default=600, help="scenes for the train split")
    ap.add_argument("--val", type=int, default=150, help="scenes for the val split")
    args = ap.parse_args()
    print(f"wrote {make_shapes_cls(args.root or args.out, args.train, args.val, args.seed)}")


if __name__ == "__main__":
    main()
