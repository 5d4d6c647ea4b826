"""The in-memory form every dataset reader produces: one :class:`ImageRecord` per image.

Boxes are ``xyxy`` in ORIGINAL image pixels (float32), whatever the file format was
(COCO ``xywh`` pixels, YOLO normalised ``cxcywh``, VOC 1-based inclusive corners).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class ImageRecord:
    """One image and its annotations.

    Attributes:
        path: image file path.
        image_id: COCO image id for COCO datasets; the record's position in the split otherwise.
        width, height: original image size in pixels.
        boxes_xyxy: float32 ``[n, 4]`` original pixels.
        classes: int64 ``[n]`` contiguous class index into ``DatasetInfo.names``.
        iscrowd: bool ``[n]`` COCO crowd regions (not training targets; kept for COCO evaluation).
        area: float32 ``[n]`` COCO annotation (segment) area; box area for other formats.
        difficult: bool ``[n]`` VOC "difficult" flag (not training targets; ignored by VOC-style eval).
        label_file: where the annotations came from (label txt, XML or the COCO JSON), for messages.
    """

    path: str
    image_id: int
    width: int
    height: int
    boxes_xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    classes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    iscrowd: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    area: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    difficult: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    label_file: str = ""

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def train_mask(self) -> np.ndarray:
        """bool ``[n]``: boxes that are training targets (neither crowd nor difficult)."""
        return ~(self.iscrowd | self.difficult)

    def select(self, keep: np.ndarray) -> "ImageRecord":
        """A copy holding only the annotations where ``keep`` (bool or index array) selects."""
        return ImageRecord(self.path, self.image_id, self.width, self.height,
                           self.boxes_xyxy[keep], self.classes[keep], self.iscrowd[keep],
                           self.area[keep], self.difficult[keep], self.label_file)


def make_record(path: str | Path, image_id: int, width: int, height: int, boxes_xyxy=None, classes=None,
                iscrowd=None, area=None, difficult=None, label_file: str | Path = "") -> ImageRecord:
    """Build a record from lists or arrays, filling absent fields (area = box area, flags False)."""
    boxes = np.asarray(boxes_xyxy if boxes_xyxy is not None else np.zeros((0, 4)), np.float32).reshape(-1, 4)
    n = len(boxes)
    cls = np.asarray(classes if classes is not None else np.zeros(n), np.int64).reshape(n)
    if area is None:
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return ImageRecord(str(path), int(image_id), int(width), int(height), boxes, cls,
                       np.asarray(iscrowd if iscrowd is not None else np.zeros(n), bool).reshape(n),
                       np.asarray(area, np.float32).reshape(n),
                       np.asarray(difficult if difficult is not None else np.zeros(n), bool).reshape(n),
                       str(label_file))


@dataclass
class DatasetInfo:
    """One split of a dataset, verified: what the loaders, the anchor check and ``test.py`` need.

    Attributes:
        split: "train", "val" or "test".
        format: "coco", "yolo" or "voc".
        root: dataset root folder.
        records: verified images (unreadable ones removed; see ``report``).
        names: class names; class index ``i`` is ``names[i]``.
        category_ids: ``category_ids[i]`` is the original COCO category id of class ``i``
            (COCO datasets); ``i + 1`` for YOLO and VOC datasets.
        annotation_json: the source COCO JSON (COCO datasets; ``None`` otherwise).
        report: the verification report (``utils.data.verify.VerifyReport``), printed before training.
    """

    split: str
    format: str
    root: Path
    records: list[ImageRecord]
    names: list[str]
    category_ids: list[int]
    annotation_json: Path | None = None
    report: object = None

    @property
    def nc(self) -> int:
        return len(self.names)

    def __len__(self) -> int:
        return len(self.records)

    def class_counts(self, include_ignored: bool = False) -> np.ndarray:
        """int64 ``[nc]`` boxes per class (training targets only unless ``include_ignored``)."""
        counts = np.zeros(self.nc, np.int64)
        for r in self.records:
            cls = r.classes if include_ignored else r.classes[r.train_mask]
            counts += np.bincount(cls, minlength=self.nc)[: self.nc]
        return counts
