"""From a verified split to training / validation batches.

``build_dataloader(info, LoaderSettings(...), hyp)`` returns a DataLoader whose batches are
``(imgs, targets, paths, shapes, indices)``:

* ``imgs`` uint8 ``[B, 3, H, W]`` RGB;
* ``targets`` float32 ``[M, 6]`` = ``(image index in batch, class, cx, cy, w, h)`` normalised to
  the batch image size (crowd and VOC-difficult boxes are not targets);
* ``paths`` list[str]; ``indices`` list[int] into ``info.records``;
* ``shapes`` per image ``((h0, w0), ((ratio_h, ratio_w), (pad_w, pad_h)))`` so that an original
  point maps as ``x' = x * ratio_w + pad_w``; ``None`` for mosaic samples (no single mapping).

Reproducibility: the sampler draws the order AND one seed per sample from a seeded
``torch.Generator``; every random choice of a sample uses ``numpy.random.default_rng(that seed)``,
so the same seed gives the same batches whatever the number of workers.
"""
from __future__ import annotations

import logging
import math
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from utils.data.augment import PAD_VALUE, augment_hsv, flip_lr, flip_ud, letterbox, letterbox_boxes, mixup, \
    mosaic_compose, mosaic_plan, random_affine
from utils.config import Hyp
from utils.data.image_io import decode_image
from utils.data.records import DatasetInfo
from utils.data.sampler import SeededSampler

LOGGER = logging.getLogger(__name__)

WORKER_TIMEOUT_S = 300  # a worker batch slower than this is an error, not a silent hang
RECT_PAD = 0.5  # rect batches: shape = ceil(aspect * img_size / stride + RECT_PAD) * stride (as yolov5 val)


def imread_rgb(path: str, reduce: int = 1) -> np.ndarray | None:
    """Decode to RGB uint8 ``[H, W, 3]`` with the project's one decoder (EXIF orientation applied,
    as in verification and detect.py: :mod:`utils.data.image_io`); ``reduce`` in {1, 2, 4, 8} lets the
    JPEG decoder downscale by that factor (DCT scaling)."""
    return decode_image(path, rgb=True, reduce=reduce)


def resized_shape(width: int, height: int, long_side: int) -> tuple[int, int]:
    """``(h, w)`` of an image of ``width x height`` resized to long side ``long_side``."""
    k = long_side / max(width, height)
    return max(1, round(height * k)), max(1, round(width * k))


def load_resized(path: str, width: int, height: int, long_side: int) -> np.ndarray:
    """The image resized so its long side is ``long_side``, shape exactly
    :func:`resized_shape` (decoder downscaling first when the original is at least 2x larger;
    then INTER_AREA to shrink, INTER_LINEAR to enlarge)."""
    reduce = 1
    while reduce < 8 and max(width, height) / (reduce * 2) >= long_side:
        reduce *= 2
    img = imread_rgb(path, reduce)
    if img is None:
        raise OSError(f"cannot decode image {path} (it passed verification; was it changed since?)")
    h, w = resized_shape(width, height, long_side)
    if img.shape[:2] != (h, w):
        shrink = img.shape[0] > h
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return img


def rect_batch_shapes(sizes_hw: np.ndarray, img_size: int, batch_size: int, stride: int) -> np.ndarray:
    """yolov5-style rectangular batch shapes ``[n_batches, 2]`` (h, w) for images sorted by h/w."""
    ar = sizes_hw[:, 0] / sizes_hw[:, 1]
    n_batches = math.ceil(len(ar) / batch_size)
    shapes = np.ones((n_batches, 2))
    for b in range(n_batches):
        a = ar[b * batch_size:(b + 1) * batch_size]
        if a.max() < 1:
            shapes[b] = [a.max(), 1]
        elif a.min() > 1:
            shapes[b] = [1, 1 / a.min()]
    return (np.ceil(shapes * img_size / stride + RECT_PAD) * stride).astype(int)


class DetectionDataset(Dataset):
    """Items are ``(img uint8 [3, H, W] tensor, labels float32 [n, 6], path, shape, index)``; an item
    key is a record index, or ``(record index, sample seed[, mosaic allowed])`` as :class:`SeededSampler`
    yields (a mosaic needs both the key's permission and ``hyp.mosaic``'s draw)."""

    def __init__(self, info: DatasetInfo, img_size: int, hyp: Hyp | None = None, augment: bool = False,
                 stride: int = 32, rect: bool = False, batch_size: int = 16, cache_ram: bool = False):
        self.info, self.records = info, info.records
        self.img_size, self.stride = img_size, stride
        self.hyp = hyp or Hyp()
        self.augment, self.rect = augment, rect
        self.mosaic = augment and not rect and self.hyp.mosaic > 0
        self.order = np.arange(len(self.records))
        self.shape_of = None
        if rect:
            sizes = np.array([[r.height, r.width] for r in self.records], float)
            self.order = np.argsort(sizes[:, 0] / sizes[:, 1], kind="stable")
            batch_shapes = rect_batch_shapes(sizes[self.order], img_size, batch_size, stride)
            self.shape_of = np.zeros((len(self.records), 2), int)
            self.shape_of[self.order] = batch_shapes[np.arange(len(self.order)) // batch_size]
        self.ram = self._cache_images() if cache_ram else None

    def __len__(self) -> int:
        return len(self.records)

    def _cache_images(self) -> list[np.ndarray]:
        with ThreadPoolExecutor(4) as pool:
            images = list(pool.map(self._load_from_disk, range(len(self.records))))
        LOGGER.info("cached %d images in RAM (%.1f GB)", len(images), sum(i.nbytes for i in images) / 1e9)
        return images

    def _load_from_disk(self, index: int) -> np.ndarray:
        r = self.records[index]
        return load_resized(r.path, r.width, r.height, self.img_size)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image resized to long side ``img_size``, its target boxes (xyxy, those pixels), classes."""
        r = self.records[index]
        img = self.ram[index] if self.ram is not None else self._load_from_disk(index)
        keep = r.train_mask
        scale = np.array([img.shape[1] / r.width, img.shape[0] / r.height] * 2, np.float32)
        return img, r.boxes_xyxy[keep] * scale, r.classes[keep]

    def _mosaic(self, index: int, rng: np.random.Generator):
        picks = [index, *rng.integers(0, len(self.records), 3).tolist()]
        shapes = [resized_shape(self.records[i].width, self.records[i].height, self.img_size) for i in picks]
        plan = mosaic_plan(shapes, self.img_size, self.hyp, rng)
        images, boxes, classes = [], [], []
        for k, i in enumerate(picks):
            img, b, c = self.load(i) if plan.visible(k, shapes[k]) else (None, np.zeros((0, 4), np.float32), [])
            images.append(img)
            boxes.append(b)
            classes.append(np.asarray(c, np.int64))
        return mosaic_compose(plan, images, boxes, classes)

    def _letterboxed(self, index: int, rng: np.random.Generator):
        r = self.records[index]
        img, boxes, cls = self.load(index)
        h1, w1 = img.shape[:2]
        shape_hw = tuple(self.shape_of[index]) if self.shape_of is not None else (self.img_size, self.img_size)
        img, ratio, pad = letterbox(img, shape_hw, scaleup=self.augment)
        boxes = letterbox_boxes(boxes, ratio, pad)
        shape = ((r.height, r.width), ((ratio[0] * h1 / r.height, ratio[1] * w1 / r.width), pad))
        if self.augment:
            img, boxes, cls = random_affine(img, boxes, cls, self.hyp, rng)
        return img, boxes, cls, shape

    def __getitem__(self, key):
        index, seed, allowed = (*key, True)[:3] if isinstance(key, tuple) else (int(key), int(key), True)
        rng = np.random.default_rng(seed)
        hyp = self.hyp
        if self.mosaic and allowed and rng.random() < hyp.mosaic:
            img, boxes, cls = self._mosaic(index, rng)
            shape = None
            if hyp.mixup > 0 and rng.random() < hyp.mixup:
                img2, boxes2, cls2 = self._mosaic(int(rng.integers(0, len(self.records))), rng)
                img, boxes, cls = mixup(img, boxes, cls, img2, boxes2, cls2, rng)
        else:
            img, boxes, cls, shape = self._letterboxed(index, rng)
        if self.augment:
            img = augment_hsv(img, rng, hyp.hsv_h, hyp.hsv_s, hyp.hsv_v)
            if rng.random() < hyp.flipud:
                img, boxes = flip_ud(img, boxes)
            if rng.random() < hyp.fliplr:
                img, boxes = flip_lr(img, boxes)
        h, w = img.shape[:2]
        labels = np.zeros((len(cls), 6), np.float32)
        labels[:, 1] = cls
        labels[:, 2] = (boxes[:, 0] + boxes[:, 2]) / (2 * w)
        labels[:, 3] = (boxes[:, 1] + boxes[:, 3]) / (2 * h)
        labels[:, 4] = (boxes[:, 2] - boxes[:, 0]) / w
        labels[:, 5] = (boxes[:, 3] - boxes[:, 1]) / h
        chw = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        return chw, torch.from_numpy(labels), self.records[index].path, shape, index


def collate(batch: list[tuple]) -> tuple[torch.Tensor, torch.Tensor, list[str], list, list[int]]:
    """Stack samples into ``(imgs, targets, paths, shapes, indices)`` (see the module docstring).
    Images of different sizes are padded at the bottom/right to the largest (grey), and their
    normalised targets rescaled to the padded size."""
    imgs, labels, paths, shapes, indices = zip(*batch)
    hmax, wmax = max(i.shape[1] for i in imgs), max(i.shape[2] for i in imgs)
    out_labels = []
    if any(i.shape[1:] != (hmax, wmax) for i in imgs):
        padded = torch.full((len(imgs), 3, hmax, wmax), PAD_VALUE, dtype=torch.uint8)
        for k, (img, lab) in enumerate(zip(imgs, labels)):
            h, w = img.shape[1:]
            padded[k, :, :h, :w] = img
            lab = lab.clone()
            lab[:, [2, 4]] *= w / wmax
            lab[:, [3, 5]] *= h / hmax
            out_labels.append(lab)
        stacked = padded
    else:
        stacked = torch.stack(imgs)
        out_labels = [lab.clone() for lab in labels]
    for k, lab in enumerate(out_labels):
        lab[:, 0] = k
    return stacked, torch.cat(out_labels), list(paths), list(shapes), list(indices)


def _worker_init(worker_id: int) -> None:
    """Seed the global RNGs of a worker from torch's per-worker seed (augmentation itself uses the
    per-sample seeds). Workers inherit ``cv2.setNumThreads(0)`` from :func:`build_dataloader`."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    # No cv2.setNumThreads here: after fork, OpenCV would tear down the parent's thread pool and
    # can deadlock (pthread_cond_destroy). build_dataloader sets it in the parent before forking.


@dataclass(frozen=True)
class LoaderSettings:
    """How :func:`build_dataloader` batches a split. Training: ``augment=True, shuffle=True`` (mosaic
    etc. per the hyp). Validation: ``augment=False`` (letterbox only), usually ``rect=True``
    (aspect-sorted batches, no shuffle)."""
    img_size: int                   # long side the images are resized to (pixels)
    batch_size: int                 # images per batch (of this process)
    augment: bool = False           # mosaic, mixup, affine, HSV and flips per the hyp
    shuffle: bool = False           # a new seeded order every epoch (ignored with rect)
    rect: bool = False              # aspect-sorted rectangular batches (validation)
    stride: int = 32                # rect batch shapes are multiples of the model's largest stride
    workers: int = 0                # loader worker processes (0: in the calling process)
    seed: int = 0                   # seeds the sample order and every sample's random choices
    cache_ram: bool = False         # decode every image once and keep it in RAM
    rank: int = -1                  # DDP: this process's shard of the samples (-1: all)
    world_size: int = 1             # DDP: number of shards


def build_dataloader(info: DatasetInfo, s: LoaderSettings, hyp: Hyp | None = None) -> DataLoader:
    """DataLoader over ``info`` yielding ``(imgs, targets, paths, shapes, indices)`` batches.

    ``s.rank``/``s.world_size`` shard the samples across DDP processes. ``loader.sampler`` has
    ``set_epoch``; ``loader.dataset`` is the :class:`DetectionDataset`.

    With ``workers > 0`` the calling process's OpenCV thread pool is switched off
    (``cv2.setNumThreads(0)``, as yolov5 does globally) before the workers are forked: a worker that
    reconfigures an inherited pool blocks for ever (seen here). All image work then runs in the
    single-threaded workers; a batch taking over ``WORKER_TIMEOUT_S`` raises instead of hanging.
    """
    if s.rect and s.shuffle:
        LOGGER.warning("rect=True keeps the aspect-ratio order; shuffle ignored")
    workers = s.workers
    if workers > 0:
        cv2.setNumThreads(0)  # one thread per worker process: no OpenCV pool to inherit across fork
    dataset = DetectionDataset(info, s.img_size, hyp, s.augment, s.stride, s.rect, s.batch_size, s.cache_ram)
    sampler = SeededSampler(len(dataset), s.shuffle and not s.rect, s.seed, s.rank, s.world_size, dataset.order,
                            contiguous=s.rect)
    generator = torch.Generator()
    generator.manual_seed(s.seed)
    return DataLoader(dataset, batch_size=s.batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=collate, pin_memory=torch.cuda.is_available(), drop_last=False,
                      worker_init_fn=_worker_init, generator=generator, persistent_workers=workers > 0,
                      prefetch_factor=4 if workers > 0 else None, timeout=WORKER_TIMEOUT_S if workers > 0 else 0)


# ---------------------------------------------------------------------------------- multi-scale
def multi_scale_sizes(img_size: int, bounds: tuple[float, float], stride: int) -> list[int]:
    """Square sizes, multiples of ``stride``, within ``[bounds[0], bounds[1]] * img_size``
    (e.g. 416 with (0.77, 1.47) and stride 32 -> 320, 352, ..., 608 as seed 004)."""
    lo = max(stride, math.ceil(img_size * bounds[0] / stride) * stride)
    hi = max(lo, math.floor(img_size * bounds[1] / stride) * stride)
    return list(range(lo, hi + 1, stride))


def resize_batch(imgs: torch.Tensor, size: int, stride: int = 32) -> torch.Tensor:
    """Resize a batch ``[B, 3, H, W]`` (uint8 or float) so its long side is ``size``, each side a
    multiple of ``stride``. Normalised targets stay valid (the whole image extent is resized)."""
    h, w = imgs.shape[2:]
    sf = size / max(h, w)
    new = [math.ceil(x * sf / stride) * stride for x in (h, w)]
    if new == [h, w]:
        return imgs
    return F.interpolate(imgs, size=new, mode="bilinear", align_corners=False)


class MultiScale:
    """Multi-scale training (seed 004): a new square size every ``every`` batches, drawn uniformly
    from :func:`multi_scale_sizes`. The size is a pure function of ``(seed, step // every)``, so
    all DDP ranks agree without communicating. Call ``imgs = ms(imgs, step)`` on each batch."""

    def __init__(self, img_size: int, stride: int = 32, bounds: tuple[float, float] = (0.5, 1.5),
                 every: int = 10, seed: int = 0):
        self.sizes = multi_scale_sizes(img_size, bounds, stride)
        self.stride, self.every, self.seed = stride, max(1, every), seed

    @classmethod
    def from_hyp(cls, img_size: int, hyp: Hyp, stride: int = 32, seed: int = 0) -> "MultiScale":
        return cls(img_size, stride, tuple(hyp.multi_scale_range), hyp.multi_scale_every, seed)

    def size_at(self, step: int) -> int:
        rng = np.random.default_rng([self.seed, step // self.every])
        return self.sizes[int(rng.integers(len(self.sizes)))]

    def __call__(self, imgs: torch.Tensor, step: int) -> torch.Tensor:
        return resize_batch(imgs, self.size_at(step), self.stride)
