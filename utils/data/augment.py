"""Image + box augmentation: letterbox, mosaic, random affine/perspective, HSV, flips, MixUp.

Images are ``uint8 [H, W, 3]`` RGB arrays; boxes ``xyxy`` float32 ``[n, 4]`` in pixels of the
image they belong to; classes ``int64 [n]``. All randomness comes from an explicit
``numpy.random.Generator``; strengths come from the read-only :class:`utils.config.Hyp`.

Geometry is done with 3x3 matrices mapping input pixels to output pixels (pixel centres at
integer + 0.5 are not special-cased: OpenCV's warp and the box maths use the same mapping, so
boxes follow their pixels). A box is transformed by taking the bounding box of its four
transformed corners, then clipped to the output image and dropped when (thresholds below):

* its clipped width or height is below ``MIN_BOX_SIDE`` = 2 px, or
* less than ``MIN_AREA_KEPT`` = 10 % of its transformed (unclipped) area is inside the image, or
* its aspect ratio (long / short side) exceeds ``MAX_ASPECT`` = 100.

Mosaic (4 images) follows the yolov5 layout: each image (resized to long side ``s``) is placed
in a ``2s x 2s`` canvas around a random centre in ``[0.5 s, 1.5 s]^2``, then the random affine
maps the canvas centre to the output centre (output ``s x s``). Only the part of the canvas the
affine can see is assembled, and the whole geometric chain is ONE warp per sample.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from utils.config import Hyp

PAD_VALUE = 114        # grey fill of letterbox borders and mosaic gaps
MIN_BOX_SIDE = 2.0     # px, after augmentation
MIN_AREA_KEPT = 0.10   # fraction of a box's transformed area that must stay inside the image
MAX_ASPECT = 100.0     # long side / short side


# ---------------------------------------------------------------------------------- geometry
def translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], np.float64)


def random_affine_matrix(rng: np.random.Generator, hyp: Hyp, in_center: tuple[float, float],
                         out_size: tuple[int, int]) -> np.ndarray:
    """3x3 matrix: ``in_center`` -> (random) perspective, rotation + scale, shear, translation ->
    output. ``out_size`` is ``(w, h)``. With all strengths 0 it maps ``in_center`` to the output centre."""
    w, h = out_size
    c = translation(-in_center[0], -in_center[1])
    p = np.eye(3)
    p[2, 0] = rng.uniform(-hyp.perspective, hyp.perspective)
    p[2, 1] = rng.uniform(-hyp.perspective, hyp.perspective)
    angle = math.radians(rng.uniform(-hyp.degrees, hyp.degrees))
    scale = rng.uniform(1 - hyp.scale, 1 + hyp.scale)
    r = np.eye(3)
    r[:2, :2] = scale * np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    s = np.eye(3)
    s[0, 1] = math.tan(math.radians(rng.uniform(-hyp.shear, hyp.shear)))
    s[1, 0] = math.tan(math.radians(rng.uniform(-hyp.shear, hyp.shear)))
    t = translation(rng.uniform(0.5 - hyp.translate, 0.5 + hyp.translate) * w,
                    rng.uniform(0.5 - hyp.translate, 0.5 + hyp.translate) * h)
    return t @ s @ r @ p @ c


def transform_points(points_xy: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``[k, 2]`` points through the 3x3 matrix ``m`` (with the perspective divide)."""
    xyz = np.concatenate([points_xy, np.ones((len(points_xy), 1))], 1) @ m.T
    return xyz[:, :2] / xyz[:, 2:3]


def transform_boxes(boxes_xyxy: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Bounding boxes ``[n, 4]`` of the transformed corners of ``boxes_xyxy`` (not clipped)."""
    if len(boxes_xyxy) == 0:
        return np.zeros((0, 4), np.float32)
    b = boxes_xyxy.astype(np.float64)
    corners = np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [0, 3]], b[:, [2, 3]]], 1).reshape(-1, 2)
    xy = transform_points(corners, m).reshape(-1, 4, 2)
    return np.concatenate([xy.min(1), xy.max(1)], 1).astype(np.float32)


def clip_and_filter(boxes_xyxy: np.ndarray, classes: np.ndarray, size_wh: tuple[int, int]):
    """Clip to ``[0, w] x [0, h]`` and drop boxes by the module's thresholds."""
    w, h = size_wh
    clipped = boxes_xyxy.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, w)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, h)
    bw, bh = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    full = (boxes_xyxy[:, 2] - boxes_xyxy[:, 0]) * (boxes_xyxy[:, 3] - boxes_xyxy[:, 1])
    aspect = np.maximum(bw / (bh + 1e-9), bh / (bw + 1e-9))
    keep = (bw >= MIN_BOX_SIDE) & (bh >= MIN_BOX_SIDE) & (bw * bh >= MIN_AREA_KEPT * full) & (aspect <= MAX_ASPECT)
    return clipped[keep], classes[keep]


def is_axis_aligned(m: np.ndarray) -> bool:
    """True when ``m`` only scales and translates (no rotation, shear or perspective)."""
    return m[0, 1] == 0 and m[1, 0] == 0 and m[2, 0] == 0 and m[2, 1] == 0 and m[2, 2] == 1


def warp(img: np.ndarray, m: np.ndarray, out_size: tuple[int, int], fill: int = PAD_VALUE):
    """Warp ``img`` with ``m`` (3x3, input -> output pixels) into ``out_size`` ``(w, h)``.

    Returns ``(out, m_used)``. A scale + translation is done as a crop + ``cv2.resize`` + paste
    (about 3x faster than ``warpAffine``) whose integer-snapped end points change the scale by
    less than one pixel over the image: ``m_used`` is that exact mapping, to transform the boxes.
    """
    w, h = out_size
    if not is_axis_aligned(m):
        border = dict(borderMode=cv2.BORDER_CONSTANT, borderValue=(fill, fill, fill))
        if np.allclose(m[2], [0, 0, 1]):
            return cv2.warpAffine(img, m[:2], out_size, flags=cv2.INTER_LINEAR, **border), m
        return cv2.warpPerspective(img, m, out_size, flags=cv2.INTER_LINEAR, **border), m
    a, b, tx, ty = m[0, 0], m[1, 1], m[0, 2], m[1, 2]
    # source pixels that land inside the output, as an integer rectangle
    sx0, sx1 = max(0, math.floor(-tx / a)), min(img.shape[1], math.ceil((w - tx) / a))
    sy0, sy1 = max(0, math.floor(-ty / b)), min(img.shape[0], math.ceil((h - ty) / b))
    out = np.full((h, w, img.shape[2]), fill, np.uint8)
    if sx1 <= sx0 or sy1 <= sy0:
        return out, m
    dx0, dx1 = round(a * sx0 + tx), round(a * sx1 + tx)
    dy0, dy1 = round(b * sy0 + ty), round(b * sy1 + ty)
    if dx1 <= dx0 or dy1 <= dy0:
        return out, m
    crop = img[sy0:sy1, sx0:sx1]
    if (dx1 - dx0, dy1 - dy0) != (sx1 - sx0, sy1 - sy0):
        crop = cv2.resize(crop, (dx1 - dx0, dy1 - dy0), interpolation=cv2.INTER_LINEAR)
    a2, b2 = (dx1 - dx0) / (sx1 - sx0), (dy1 - dy0) / (sy1 - sy0)
    m_used = np.array([[a2, 0, dx0 - a2 * sx0], [0, b2, dy0 - b2 * sy0], [0, 0, 1]])
    return paste(out, crop, dx0, dy0), m_used


def paste(canvas: np.ndarray, img: np.ndarray, x: int, y: int) -> np.ndarray:
    """Copy ``img`` into ``canvas`` with its top-left corner at ``(x, y)`` (cropped at the edges)."""
    h, w = canvas.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + img.shape[1], w), min(y + img.shape[0], h)
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = img[y0 - y:y1 - y, x0 - x:x1 - x]
    return canvas


# ---------------------------------------------------------------------------------- letterbox
def letterbox(img: np.ndarray, new_shape: int | tuple[int, int], fill: int = PAD_VALUE, scaleup: bool = True,
              auto: bool = False, stride: int = 32):
    """Resize keeping the aspect ratio, then pad to ``new_shape`` ``(h, w)`` (int: square).

    Returns ``(img, (ratio_h, ratio_w), (pad_w, pad_h))`` such that a point maps as
    ``x' = x * ratio_w + pad_w``, ``y' = y * ratio_h + pad_h``. ``auto``: pad only up to the next
    multiple of ``stride``. ``scaleup=False``: never enlarge.
    """
    h0, w0 = img.shape[:2]
    th, tw = (new_shape, new_shape) if isinstance(new_shape, int) else new_shape
    r = min(th / h0, tw / w0)
    if not scaleup:
        r = min(r, 1.0)
    w1, h1 = max(1, round(w0 * r)), max(1, round(h0 * r))
    if (w1, h1) != (w0, h0):
        img = cv2.resize(img, (w1, h1), interpolation=cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR)
    dw, dh = tw - w1, th - h1
    if auto:
        dw, dh = dw % stride, dh % stride
    left, top = dw // 2, dh // 2
    if dw or dh:
        img = cv2.copyMakeBorder(img, top, dh - top, left, dw - left, cv2.BORDER_CONSTANT,
                                 value=(fill, fill, fill))
    return img, (h1 / h0, w1 / w0), (left, top)


def letterbox_boxes(boxes_xyxy: np.ndarray, ratio_hw: tuple[float, float], pad_wh: tuple[float, float]) -> np.ndarray:
    """Map original-pixel boxes into the letterboxed image (see :func:`letterbox`)."""
    out = boxes_xyxy.astype(np.float32).copy()
    out[:, [0, 2]] = out[:, [0, 2]] * ratio_hw[1] + pad_wh[0]
    out[:, [1, 3]] = out[:, [1, 3]] * ratio_hw[0] + pad_wh[1]
    return out


# ---------------------------------------------------------------------------------- affine / mosaic
def random_affine(img: np.ndarray, boxes_xyxy: np.ndarray, classes: np.ndarray, hyp: Hyp,
                  rng: np.random.Generator, out_size: tuple[int, int] | None = None):
    """Random perspective/rotation/scale/shear/translation of one image about its centre.
    ``out_size`` ``(w, h)`` defaults to the input size. Returns ``(img, boxes, classes)``."""
    h, w = img.shape[:2]
    out_size = out_size or (w, h)
    m = random_affine_matrix(rng, hyp, (w / 2, h / 2), out_size)
    out, m = warp(img, m, out_size)
    boxes, classes = clip_and_filter(transform_boxes(boxes_xyxy, m), classes, out_size)
    return out, boxes, classes


def mosaic_placements(shapes_hw: list[tuple[int, int]], center_xy: tuple[int, int]) -> list[tuple[int, int]]:
    """Top-left canvas positions of 4 images around ``center_xy`` (top-left, top-right, bottom-left,
    bottom-right quadrants; each image touches the centre with one corner)."""
    xc, yc = center_xy
    (h0, w0), (h1, w1), (h2, w2), (h3, w3) = shapes_hw
    return [(xc - w0, yc - h0), (xc, yc - h1), (xc - w2, yc), (xc, yc)]


def _visible_region(m: np.ndarray, out_size: tuple[int, int], canvas_wh: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer canvas rectangle (x0, y0, x1, y1) that the output of ``m`` can sample (+1 px margin)."""
    w, h = out_size
    corners = transform_points(np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64), np.linalg.inv(m))
    x0, y0 = np.floor(corners.min(0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 2
    return max(x0, 0), max(y0, 0), min(x1, canvas_wh[0]), min(y1, canvas_wh[1])


@dataclass
class MosaicPlan:
    """Where 4 images go in the ``2s x 2s`` canvas and which canvas part the output sees."""

    size: int
    center: tuple[int, int]
    places: list[tuple[int, int]]             # top-left canvas corner of each image
    quads: list[tuple[int, int, int, int]]    # the canvas quadrant each image may fill
    matrix: np.ndarray                        # 3x3 canvas -> output
    region: tuple[int, int, int, int]         # visible canvas rectangle (x0, y0, x1, y1)

    def visible(self, k: int, shape_hw: tuple[int, int]) -> bool:
        """Whether image ``k`` (of that shape) shows at all; invisible ones need not be decoded."""
        x0, y0, x1, y1 = self.region
        qx0, qy0, qx1, qy1 = self.quads[k]
        px, py = self.places[k]
        return (min(qx1, x1, px + shape_hw[1]) > max(qx0, x0, px)
                and min(qy1, y1, py + shape_hw[0]) > max(qy0, y0, py))


def mosaic_plan(shapes_hw: list[tuple[int, int]], size: int, hyp: Hyp, rng: np.random.Generator) -> MosaicPlan:
    """Random centre in ``[0.5 s, 1.5 s]^2`` + random affine for the 4 images of the given shapes
    (each already resized to long side ``size``)."""
    s = size
    center = (int(rng.uniform(0.5 * s, 1.5 * s)), int(rng.uniform(0.5 * s, 1.5 * s)))
    places = mosaic_placements(shapes_hw, center)
    quads = [(0, 0, center[0], center[1]), (center[0], 0, 2 * s, center[1]),
             (0, center[1], center[0], 2 * s), (center[0], center[1], 2 * s, 2 * s)]
    m = random_affine_matrix(rng, hyp, (s, s), (s, s))
    return MosaicPlan(s, center, places, quads, m, _visible_region(m, (s, s), (2 * s, 2 * s)))


def mosaic_compose(plan: MosaicPlan, images: list[np.ndarray | None], boxes: list[np.ndarray],
                   classes: list[np.ndarray]):
    """Assemble the visible canvas part and warp it once -> ``(img [s, s, 3], boxes_xyxy, classes)``.
    ``images[k]`` may be ``None`` when ``plan.visible(k, ...)`` is False."""
    s = plan.size
    x0, y0, x1, y1 = plan.region
    region = np.full((max(y1 - y0, 1), max(x1 - x0, 1), 3), PAD_VALUE, np.uint8)
    all_boxes, all_cls = [np.zeros((0, 4), np.float32)], [np.zeros(0, np.int64)]
    for img, b, c, (px, py), (qx0, qy0, qx1, qy1) in zip(images, boxes, classes, plan.places, plan.quads):
        if img is None:
            continue
        # the part of this image inside its quadrant AND the visible region, in image pixels
        ix0, iy0 = max(qx0, x0, px) - px, max(qy0, y0, py) - py
        ix1, iy1 = min(qx1, x1, px + img.shape[1]) - px, min(qy1, y1, py + img.shape[0]) - py
        if ix1 > ix0 and iy1 > iy0:
            region[py + iy0 - y0:py + iy1 - y0, px + ix0 - x0:px + ix1 - x0] = img[iy0:iy1, ix0:ix1]
        # boxes are cropped to the image's quadrant (as pasting into the canvas does) before the affine
        cb = b.astype(np.float32) + np.array([px, py, px, py], np.float32)
        cb[:, [0, 2]] = cb[:, [0, 2]].clip(max(qx0, px), min(qx1, px + img.shape[1]))
        cb[:, [1, 3]] = cb[:, [1, 3]].clip(max(qy0, py), min(qy1, py + img.shape[0]))
        ok = (cb[:, 2] > cb[:, 0]) & (cb[:, 3] > cb[:, 1])
        all_boxes.append(cb[ok])
        all_cls.append(np.asarray(c)[ok])
    out, m_used = warp(region, plan.matrix @ translation(x0, y0), (s, s))
    canvas_to_out = m_used @ translation(-x0, -y0)
    out_boxes, out_cls = clip_and_filter(transform_boxes(np.concatenate(all_boxes), canvas_to_out),
                                         np.concatenate(all_cls), (s, s))
    return out, out_boxes, out_cls


# ---------------------------------------------------------------------------------- photometric / flips
def augment_hsv(img: np.ndarray, rng: np.random.Generator, hgain: float, sgain: float, vgain: float) -> np.ndarray:
    """Random hue shift (fraction of the circle) and saturation / value gains via one 3-channel
    lookup table in HSV space (OpenCV 8-bit hue is 0..179). Returns a new RGB image; the input
    itself when all gains are 0."""
    if not (hgain or sgain or vgain):
        return img
    r = rng.uniform(-1, 1, 3) * (hgain, sgain, vgain) + 1
    x = np.arange(256, dtype=np.float32)
    lut = np.stack([(x * r[0]) % 180, np.clip(x * r[1], 0, 255), np.clip(x * r[2], 0, 255)], 1)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hsv = cv2.LUT(hsv, lut.astype(np.uint8).reshape(1, 256, 3))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def flip_lr(img: np.ndarray, boxes_xyxy: np.ndarray):
    """Mirror left-right: ``x -> w - x``."""
    w = img.shape[1]
    out = boxes_xyxy.copy()
    out[:, [0, 2]] = w - boxes_xyxy[:, [2, 0]]
    return cv2.flip(img, 1), out


def flip_ud(img: np.ndarray, boxes_xyxy: np.ndarray):
    """Mirror top-bottom: ``y -> h - y``."""
    h = img.shape[0]
    out = boxes_xyxy.copy()
    out[:, [1, 3]] = h - boxes_xyxy[:, [3, 1]]
    return cv2.flip(img, 0), out


def mixup(img1: np.ndarray, boxes1: np.ndarray, cls1: np.ndarray, img2: np.ndarray, boxes2: np.ndarray,
          cls2: np.ndarray, rng: np.random.Generator):
    """Blend two same-size images with ratio ~ Beta(32, 32); the boxes of both are kept."""
    r = rng.beta(32.0, 32.0)
    img = cv2.addWeighted(img1, r, img2, 1 - r, 0.0)
    return img, np.concatenate([boxes1, boxes2]), np.concatenate([cls1, cls2])
