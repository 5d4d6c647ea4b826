"""The one image decoder of the project: verification, training, test.py and detect.py all call it.

Rule: the EXIF orientation tag is APPLIED -- the pixels come out upright, as a photo viewer and
labelling tools (which show the image to the annotator) display them. This is what yolov5 does:
its loaders decode with OpenCV's default (which applies the tag) and its label check uses
``exif_size`` (the size after the tag), so YOLO labels are normalised to the upright image;
detectron2's ``read_image`` applies the tag to COCO images as well. A COCO JSON whose
``width`` / ``height`` are the stored (un-rotated) size therefore shows up in verification as a
``size_mismatch`` with swapped sides, named per image, instead of boxes on the wrong pixels.

OpenCV's ``imdecode`` applies the tag unless ``IMREAD_IGNORE_ORIENTATION`` is set (also for the
``IMREAD_REDUCED_*`` DCT-scaled decodes), the same transposition as Pillow's ``exif_transpose``.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10 decodes straight to RGB
_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}


def read_bytes(path: str | Path) -> np.ndarray:
    """The file's bytes as uint8 (works for non-ASCII paths, unlike ``cv2.imread``)."""
    return np.fromfile(str(path), np.uint8)


def decode_image(source: str | Path | np.ndarray, rgb: bool = False, reduce: int = 1) -> np.ndarray | None:
    """Decode a file (path) or its bytes to uint8 ``[H, W, 3]`` upright (EXIF orientation applied),
    BGR unless ``rgb``; ``reduce`` in {1, 2, 4, 8} lets the JPEG decoder downscale by that factor.
    None when the data cannot be decoded (grey and alpha images come out as 3 channels)."""
    data = source if isinstance(source, np.ndarray) else read_bytes(source)
    if data.size == 0:
        return None
    flags = _REDUCED[reduce]
    if rgb and _RGB is not None:
        flags = (flags & ~cv2.IMREAD_COLOR) | _RGB
    img = cv2.imdecode(data, flags)
    if img is None or not img.size:
        return None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if rgb and _RGB is None else img
