"""Inference inputs: turn a ``--source`` string into files, then into frames; numbered run folders.

A source is one of

* an image file or a video file (by extension, :data:`IMAGE_EXTS` / :data:`VIDEO_EXTS`);
* a folder: its images and videos (not recursive), sorted by name;
* a glob pattern (``data/*.jpg``, ``imgs/**/*.png``), sorted;
* a list file ``*.txt``: one image or video path per line, relative paths taken from the list
  file's folder; blank lines and lines starting with ``#`` are ignored.

Anything that names nothing (missing path, empty folder, glob without a match, a list line whose
file is missing) raises :class:`SourceError` with the path or the list line. A file that exists
but cannot be decoded is NOT an error here: :func:`iter_frames` yields it with ``image=None`` so
the caller can warn, skip and count it.
"""
from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np

from utils.data.image_io import decode_image

IMAGE_EXTS = (".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpeg", ".mpg", ".wmv", ".asf", ".gif", ".ts")
GLOB_CHARS = re.compile(r"[*?\[]")


class SourceError(ValueError):
    """A ``--source`` that names no readable input; the message names the path or list line."""


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTS


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTS


def _media_in(paths: list[Path]) -> list[Path]:
    return [p for p in paths if p.is_file() and (is_image(p) or is_video(p))]


def _read_list_file(list_file: Path) -> list[Path]:
    """Paths listed one per line; a missing entry is an error naming ``file:line``."""
    out: list[Path] = []
    for n, line in enumerate(list_file.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line).expanduser()
        p = p if p.is_absolute() else list_file.parent / p
        if not p.is_file():
            raise SourceError(f"{list_file}:{n}: listed file not found: {line}")
        if not (is_image(p) or is_video(p)):
            raise SourceError(f"{list_file}:{n}: not an image or video extension: {line} "
                              f"(images {', '.join(IMAGE_EXTS)}; videos {', '.join(VIDEO_EXTS)})")
        out.append(p)
    if not out:
        raise SourceError(f"{list_file}: list file names no images or videos")
    return out


def resolve_source(source: str | Path) -> list[Path]:
    """``--source`` -> the image and video files it names, in order (see module docstring)."""
    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        files = _media_in(sorted(path.iterdir()))
        if not files:
            raise SourceError(f"source folder {path} holds no images or videos "
                              f"(images {', '.join(IMAGE_EXTS)}; videos {', '.join(VIDEO_EXTS)})")
        return files
    if path.is_file():
        if path.suffix.lower() == ".txt":
            return _read_list_file(path)
        if not (is_image(path) or is_video(path)):
            raise SourceError(f"source {path}: unknown file type '{path.suffix}' (expected an image, a video "
                              f"or a .txt list of paths)")
        return [path]
    if GLOB_CHARS.search(text):
        files = _media_in([Path(p) for p in sorted(glob.glob(text, recursive=True))])
        if not files:
            raise SourceError(f"source pattern {text} matches no images or videos")
        return files
    raise SourceError(f"source not found: {text}")


@dataclass
class Frame:
    """One image or one video frame, as OpenCV reads it.

    ``image`` is ``uint8 [H, W, 3]`` BGR, or None when the file could not be decoded.
    For videos ``frame`` counts from 1 and ``n_frames`` is the container's frame count (0 when
    unknown); for images both are 0.
    """
    path: Path
    image: Optional[np.ndarray]
    is_video: bool = False
    frame: int = 0
    n_frames: int = 0
    fps: float = 0.0


def read_image(path: Path) -> Optional[np.ndarray]:
    """BGR ``uint8 [H, W, 3]`` upright (EXIF orientation applied, the one rule of
    :mod:`utils.data.image_io`), or None when the file cannot be decoded (grey/alpha -> BGR)."""
    return decode_image(path)


def _video_frames(path: Path) -> Iterator[Frame]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        yield Frame(path, None, is_video=True)
        return
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    i = 0
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                break
            i += 1
            yield Frame(path, img, is_video=True, frame=i, n_frames=n, fps=fps)
    finally:
        cap.release()
    if i == 0:
        yield Frame(path, None, is_video=True)


def iter_frames(files: list[Path]) -> Iterator[Frame]:
    """Every image, then every frame of every video, in the order of ``files``."""
    for path in files:
        if is_video(path):
            yield from _video_frames(path)
        else:
            yield Frame(path, read_image(path))
