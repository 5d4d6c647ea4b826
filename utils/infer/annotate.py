"""Detections on an image: drawn (boxes and labels, OpenCV) and written (YOLO txt lines, COCO JSON).

Detections everywhere here are ``det`` arrays ``[k, 6]`` = ``(x1, y1, x2, y2, score, class)``
in pixels of the ORIGINAL image (what :func:`utils.ops.nms.non_max_suppression` followed by
:func:`utils.ops.nms.scale_boxes` gives). Images are OpenCV ``uint8 [H, W, 3]`` BGR.
"""
from __future__ import annotations

import colorsys
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence

import cv2
import numpy as np

GOLDEN = 0.618033988749895  # hue step: consecutive classes get well separated colours


@lru_cache(maxsize=None)
def class_color(cls: int) -> tuple[int, int, int]:
    """A stable, saturated BGR colour for a class index."""
    h = (0.11 + cls * GOLDEN) % 1.0
    s, v = (0.85, 0.95) if cls % 2 == 0 else (0.65, 0.80)
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return int(b * 255), int(g * 255), int(r * 255)


def _text_color(bg_bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light backgrounds, white on dark ones (ITU-R BT.601 luma)."""
    b, g, r = bg_bgr
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def draw_box(img: np.ndarray, box_xyxy: Sequence[float], label: str = "",
             color: tuple[int, int, int] = (0, 255, 0), thickness: int = 3) -> np.ndarray:
    """Draw one rectangle (and, if ``label``, a filled tag above it, or inside when at the top
    edge) on ``img`` in place; returns ``img``."""
    x1, y1, x2, y2 = (int(round(float(v))) for v in box_xyxy[:4])
    thickness = max(int(thickness), 1)
    cv2.rectangle(img, (x1, y1), (x2, y2), color, thickness, lineType=cv2.LINE_8)
    if label:
        scale = thickness / 3
        font_thick = max(thickness - 1, 1)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, font_thick)
        above = y1 - th - base - 2 >= 0
        top = y1 - th - base - 2 if above else y1
        cv2.rectangle(img, (x1, top), (x1 + tw + 2, top + th + base + 2), color, -1, lineType=cv2.LINE_8)
        cv2.putText(img, label, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, _text_color(color),
                    font_thick, lineType=cv2.LINE_AA)
    return img


def class_name(names: Sequence[str], cls: int) -> str:
    return names[cls] if 0 <= cls < len(names) else str(cls)


def annotate(img: np.ndarray, det: np.ndarray, names: Sequence[str], line_thickness: int = 3,
             hide_labels: bool = False, hide_conf: bool = False) -> np.ndarray:
    """Draw every detection of ``det`` ``[k, 6]`` on a copy of ``img``; lowest score first, so
    the strongest boxes end on top."""
    out = img.copy()
    for row in det[np.argsort(det[:, 4], kind="stable")] if len(det) else det:
        c = int(row[5])
        label = "" if hide_labels else class_name(names, c) + ("" if hide_conf else f" {row[4]:.2f}")
        draw_box(out, row[:4], label, class_color(c), line_thickness)
    return out


def count_per_class(det: np.ndarray, names: Sequence[str]) -> str:
    """``"2 car, 1 bus"`` in class-index order, or ``"no detections"``."""
    if not len(det):
        return "no detections"
    classes, counts = np.unique(det[:, 5].astype(int), return_counts=True)
    return ", ".join(f"{n} {class_name(names, int(c))}" for c, n in zip(classes, counts))


def yolo_label_lines(det: np.ndarray, shape_hw: tuple[int, int], save_conf: bool = False) -> list[str]:
    """YOLO txt lines ``cls cx cy w h [conf]`` normalised to the image ``(h, w)``."""
    h, w = shape_hw
    lines = []
    for x1, y1, x2, y2, score, c in det.tolist():
        vals = [(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]
        text = f"{int(c)} " + " ".join(f"{v:.6f}" for v in vals)
        lines.append(text + (f" {score:.6f}" if save_conf else ""))
    return lines


def coco_image_id(path: Path) -> int | str:
    """COCO ``image_id`` from a file name: the stem as an int when numeric (``000000000009.jpg``
    -> 9), else the stem."""
    return int(path.stem) if path.stem.isdigit() else path.stem


def coco_results(det: np.ndarray, image_id: int | str,
                 category_ids: Optional[Sequence[int]] = None) -> list[dict[str, Any]]:
    """COCO results entries ``{image_id, category_id, bbox: [x, y, w, h], score}``.

    ``category_ids[c]`` maps class index ``c`` to the dataset's category id (e.g. COCO's
    ``[4, 3, 6, 8]`` for motorcycle, car, bus, truck); without it the class index is used.
    """
    out = []
    for x1, y1, x2, y2, score, c in det.tolist():
        c = int(c)
        cat = int(category_ids[c]) if category_ids is not None and c < len(category_ids) else c
        out.append({"image_id": image_id, "category_id": cat,
                    "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                    "score": round(score, 5)})
    return out
