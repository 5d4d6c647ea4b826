"""Generate "shapes", a small deterministic synthetic detection dataset (the default data/shapes.yaml).

Four classes (circle, square, triangle, star) drawn on textured backgrounds (smoothed noise,
gradients, stripes, checkers) with random sizes, colours, rotations, counts (1-6), partial
occlusion (at most 40 % of an earlier object hidden) and unlabelled distractor strokes.
Images are 128-256 px per side; objects are 20-90 px, i.e. >= 12 px at a 160 px training size.

Layout (YOLO txt)::

    <out>/images/{train,val}/00000.jpg
    <out>/labels/{train,val}/00000.txt     # class cx cy w h, normalised

Byte-for-byte reproducible for a given seed (numpy Generator per image + OpenCV drawing and
JPEG encoding with fixed parameters) with the same OpenCV build. Boxes are the tight bounds of
each object's full (unoccluded) shape. About 2-3 s for the default 400 + 100 images.

    python data/scripts/make_shapes.py --out datasets/shapes [--seed 0] [--train 400] [--val 100]
    python data/scripts/make_shapes.py datasets/shapes       # as data/shapes.yaml's download entry runs it
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("circle", "square", "triangle", "star")
JPEG_PARAMS = [cv2.IMWRITE_JPEG_QUALITY, 92, cv2.IMWRITE_JPEG_OPTIMIZE, 0, cv2.IMWRITE_JPEG_PROGRESSIVE, 0]
SHIFT = 4  # sub-pixel bits for cv2 polygon drawing
MAX_HIDDEN = 0.4  # an object placement is rejected when it would hide more of an earlier one


def _noise(rng: np.random.Generator, shape: tuple, amplitude: int) -> np.ndarray:
    """Uniform integer noise in [-amplitude, amplitude] (int16)."""
    return rng.integers(-amplitude, amplitude + 1, shape, dtype=np.int16)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    kind = rng.integers(4)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:  # smoothed colour noise
        small = rng.uniform(0, 1, (max(2, h // 16), max(2, w // 16), 1)).astype(np.float32)
        t = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)[..., None]
    elif kind == 1:  # linear gradient at a random angle
        a = rng.uniform(0, 2 * math.pi)
        t = (xx * math.cos(a) + yy * math.sin(a))[..., None]
        t = (t - t.min()) / (t.max() - t.min() + 1e-6)
    elif kind == 2:  # stripes
        a, period = rng.uniform(0, math.pi), rng.uniform(6, 30)
        t = (0.5 + 0.5 * np.sin((xx * math.cos(a) + yy * math.sin(a)) * 2 * math.pi / period))[..., None]
    else:  # checkerboard
        cell = int(rng.integers(8, 32))
        t = (((xx // cell) + (yy // cell)) % 2)[..., None]
    t = np.clip(t, 0, 1)
    img = c1.astype(np.float32) * (1 - t) + c2.astype(np.float32) * t
    img += _noise(rng, img.shape, int(rng.integers(4, 21)))
    return np.clip(img, 0, 255).astype(np.uint8)


def _polygon(cls: int, cx: float, cy: float, r: float, angle: float, rng: np.random.Generator) -> np.ndarray | None:
    """Vertices ``[k, 2]`` (pixels) of a square / triangle / star of circumradius ``r``; None for circle."""
    if cls == 0:
        return None
    if cls == 1:
        t = angle + np.arange(4) * math.pi / 2 + math.pi / 4
        radii = np.full(4, r)
    elif cls == 2:
        t = angle + np.arange(3) * 2 * math.pi / 3 + rng.uniform(-0.15, 0.15, 3)
        radii = np.full(3, r)
    else:
        t = angle + np.arange(10) * math.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, r * rng.uniform(0.38, 0.5))
    return np.stack([cx + radii * np.cos(t), cy + radii * np.sin(t)], 1)


def _draw(target: np.ndarray, cls: int, geom: tuple, color, aa: bool) -> None:
    cx, cy, r, poly = geom
    line = cv2.LINE_AA if aa else cv2.LINE_8
    if cls == 0:
        cv2.circle(target, (round(cx * 2**SHIFT), round(cy * 2**SHIFT)), round(r * 2**SHIFT), color, -1, line, SHIFT)
    else:
        pts = np.round(poly * 2**SHIFT).astype(np.int32)[None]
        cv2.fillPoly(target, pts, color, line, SHIFT)


def _object_color(rng: np.random.Generator, under: np.ndarray) -> tuple[int, int, int]:
    """The most distinct of 8 random colours from the mean colour under the object."""
    mean = under.reshape(-1, 3).mean(0) if under.size else np.full(3, 128.0)
    cands = rng.uniform(0, 255, (8, 3))
    best = cands[np.abs(cands - mean).sum(1).argmax()]
    return tuple(int(v) for v in best)


def _distractors(rng: np.random.Generator, img: np.ndarray) -> None:
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(0, 4))):
        pts = np.stack([rng.uniform(0, w, 3), rng.uniform(0, h, 3)], 1).astype(np.int32)
        color = tuple(int(v) for v in rng.uniform(0, 255, 3))
        cv2.polylines(img, [pts], False, color, int(rng.integers(1, 4)), cv2.LINE_AA)


def make_image(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, float, float, float, float]]]:
    """One BGR image and its labels ``(class, x1, y1, x2, y2)`` in pixels (tight, unoccluded bounds)."""
    h, w = int(rng.integers(128, 257)), int(rng.integers(128, 257))
    img = _background(rng, h, w)
    _distractors(rng, img)
    owner = np.full((h, w), -1, np.int32)  # which object each pixel shows
    areas, labels = [], []
    for _ in range(int(rng.integers(1, 7))):
        for _attempt in range(20):
            cls = int(rng.integers(len(CLASSES)))
            r = rng.uniform(10, min(45, 0.3 * min(h, w)))
            cx, cy = rng.uniform(r * 0.6, w - r * 0.6), rng.uniform(r * 0.6, h - r * 0.6)
            geom = (cx, cy, r, _polygon(cls, cx, cy, r, rng.uniform(0, 2 * math.pi), rng))
            mask = np.zeros((h, w), np.uint8)
            _draw(mask, cls, geom, 1, aa=False)
            ys, xs = np.nonzero(mask)
            if len(xs) == 0 or xs.max() - xs.min() < 19 or ys.max() - ys.min() < 19:
                continue
            hidden = np.bincount(owner[mask > 0][owner[mask > 0] >= 0], minlength=len(areas))
            if len(areas) and (hidden / np.maximum(areas, 1)).max() > MAX_HIDDEN:
                continue
            color = _object_color(rng, img[mask > 0])
            _draw(img, cls, geom, color, aa=True)
            owner[mask > 0] = len(areas)
            areas.append(int(mask.sum()))
            labels.append((cls, float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)))
            break
    img = np.clip(img + _noise(rng, img.shape, int(rng.integers(0, 11))), 0, 255).astype(np.uint8)
    return img, labels


def make_shapes(out_dir: str | Path, n_train: int = 400, n_val: int = 100, seed: int = 0) -> Path:
    """Write the dataset under ``out_dir`` (see module docstring) and return it."""
    out_dir = Path(out_dir)
    for split_index, (split, n) in enumerate((("train", n_train), ("val", n_val))):
        img_dir, lab_dir = out_dir / "images" / split, out_dir / "labels" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        lab_dir.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, labels = make_image(np.random.default_rng([seed, split_index, i]))
            h, w = img.shape[:2]
            if not cv2.imwrite(str(img_dir / f"{i:05d}.jpg"), img, JPEG_PARAMS):
                raise OSError(f"could not write {img_dir / f'{i:05d}.jpg'}")
            lines = [f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
                     for c, x1, y1, x2, y2 in labels]
            (lab_dir / f"{i:05d}.txt").write_text("".join(line + "\n" for line in lines))
    return out_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", help="output folder (how a dataset YAML's download entry calls it)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "datasets" / "shapes"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train", type=int, default=400)
    ap.add_argument("--val", type=int, default=100)
    args = ap.parse_args()
    print(f"wrote {make_shapes(args.root or args.out, args.train, args.val, args.seed)}")


if __name__ == "__main__":
    main()
