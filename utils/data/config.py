"""Dataset YAML: loading, validation and the consented download step.

Keys (yolov5-compatible, plus ``format``, ``*_annotations`` and ``labels``)::

    path: ../datasets/coco   # dataset root; a relative path resolves against the YAML's folder
    format: coco             # coco | yolo | voc | imagefolder (classification; inferred when absent)
    train: images/train2017  # image folder, list file, or a list of either (relative to path)
    val: images/val2017
    test: ...                # optional
    train_annotations: annotations/instances_train2017.json   # coco only, one per split
    val_annotations: annotations/instances_val2017.json
    names: [car, bus]        # class names (coco/voc: keep only these categories, in this order;
                             # absent: all categories, COCO in ascending category id, VOC sorted)
    nc: 2                    # optional, must equal len(names)
    labels: labels           # yolo only: folder name that replaces the last "images" path part
    download: data/scripts/get_coco.sh   # optional script (.sh/.py) or URL, run only with consent
                                         # (train.py --download; see utils/data/downloads.py)

Every problem raises :class:`utils.config.ConfigError` naming the YAML file and the key.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from utils.config import ConfigError, read_yaml
from utils.data.downloads import DownloadError, describe, may_download, run_download

LOGGER = logging.getLogger(__name__)

FORMATS = ("coco", "yolo", "voc", "imagefolder")   # imagefolder: classification, <split>/<class>/*.jpg
SPLITS = ("train", "val", "test")
KNOWN_KEYS = {"path", "format", "names", "nc", "download", "labels", *SPLITS, *(f"{s}_annotations" for s in SPLITS)}


@dataclass(frozen=True)
class DataConfig:
    """A validated dataset YAML. Paths are absolute; ``splits`` maps split -> its sources."""

    yaml_path: Path
    root: Path
    format: str
    splits: dict[str, tuple[Path, ...]]
    annotations: dict[str, Path]
    names: tuple[str, ...] | None
    labels: str = "labels"
    download: str | None = None

    def sources(self, split: str) -> tuple[Path, ...]:
        """The image folders / list files of ``split``; ConfigError when the YAML has no such key."""
        if split not in self.splits:
            raise ConfigError(f"{self.yaml_path}: key '{split}' is missing (needed for the {split} split)")
        return self.splits[split]


def _as_list(source: str, key: str, value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) and v.strip() for v in items):
        raise ConfigError(f"{source}: key '{key}' must be a path or a list of paths, got {value!r}")
    return items


def _names(source: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, dict):  # yolov5 style {0: a, 1: b}
        keys = sorted(value)
        if keys != list(range(len(keys))):
            raise ConfigError(f"{source}: key 'names' as a mapping needs keys 0..n-1, got {keys}")
        value = [value[k] for k in keys]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{source}: key 'names' must be a non-empty list of strings, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{source}: key 'names' has duplicates: {value}")
    return tuple(value)


def infer_format(d: dict[str, Any], root: Path) -> str:
    """coco when any ``*_annotations`` key is set; voc when the root (or a VOC year folder under it)
    holds ``Annotations/`` or a split points into ``ImageSets``; yolo otherwise."""
    if any(f"{s}_annotations" in d for s in SPLITS):
        return "coco"
    split_text = " ".join(str(d.get(s, "")) for s in SPLITS)
    if "ImageSets" in split_text or (root / "Annotations").is_dir() or any(root.glob("*/Annotations")):
        return "voc"
    return "yolo"


def data_config_from_dict(d: dict[str, Any], yaml_path: str | Path) -> DataConfig:
    """Validate the mapping read from ``yaml_path`` (used for messages and relative paths)."""
    yaml_path = Path(yaml_path)
    src = str(yaml_path)
    if not isinstance(d, dict):
        raise ConfigError(f"{src}: expected a mapping of dataset keys, got {type(d).__name__}")
    unknown = sorted(set(d) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{src}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(KNOWN_KEYS))}")
    if "path" not in d or not isinstance(d["path"], str):
        raise ConfigError(f"{src}: key 'path' (the dataset root folder) is missing or not a string")
    root = Path(d["path"]).expanduser()
    root = (root if root.is_absolute() else yaml_path.resolve().parent / root).resolve()
    fmt = d.get("format") or infer_format(d, root)
    if fmt not in FORMATS:
        raise ConfigError(f"{src}: key 'format' must be one of {FORMATS}, got {fmt!r}")
    for key in ("train", "val"):
        if key not in d:
            raise ConfigError(f"{src}: key '{key}' is missing")
    splits = {s: tuple(root / p for p in _as_list(src, s, d[s])) for s in SPLITS if s in d}
    annotations = {}
    for s in SPLITS:
        key = f"{s}_annotations"
        if key in d:
            if fmt != "coco":
                raise ConfigError(f"{src}: key '{key}' is only valid with format coco (format is {fmt})")
            if not isinstance(d[key], str):
                raise ConfigError(f"{src}: key '{key}' must be one COCO JSON path, got {d[key]!r}")
            annotations[s] = root / d[key]
        elif fmt == "coco" and s in splits:
            raise ConfigError(f"{src}: key '{key}' is missing (format coco needs one JSON per split)")
    names = _names(src, d["names"]) if d.get("names") is not None else None
    if fmt == "yolo" and names is None:
        raise ConfigError(f"{src}: key 'names' is required for format yolo (labels hold class indices only)")
    if "nc" in d and (not isinstance(d["nc"], int) or (names is not None and d["nc"] != len(names))):
        raise ConfigError(f"{src}: key 'nc' must equal the number of names ({len(names or ())}), got {d['nc']!r}")
    labels = d.get("labels", "labels")
    if not isinstance(labels, str) or not labels or "/" in labels:
        raise ConfigError(f"{src}: key 'labels' must be a folder name (no '/'), got {labels!r}")
    download = d.get("download")
    if download is not None and not isinstance(download, str):
        raise ConfigError(f"{src}: key 'download' must be a script path or URL, got {download!r}")
    return DataConfig(yaml_path, root, fmt, splits, annotations, names, labels, download)


def load_data_config(path: str | Path) -> DataConfig:
    """Read and validate a dataset YAML (``yaml.safe_load``). Nothing on disk is checked yet."""
    path = Path(path)
    data = read_yaml(path, "dataset YAML")
    return data_config_from_dict(data if data is not None else {}, path)


def missing_paths(cfg: DataConfig, splits: tuple[str, ...] = ("train", "val")) -> list[str]:
    """Human-readable list of what is absent on disk: ``"key 'val': /abs/path"``."""
    if not cfg.root.is_dir():
        return [f"key 'path': {cfg.root}"]
    missing = []
    for s in splits:
        missing += [f"key '{s}': {p}" for p in cfg.sources(s) if not p.exists()]
        if s in cfg.annotations and not cfg.annotations[s].is_file():
            missing.append(f"key '{s}_annotations': {cfg.annotations[s]}")
    return missing


def ensure_dataset(cfg: DataConfig, splits: tuple[str, ...] = ("train", "val"), download: bool = False,
                   allowed: bool = False) -> None:
    """Raise ConfigError when the dataset is absent. With ``download`` and a ``download`` entry in
    the YAML, run it, but only with consent (``allowed`` = ``train.py --download``, or a yes at an
    interactive prompt; see :func:`utils.data.downloads.may_download`), then check again."""
    missing = missing_paths(cfg, splits)
    if not missing:
        return
    what = "; ".join(missing)
    if not download or not cfg.download:
        hint = f" (the YAML's 'download' entry {cfg.download!r} can fetch it)" if cfg.download else ""
        raise ConfigError(f"{cfg.yaml_path}: dataset not found: {what}{hint}")
    if not may_download(cfg.yaml_path, cfg.download, cfg.root, allowed):
        raise DownloadError(f"{cfg.yaml_path}: dataset not found: {what}; its 'download' entry would run "
                            f"{describe(cfg.yaml_path, cfg.download)}: rerun with --download to allow it")
    LOGGER.info("dataset %s not found (%s); running download: %s", cfg.root, what, cfg.download)
    run_download(cfg.yaml_path, cfg.download, cfg.root)
    missing = missing_paths(cfg, splits)
    if missing:
        raise DownloadError(f"{cfg.yaml_path}: download {cfg.download!r} finished but still missing: "
                            f"{'; '.join(missing)}")
