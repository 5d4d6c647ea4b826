"""What test.py reads and writes around ``evaluate()``: COCO-format detection files, the bridge to
pycocotools' COCOeval, and ``metrics.json``.

Image and category ids of a split (used both ways, so test.py's ``predictions.json`` and
detect.py's ``--save-json`` output can be read back):

* image id: the COCO image id (``record.image_id``) for COCO datasets; for YOLO / VOC datasets the
  file stem as detect.py writes it (:func:`utils.infer.annotate.coco_image_id`: ``"000123"`` -> 123);
* category id: ``info.category_ids[class index]`` (COCO's original ids, e.g. 4, 3, 6, 8 for
  motorcycle, car, bus, truck; ``index + 1`` for YOLO / VOC datasets).

A COCO results entry is ``{"image_id", "category_id", "bbox": [x, y, w, h] pixels, "score"}``.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from utils.infer.annotate import coco_image_id, coco_results
from utils.config import ConfigError
from utils.eval.metrics import STAT_NAMES, DetectionMetrics, ImageDet, ImageGT
from utils.data.records import DatasetInfo

RESULT_KEYS = ("image_id", "category_id", "bbox", "score")


# ------------------------------------------------------------------------------------ ids
def split_image_ids(info: DatasetInfo) -> list[int | str]:
    """The image id of every record of ``info`` (see the module docstring)."""
    if info.format == "coco":
        return [r.image_id for r in info.records]
    return [coco_image_id(Path(r.path)) for r in info.records]


def evaluation_order(info: DatasetInfo) -> list[int]:
    """Record indices by ascending COCO image id (pycocotools' image order, which breaks score ties
    between images); record order for other formats."""
    if info.format == "coco":
        return sorted(range(len(info.records)), key=lambda i: info.records[i].image_id)
    return list(range(len(info.records)))


def aligned(info: DatasetInfo, detections: dict[int, ImageDet],
            order: Optional[Sequence[int]] = None) -> tuple[list[ImageGT], list[ImageDet]]:
    """Ground truth and detections (empty where absent) of the records in ``order``."""
    from utils.eval.metrics import ground_truth

    order = evaluation_order(info) if order is None else order
    empty = ImageDet(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
    return ground_truth([info.records[i] for i in order]), [detections.get(i, empty) for i in order]


# ------------------------------------------------------------------------ reading detections
def _entry_problem(entry: Any) -> Optional[str]:
    """Why ``entry`` is not a usable COCO results entry, or None."""
    if not isinstance(entry, dict):
        return f"expected an object with keys {', '.join(RESULT_KEYS)}, got {type(entry).__name__}"
    missing = [k for k in RESULT_KEYS if k not in entry]
    if missing:
        return f"missing key(s) {', '.join(missing)}"
    if not isinstance(entry["image_id"], (int, str)) or isinstance(entry["image_id"], bool):
        return f"image_id must be an integer or a string, got {entry['image_id']!r}"
    if not isinstance(entry["category_id"], int) or isinstance(entry["category_id"], bool):
        return f"category_id must be an integer, got {entry['category_id']!r}"
    bbox, score = entry["bbox"], entry["score"]
    numbers = isinstance(bbox, list) and len(bbox) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
    if not numbers:
        return f"bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}"
    if bbox[2] < 0 or bbox[3] < 0:
        return f"bbox width and height must be >= 0, got {bbox!r}"
    if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
        return f"score must be a finite number, got {score!r}"
    return None


def load_coco_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Read and check a COCO results JSON (a list of entries); ConfigError names the file and the
    first bad entry."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"predictions file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable JSON file: {e}") from None
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a JSON list of detections ({{{', '.join(RESULT_KEYS)}}}), "
                          f"got a {type(data).__name__}")
    for i, entry in enumerate(data):
        problem = _entry_problem(entry)
        if problem:
            raise ConfigError(f"{path}: entry {i}: {problem}")
    return data


@dataclass
class Dropped:
    """Detections of a results file that the split cannot score."""
    unknown_image: int = 0
    unknown_category: int = 0

    def __bool__(self) -> bool:
        return bool(self.unknown_image or self.unknown_category)


def detections_from_coco(entries: Sequence[dict[str, Any]], info: DatasetInfo
                         ) -> tuple[dict[int, ImageDet], Dropped]:
    """COCO results entries -> ``{record index: ImageDet}`` (xyxy pixels, class indices), in file
    order per image. Entries on images outside the split or of categories outside
    ``info.category_ids`` are counted in ``Dropped``, not kept."""
    ids = split_image_ids(info)
    record_of = {image_id: i for i, image_id in enumerate(ids)}
    if len(record_of) != len(ids):
        twice = [k for k, n in Counter(ids).items() if n > 1][:3]
        raise ConfigError(f"split '{info.split}' of {info.root}: image ids {twice} occur more than once "
                          f"(same file stem in two folders); detections cannot be assigned to images")
    class_of = {int(c): k for k, c in enumerate(info.category_ids)}
    rows: dict[int, list] = {}
    dropped = Dropped()
    for e in entries:
        i, k = record_of.get(e["image_id"]), class_of.get(e["category_id"])
        if i is None:
            dropped.unknown_image += 1
        elif k is None:
            dropped.unknown_category += 1
        else:
            x, y, w, h = (float(v) for v in e["bbox"])
            rows.setdefault(i, []).append((x, y, x + w, y + h, float(e["score"]), k))
    dets = {}
    for i, r in rows.items():
        a = np.asarray(r, np.float64).reshape(-1, 6)
        dets[i] = ImageDet(a[:, :4], a[:, 4], a[:, 5].astype(np.int64))
    return dets, dropped


def coco_results_of(detections: dict[int, ImageDet], info: DatasetInfo, rounded: bool = True
                    ) -> list[dict[str, Any]]:
    """``{record index: ImageDet}`` -> COCO results entries, records in ascending index order.

    ``rounded``: boxes to 3 and scores to 5 decimals (:func:`utils.infer.annotate.coco_results`, what
    ``predictions.json`` holds); otherwise full precision, so that pycocotools scores exactly the
    detections our own evaluation scored (rounded scores tie and change the ranking).
    """
    ids = split_image_ids(info)
    out: list[dict[str, Any]] = []
    for i in sorted(detections):
        d = detections[i]
        boxes = np.reshape(d.boxes, (-1, 4)).astype(np.float64)
        if rounded:
            det = np.concatenate([boxes, np.reshape(d.scores, (-1, 1)), np.reshape(d.classes, (-1, 1))], axis=1)
            out += coco_results(det, ids[i], info.category_ids)
            continue
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).tolist()
        out += [{"image_id": ids[i], "category_id": int(info.category_ids[int(c)]), "bbox": b, "score": float(s)}
                for b, s, c in zip(xywh, np.ravel(d.scores), np.ravel(d.classes))]
    return out


# --------------------------------------------------------------------------------- pycocotools
def run_cocoeval(annotation_json: str | Path, results: list[dict[str, Any]], image_ids: Sequence[int],
                 category_ids: Sequence[int]) -> tuple[np.ndarray, str]:
    """pycocotools' bbox COCOeval of ``results`` against ``annotation_json`` restricted to
    ``image_ids`` and ``category_ids`` (``params.imgIds`` / ``params.catIds``).

    Returns the 12 stats (:data:`utils.eval.metrics.STAT_NAMES` order) and pycocotools' summary text.
    Its loading chatter is swallowed; the results list is not modified.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(annotation_json))
        if results:
            dt = gt.loadRes([dict(r, bbox=list(r["bbox"])) for r in results])
        else:  # loadRes refuses an empty list; no detections is a valid (all-zero) result
            dt = COCO()
            dt.dataset = {"images": list(gt.dataset["images"]), "categories": list(gt.dataset["categories"]),
                          "annotations": []}
            dt.createIndex()
        ev = COCOeval(gt, dt, "bbox")
        ev.params.imgIds = sorted(int(i) for i in image_ids)
        ev.params.catIds = sorted(int(c) for c in category_ids)
        ev.evaluate()
        ev.accumulate()
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        ev.summarize()
    return np.asarray(ev.stats, np.float64), text.getvalue().rstrip()


# -------------------------------------------------------------------------------- metrics.json
def _num(x: Any) -> Optional[float]:
    """float, or None for nan (JSON has no nan)."""
    x = float(x)
    return None if math.isnan(x) else x


def metrics_report(m: DetectionMetrics, coco_stats: Optional[np.ndarray], settings: dict[str, Any],
                   speed_ms: Optional[dict[str, float]] = None, dropped: Optional[Dropped] = None) -> dict[str, Any]:
    """The ``metrics.json`` mapping. ``map`` is mAP@.5:.95 and ``map50`` mAP@.5 (ours, COCO
    semantics); ``precision`` / ``recall`` at the confidence of best mean F1; ``stats`` our 12
    COCO numbers, ``coco_stats`` pycocotools' (only when it ran); per-class values are null for
    classes without ground truth."""
    per_class = {name: {"ap50": _num(m.ap50[k]), "ap": _num(m.ap[k]), "precision": _num(m.precision[k]),
                        "recall": _num(m.recall[k]), "instances": int(m.instances[k]), "images": int(m.images[k])}
                 for k, name in enumerate(m.names)}
    out: dict[str, Any] = {
        "map50": m.map50, "map": m.map, "precision": m.mp, "recall": m.mr, "fitness": m.fitness,
        "best_conf": m.best_conf, "images": m.n_images, "instances": int(m.instances.sum()),
        "stats": {k: float(v) for k, v in zip(STAT_NAMES, m.coco.stats)},
        "per_class": per_class}
    if coco_stats is not None:
        out["coco_stats"] = {k: float(v) for k, v in zip(STAT_NAMES, coco_stats)}
    if speed_ms is not None:
        out["speed_ms_per_image"] = dict(speed_ms)
    if dropped is not None:
        out["dropped_detections"] = {"unknown_image": dropped.unknown_image,
                                     "unknown_category": dropped.unknown_category}
    out["settings"] = settings
    return out


def write_json(path: Path, data: Any, indent: Optional[int] = 1) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=indent, allow_nan=False))
    return path
