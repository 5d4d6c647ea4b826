"""From a dataset YAML to one verified split: ``load_split(cfg, "train") -> DatasetInfo``.

The three formats (COCO JSON, YOLO txt, VOC XML; parsers in :mod:`utils.data.readers`) give the same
in-memory form, :class:`utils.data.records.ImageRecord` (boxes ``xyxy`` in original pixels). Every
image and box is verified once (:mod:`utils.data.verify`); the verified split is cached.

Split sources (the YAML's ``train`` / ``val`` / ``test`` entries):
* a folder: all images below it (recursive, sorted);
* a list file: one image path per line, relative lines resolved against the list file's folder;
  for VOC a list in ``<year>/ImageSets/Main/`` holds image ids (``<year>/JPEGImages/<id>.jpg``);
* a list of the above.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from utils.config import ConfigError
from utils.data.config import DataConfig
from utils.data.readers import ReadResult, read_coco, read_voc, read_yolo, voc_annotation_path, yolo_label_path
from utils.data.records import DatasetInfo, ImageRecord, make_record
from utils.infer.sources import is_image
from utils.data.verify import (DROP_BOX_KINDS, SKIP_IMAGE_KINDS, cache_path, files_signature, load_cache, save_cache,
                          verify_records)

__all__ = ["DatasetInfo", "ImageRecord", "make_record", "load_split", "list_split_images"]

LOGGER = logging.getLogger(__name__)


def _images_in_folder(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if is_image(p) and p.is_file())


def _voc_list(list_file: Path) -> list[Path]:
    year_dir = list_file.parents[2] if len(list_file.parents) > 2 else list_file.parent
    ids = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
    return [year_dir / "JPEGImages" / f"{i}.jpg" for i in ids]


def _path_list(list_file: Path) -> list[Path]:
    out = []
    for line in list_file.read_text().splitlines():
        line = line.strip()
        if line:
            p = Path(line).expanduser()
            out.append(p if p.is_absolute() else (list_file.parent / p).resolve())
    return out


def list_split_images(cfg: DataConfig, split: str) -> list[Path]:
    """The split's image paths; ConfigError naming the YAML key when a source is absent."""
    if not cfg.root.is_dir():
        raise ConfigError(f"{cfg.yaml_path}: key 'path': dataset folder {cfg.root} not found"
                          + (f" (key 'download' {cfg.download!r} can create it)" if cfg.download else ""))
    images: list[Path] = []
    for src in cfg.sources(split):
        if src.is_dir():
            images += _images_in_folder(src)
        elif src.is_file():
            images += _voc_list(src) if cfg.format == "voc" else _path_list(src)
        else:
            raise ConfigError(f"{cfg.yaml_path}: key '{split}': {src} not found")
    if not images:
        raise ConfigError(f"{cfg.yaml_path}: key '{split}': no images in {[str(s) for s in cfg.sources(split)]}")
    return images


def _label_files(cfg: DataConfig, split: str, images: list[Path]) -> list[Path]:
    if cfg.format == "coco":
        return [cfg.annotations[split]]
    if cfg.format == "voc":
        return [voc_annotation_path(p) for p in images]
    return [yolo_label_path(p, cfg.labels) for p in images]


def read_split(cfg: DataConfig, split: str, images: list[Path]) -> ReadResult:
    """Parse the split's annotations (no verification)."""
    if cfg.format == "coco":
        ann = cfg.annotations[split]
        if not ann.is_file():
            raise ConfigError(f"{cfg.yaml_path}: key '{split}_annotations': {ann} not found")
        return read_coco(ann, images, cfg.names, cfg.yaml_path)
    if cfg.format == "voc":
        return read_voc(images, cfg.names)
    return read_yolo(images, cfg.names, cfg.labels)


def load_split(cfg: DataConfig, split: str, cache: bool = True, cache_dir: str | Path | None = None,
               workers: int = 4) -> DatasetInfo:
    """Read, verify (or take from the cache) and report one split.

    Args:
        cfg: from :func:`utils.data.config.load_data_config`.
        split: "train", "val" or "test".
        cache: use/write the verification cache (see :func:`utils.data.verify.cache_path`).
        cache_dir: put the cache there instead of the dataset root.
        workers: threads decoding images during verification.

    The summary (and one warning per problem) is logged before returning. Raises ConfigError when
    the split has no usable image.
    """
    if cfg.format == "imagefolder":
        raise ConfigError(f"{cfg.yaml_path}: format imagefolder is a classification dataset; train it with "
                          f"train.py --task classify (detection needs coco, yolo or voc labels)")
    images = list_split_images(cfg, split)
    labels = _label_files(cfg, split, images)
    signature = json.dumps([cfg.format, cfg.names, cfg.labels, split])
    key = files_signature([str(p) for p in images + labels], signature)
    cpath = cache_path(cfg.root, split, Path(cache_dir) if cache_dir else None) if cache else None
    if cache and cpath is None:
        LOGGER.info("no writable folder for the dataset cache of %s; verifying without caching", cfg.root)
    hit = load_cache(cpath, key) if cpath is not None else None
    if hit is not None:
        records, report, meta = hit
        names, category_ids = meta["names"], meta["category_ids"]
        LOGGER.info("%s: verified %s split read from cache %s", cfg.yaml_path, split, cpath)
    else:
        res = read_split(cfg, split, images)
        names, category_ids = res.names, res.category_ids
        records, report = verify_records(res.records, len(names), split, res.refs, res.skip, res.issues,
                                         res.normalized, workers)
        if cpath is not None and save_cache(cpath, key, records, report,
                                            {"names": names, "category_ids": category_ids}):
            LOGGER.info("%s: dataset cache written to %s", cfg.yaml_path, cpath)
    report.log(LOGGER)
    if not records and not report.n_found:
        where = cfg.annotations[split] if cfg.format == "coco" else cfg.yaml_path
        raise ConfigError(f"{where}: split '{split}' lists no images")
    if not records:
        first = next((i for i in report.issues if i.kind in SKIP_IMAGE_KINDS), None)
        raise ConfigError(f"{cfg.yaml_path}: key '{split}': none of the {report.n_found} images is usable"
                          + (f"; the first: {first} [{first.kind}]" if first else " (see the warnings above)"))
    dropped = [i for i in report.issues if i.kind in DROP_BOX_KINDS]
    if not report.n_boxes and dropped:  # every box was unusable: training or scoring it means nothing
        raise ConfigError(f"{cfg.yaml_path}: key '{split}': none of its {len(dropped)} boxes is usable; "
                          f"the first: {dropped[0]} [{dropped[0].kind}]")
    return DatasetInfo(split, cfg.format, cfg.root, records, list(names), list(category_ids),
                       cfg.annotations.get(split), report)

