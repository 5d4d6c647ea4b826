"""Image-folder classification data (the ImageNet layout) and its augmentation (seed 004).

A dataset YAML with ``format: imagefolder`` names split folders holding one sub-folder per class::

    path: ../datasets/shapes_cls
    format: imagefolder
    train: train            # train/<class>/*.jpg
    val: val                # val/<class>/*.jpg
    names: [circle, square, triangle, star]   # optional: default the sorted sub-folder names

Training images get seed 004's augmentation, driven by the hyp: a random crop (side a fraction
``1 - scale .. 1`` of the shorter side, at a random place), rotation ``+/- degrees``, hue /
saturation / exposure (``hsv_h/s/v``), flips (``fliplr``, ``flipud``), then a resize to the
training size. Validation: the centre square crop of the shorter side, resized.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from utils.data.augment import augment_hsv
from utils.config import ConfigError, Hyp
from utils.data.config import DataConfig, load_data_config
from utils.data.image_io import decode_image

LOGGER = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ClassifySplit:
    """One split: image paths, their class indices, and the class names."""
    name: str
    paths: tuple[Path, ...]
    labels: tuple[int, ...]
    names: tuple[str, ...]

    def counts(self) -> list[int]:
        return np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=len(self.names)).tolist()


def load_classify_config(path: str | Path) -> DataConfig:
    """A dataset YAML that must have ``format: imagefolder``."""
    cfg = load_data_config(path)
    if cfg.format != "imagefolder":
        raise ConfigError(f"{path}: key 'format' must be imagefolder for train.py --task classify "
                          f"(<split>/<class>/*.jpg folders), got {cfg.format}")
    return cfg


def load_classify_split(cfg: DataConfig, split: str, names: tuple[str, ...] | None = None) -> ClassifySplit:
    """Scan ``<split>/<class>/`` folders. ``names``: the class order to use (default: the YAML's,
    else the sorted sub-folders); a folder not among the names is an error naming it."""
    sources = cfg.sources(split)
    if len(sources) != 1 or not sources[0].is_dir():
        raise ConfigError(f"{cfg.yaml_path}: key '{split}' must be one folder of class sub-folders, got "
                          f"{[str(s) for s in sources]}")
    root = sources[0]
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    names = tuple(names or cfg.names or folders)
    extra = [f for f in folders if f not in names]
    if extra:
        raise ConfigError(f"{cfg.yaml_path}: split '{split}' folder {root / extra[0]} is not one of the class names "
                          f"{list(names)}")
    paths, labels = [], []
    for c, name in enumerate(names):
        for p in sorted((root / name).glob("*")) if (root / name).is_dir() else []:
            if p.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(p)
                labels.append(c)
    if not paths:
        raise ConfigError(f"{cfg.yaml_path}: split '{split}' ({root}) holds no images in class sub-folders")
    out = ClassifySplit(split, tuple(paths), tuple(labels), names)
    LOGGER.info("%s: %d images in %d classes %s", split, len(paths), len(names), dict(zip(names, out.counts())))
    return out


def random_crop_box(h: int, w: int, scale: float, rng: np.random.Generator) -> tuple[int, int, int]:
    """``(x, y, side)`` of a square crop whose side is ``U(1 - scale, 1)`` of the shorter side."""
    side = max(1, int(round(min(h, w) * rng.uniform(1.0 - scale, 1.0))))
    return int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1)), side


def centre_crop_box(h: int, w: int) -> tuple[int, int, int]:
    side = min(h, w)
    return (w - side) // 2, (h - side) // 2, side


def rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the centre by ``degrees`` (counter-clockwise), edge pixels repeated into the corners
    (reflecting them would mirror parts of a large object into the image)."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)  # about the centre pixel
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def augment_image(img: np.ndarray, size: int, hyp: Hyp, rng: np.random.Generator) -> np.ndarray:
    """Seed 004's training augmentation of one RGB image (module doc) -> ``[size, size, 3]``."""
    if hyp.degrees > 0:
        img = rotate(img, rng.uniform(-hyp.degrees, hyp.degrees))
    x, y, side = random_crop_box(*img.shape[:2], hyp.scale, rng)
    img = cv2.resize(img[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_LINEAR)
    img = augment_hsv(img, rng, hyp.hsv_h, hyp.hsv_s, hyp.hsv_v)
    if rng.random() < hyp.fliplr:
        img = img[:, ::-1]
    if rng.random() < hyp.flipud:
        img = img[::-1]
    return np.ascontiguousarray(img)


class ClassifyDataset(Dataset):
    """``(uint8 [3, size, size] RGB tensor, class index)``; augmented when ``hyp`` is given."""

    def __init__(self, split: ClassifySplit, size: int, hyp: Hyp | None = None, seed: int = 0):
        self.split, self.size, self.hyp, self.seed = split, size, hyp, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.split.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path = self.split.paths[i]
        img = decode_image(path, rgb=True)
        if img is None:
            raise ConfigError(f"{path}: not a readable image")
        if self.hyp is not None:
            img = augment_image(img, self.size, self.hyp, np.random.default_rng([self.seed, self.epoch, i]))
        else:
            x, y, side = centre_crop_box(*img.shape[:2])
            img = cv2.resize(img[y:y + side, x:x + side], (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        return torch.from_numpy(img).permute(2, 0, 1).contiguous(), self.split.labels[i]


def build_classify_loader(split: ClassifySplit, size: int, batch_size: int, hyp: Hyp | None = None,
                          shuffle: bool = False, workers: int = 0, seed: int = 0) -> DataLoader:
    """Batches ``(uint8 [B, 3, size, size], long [B])``; ``hyp`` turns augmentation on. Shuffling
    is seeded by ``seed`` and the dataset's ``epoch`` (set it each epoch) so runs repeat exactly."""
    ds = ClassifyDataset(split, size, hyp, seed)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=workers, generator=gen,
                      drop_last=False)
