"""The shape of a COCO detection JSON, checked once where the file is read.

Required (as pycocotools' ``COCO`` and ``COCOeval`` use them)::

    {"images":      [{"id": int, "file_name": str, "width": int >= 0, "height": int >= 0}, ...],
     "categories":  [{"id": int, "name": str}, ...],
     "annotations": [{"id": int, "image_id": int, "category_id": int, "bbox": [x, y, w, h],
                      "iscrowd": 0 | 1, "area": number}, ...]}

``width`` / ``height`` may be absent (0 = take them from the image); ``iscrowd`` and ``area`` may
be absent. An annotation's ``bbox`` is checked per annotation by the reader (a bad one skips its
image with a warning), everything else here: the first violation is a :class:`ConfigError`
naming the file, the list and the entry (``images[3] (id 17)``), so nothing downstream meets a
missing key or a string where a number belongs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from utils.config import ConfigError

REQUIRED_LISTS = ("images", "categories", "annotations")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _entry(json_path: Path, key: str, k: int, item: Any) -> str:
    ident = f" (id {item['id']!r})" if isinstance(item, dict) and "id" in item else ""
    return f"{json_path}: {key}[{k}]{ident}"


def _object_with_id(json_path: Path, key: str, k: int, item: Any) -> str:
    """Entry ``k`` of ``key`` must be an object with an integer 'id'; returns where it is, for messages."""
    where = _entry(json_path, key, k, item)
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected an object, got {type(item).__name__}")
    if not _is_int(item.get("id")):
        raise ConfigError(f"{where}: 'id' must be an integer, got {item.get('id')!r}")
    return where


def _check_image(json_path: Path, k: int, im: Any) -> None:
    where = _object_with_id(json_path, "images", k, im)
    if not isinstance(im.get("file_name"), str) or not im["file_name"].strip():
        raise ConfigError(f"{where}: 'file_name' must be a non-empty string, got {im.get('file_name')!r}")
    for key in ("width", "height"):
        if key in im and not (_is_int(im[key]) and im[key] >= 0):
            raise ConfigError(f"{where}: '{key}' must be a non-negative integer (pixels), got {im[key]!r}")


def _check_category(json_path: Path, k: int, cat: Any) -> None:
    where = _object_with_id(json_path, "categories", k, cat)
    if not isinstance(cat.get("name"), str) or not cat["name"]:
        raise ConfigError(f"{where}: 'name' must be a non-empty string, got {cat.get('name')!r}")


def _check_annotation(json_path: Path, k: int, ann: Any) -> None:
    where = _object_with_id(json_path, "annotations", k, ann)
    for key in ("image_id", "category_id"):
        if not _is_int(ann.get(key)):
            raise ConfigError(f"{where}: '{key}' must be an integer, got {ann.get(key)!r}")
    if "iscrowd" in ann and ann["iscrowd"] not in (0, 1):
        raise ConfigError(f"{where}: 'iscrowd' must be 0 or 1, got {ann['iscrowd']!r}")
    if "area" in ann and not (_is_number(ann["area"]) and ann["area"] >= 0):
        raise ConfigError(f"{where}: 'area' must be a non-negative number, got {ann['area']!r}")


def _check_unique(json_path: Path, key: str, items: list[dict], field: str) -> None:
    seen: dict[Any, int] = {}
    for k, item in enumerate(items):
        v = item[field]
        if v in seen:
            raise ConfigError(f"{json_path}: {key}[{k}] repeats {field} {v!r} of {key}[{seen[v]}]")
        seen[v] = k


def validate_coco(data: Any, json_path: str | Path) -> None:
    """Raise ConfigError at the first entry of ``data`` (a parsed COCO JSON) that breaks the schema."""
    json_path = Path(json_path)
    if not isinstance(data, dict):
        raise ConfigError(f"{json_path}: a COCO JSON must be an object with 'images', 'categories' and "
                          f"'annotations', got a {type(data).__name__}")
    for key in REQUIRED_LISTS:
        if key not in data:
            hint = ' (write "annotations": [] for a split without boxes)' if key == "annotations" else ""
            raise ConfigError(f"{json_path}: key '{key}' is missing{hint}")
        if not isinstance(data[key], list):
            raise ConfigError(f"{json_path}: key '{key}' must be a list, got {type(data[key]).__name__}")
    checks = {"images": _check_image, "categories": _check_category, "annotations": _check_annotation}
    for key, check in checks.items():
        for k, item in enumerate(data[key]):
            check(json_path, k, item)
    _check_unique(json_path, "images", data["images"], "id")
    _check_unique(json_path, "categories", data["categories"], "id")
    _check_unique(json_path, "categories", data["categories"], "name")
