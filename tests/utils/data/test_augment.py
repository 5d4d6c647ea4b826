"""Augmentations keep boxes on their pixels; hand-checked letterbox numbers and drop thresholds."""
import dataclasses

import cv2
import numpy as np
import pytest

from utils.data.augment import (PAD_VALUE, augment_hsv, clip_and_filter, flip_lr, flip_ud, letterbox, letterbox_boxes,
                                mixup, mosaic_compose, mosaic_plan, random_affine, warp)
from utils.config import Hyp

COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255), (255, 255, 255),
          (255, 128, 0), (128, 0, 255), (0, 128, 64), (128, 255, 128), (64, 64, 255)]
BG = (30, 30, 30)
NO_COLOR = Hyp(hsv_h=0.0, hsv_s=0.0, hsv_v=0.0)


def mosaic4(images, boxes, classes, size, hyp, rng):
    """The loader's mosaic (utils/data/loader.py: mosaic_plan, then mosaic_compose) with every image given."""
    plan = mosaic_plan([im.shape[:2] for im in images], size, hyp, rng)
    return mosaic_compose(plan, images, boxes, classes)


def drawn(h, w, boxes, colors):
    img = np.full((h, w, 3), BG, np.uint8)
    for (x1, y1, x2, y2), c in zip(boxes, colors):
        cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), c, -1)  # fills pixels x1..x2-1 -> box [x1, x2)
    return img, np.array(boxes, np.float32)


def colour_map(img):
    """Per pixel, the index of the test colour covering at least half of it (-1: none): the pixel
    is best explained as ``alpha * colour + (1 - alpha) * base`` with ``alpha >= 0.5``, base being
    the background or the grey fill (interpolated edges thus count when half covered)."""
    p = img.astype(np.float32)[:, :, None, None, :]                              # [H, W, 1, 1, 3]
    cols = np.array(COLORS, np.float32)[None, None, :, None, :]                  # [1, 1, K, 1, 3]
    bases = np.array([BG, (PAD_VALUE,) * 3], np.float32)[None, None, None, :, :]  # [1, 1, 1, 2, 3]
    d = cols - bases
    alpha = np.clip(((p - bases) * d).sum(-1) / (d * d).sum(-1), 0, 1)           # [H, W, K, 2]
    resid = np.abs(p - (bases + alpha[..., None] * d)).sum(-1)
    best = resid.argmin(3)[..., None]
    resid, alpha = np.take_along_axis(resid, best, 3)[..., 0], np.take_along_axis(alpha, best, 3)[..., 0]
    k = resid.argmin(2)
    ok = (np.take_along_axis(alpha, k[..., None], 2)[..., 0] >= 0.5) & (resid.min(2) < 40)
    return np.where(ok, k, -1)


def pixel_box(labels, k):
    ys, xs = np.nonzero(labels == k)
    return None if len(xs) == 0 else np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def assert_boxes_on_pixels(img, boxes, classes, rotated=False):
    """Axis-aligned transforms: every box edge within 1 px of its colour's pixels. Rotation/shear:
    IoU >= 0.9 with the pixels for boxes inside the image (a rotated box cut by the border is the
    bounding box of the whole rotated rectangle, then clipped: it must contain the pixels)."""
    assert len(boxes) > 0
    labels = colour_map(img)
    h, w = img.shape[:2]
    for b, c in zip(boxes, classes):
        pb = pixel_box(labels, c)
        assert pb is not None, f"box of colour {COLORS[c]} has no pixels"
        if not rotated:
            assert np.abs(b - pb).max() <= 1.0, (b, pb)
        elif b[0] > 0 and b[1] > 0 and b[2] < w and b[3] < h:
            assert iou(b, pb) >= 0.9, (b, pb)
        else:
            assert (pb[:2] >= b[:2] - 1).all() and (pb[2:] <= b[2:] + 1).all(), (b, pb)


def test_letterbox_numbers():
    img = np.zeros((50, 100, 3), np.uint8)  # h=50, w=100 -> 64 square: ratio 0.64, 64x32, pads 16 top/bottom
    out, ratio, pad = letterbox(img, 64)
    assert out.shape == (64, 64, 3) and ratio == (0.64, 0.64) and pad == (0, 16)
    assert (out[:16] == PAD_VALUE).all() and (out[48:] == PAD_VALUE).all() and (out[16:48] == 0).all()
    np.testing.assert_allclose(letterbox_boxes(np.array([[10, 10, 50, 30]]), ratio, pad), [[6.4, 22.4, 32, 35.2]])
    out, ratio, pad = letterbox(img, (64, 128), scaleup=False)  # never enlarge: 100x50 centred in 128x64
    assert out.shape == (64, 128, 3) and ratio == (1.0, 1.0) and pad == (14, 7)


def test_letterbox_keeps_boxes_on_pixels():
    img, boxes = drawn(90, 120, [(10, 10, 40, 30), (60, 40, 110, 85), (5, 50, 25, 88)], COLORS[:3])
    out, ratio, pad = letterbox(img, (96, 96))
    assert_boxes_on_pixels(out, letterbox_boxes(boxes, ratio, pad), [0, 1, 2])


@pytest.mark.parametrize("changes", [dict(degrees=0.0, shear=0.0), dict(degrees=30.0, shear=5.0),
                                     dict(degrees=10.0, perspective=0.0005)])
def test_random_affine_keeps_boxes_on_pixels(changes):
    hyp = dataclasses.replace(NO_COLOR, translate=0.1, scale=0.3, **changes)
    img, boxes = drawn(96, 128, [(10, 12, 50, 40), (70, 30, 118, 80), (30, 55, 60, 90)], COLORS[:3])
    for seed in range(5):
        out, b, c = random_affine(img, boxes, np.arange(3), hyp, np.random.default_rng(seed))
        assert out.shape == img.shape
        assert_boxes_on_pixels(out, b, c, rotated=bool(changes.get("degrees")))


def test_fast_warp_is_exact_for_scale_and_translation():
    img, boxes = drawn(40, 60, [(10, 10, 30, 20)], COLORS[:1])
    m = np.array([[2.0, 0, 5], [0, 2.0, 3], [0, 0, 1]])
    out, m_used = warp(img, m, (128, 96))
    np.testing.assert_allclose(m_used, m)
    assert (pixel_box(colour_map(out), 0) == [25, 23, 65, 43]).all()
    assert (out[:3] == PAD_VALUE).all() and (out[:, :5] == PAD_VALUE).all()


def test_flips_keep_boxes_on_pixels():
    img, boxes = drawn(64, 80, [(5, 6, 30, 20), (40, 30, 75, 60)], COLORS[:2])
    out, b = flip_lr(img, boxes)
    np.testing.assert_allclose(b[0], [50, 6, 75, 20])
    assert_boxes_on_pixels(out, b, [0, 1])
    out, b = flip_ud(img, boxes)
    np.testing.assert_allclose(b[0], [5, 44, 30, 58])
    assert_boxes_on_pixels(out, b, [0, 1])


@pytest.mark.parametrize("changes", [dict(), dict(degrees=20.0, shear=3.0)])
def test_mosaic_keeps_boxes_on_pixels(changes):
    hyp = dataclasses.replace(NO_COLOR, translate=0.1, scale=0.5, **changes)
    images, boxes, classes = [], [], []
    for k in range(4):  # 4 images (long side 64) with 3 boxes each, 12 distinct colours
        ids = [3 * k, 3 * k + 1, 3 * k + 2]
        img, b = drawn(48 if k % 2 else 64, 64, [(4, 4, 24, 20), (30, 10, 60, 40), (10, 30, 28, 46)],
                       [COLORS[i] for i in ids])
        images.append(img)
        boxes.append(b)
        classes.append(np.array(ids))
    seen = 0
    for seed in range(8):
        out, b, c = mosaic4(images, boxes, classes, 64, hyp, np.random.default_rng(seed))
        assert out.shape == (64, 64, 3)
        assert_boxes_on_pixels(out, b, c, rotated=bool(changes))
        seen += len(b)
    assert seen >= 20  # most boxes survive


def test_clip_and_filter_thresholds():
    boxes = np.array([[-90, 0, 10, 50],     # 10 % inside -> kept (area rule is >= 10 %)
                      [-95, 0, 5, 50],      # 5 % inside -> dropped
                      [10, 10, 11.5, 40],   # 1.5 px wide -> dropped
                      [10, 10, 40, 40],     # kept as is
                      [0, 0, 100, 0.9]], np.float32)  # 0.9 px high -> dropped
    out, cls = clip_and_filter(boxes, np.arange(5), (100, 100))
    assert cls.tolist() == [0, 3]
    np.testing.assert_allclose(out, [[0, 0, 10, 50], [10, 10, 40, 40]])


def test_hsv_value_gain_by_hand():
    img = np.full((4, 4, 3), (100, 50, 50), np.uint8)  # RGB; OpenCV HSV: V = 100
    rng = np.random.default_rng(0)
    gains = np.random.default_rng(0).uniform(-1, 1, 3) * (0, 0, 0.4) + 1
    out = augment_hsv(img, rng, 0.0, 0.0, 0.4)
    assert abs(int(out[0, 0, 0]) - int(100 * gains[2])) <= 1  # the max channel carries V
    assert (augment_hsv(img, rng, 0, 0, 0) == img).all()


def test_mixup_blends_and_keeps_all_boxes():
    a, b = np.full((8, 8, 3), 0, np.uint8), np.full((8, 8, 3), 200, np.uint8)
    r = np.random.default_rng(3).beta(32.0, 32.0)
    img, boxes, cls = mixup(a, np.zeros((1, 4), np.float32), np.array([0]), b, np.ones((2, 4), np.float32),
                            np.array([1, 1]), np.random.default_rng(3))
    assert abs(int(img[0, 0, 0]) - round(200 * (1 - r))) <= 1
    assert len(boxes) == 3 and cls.tolist() == [0, 1, 1]
