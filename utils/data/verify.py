"""Checking every image and label once, reporting what was fixed or skipped, and caching the result.

Rules (each problem is an :class:`Issue` naming the file, and the line / annotation when known):

==================  ==============================================================  =============
kind                condition                                                       action
==================  ==============================================================  =============
missing_image       image file absent                                               image skipped
corrupt_image       empty, truncated (JPEG without end-of-image marker FFD9, PNG    image skipped
                    without IEND) or not decodable by OpenCV
size_mismatch       annotation says W x H but the decoded image differs             image skipped
bad_label_line      label line not numeric / wrong column count (YOLO txt), bad     image skipped
                    XML / JSON entry                                                (labels unreliable)
bad_class           class id < 0 or >= nc                                           box dropped
non_finite          NaN or inf coordinate                                           box dropped
out_of_range        a normalised coordinate outside [-0.01, 1.01]                   box clipped
zero_size           width or height <= 0 after clipping to the image                box dropped
duplicate           same class, box and crowd flag as an earlier box                box dropped
no_label            (one per split) YOLO txt / VOC XML absent: count, first image   no boxes
polygon             (one per split) YOLO lines with > 5 values: count, first line   bounding box
unmatched           (one per split) COCO annotations whose image_id is not an       not used
                    image of the JSON: count, first annotation id
==================  ==============================================================  =============

Coordinates within the 1% tolerance are clipped without a warning. Images are decoded by
:func:`utils.data.image_io.decode_image` (EXIF orientation applied), like everywhere else. The cache (see
:func:`cache_path`) stores the verified records and the issues, keyed by a hash of every
involved file's path, size and mtime; a cache hit replays the same warnings and summary.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils.atomic import write_atomic
from utils.data.image_io import decode_image, read_bytes
from utils.data.records import ImageRecord

LOGGER = logging.getLogger(__name__)

RANGE_TOL = 0.01          # normalised coordinates may exceed [0, 1] by this much before a warning
CACHE_VERSION = 3  # bump whenever a reader changes what a split contains (3: EXIF applied, counted notes)
MAX_LOGGED_ISSUES = 30    # warnings printed one by one; the rest are counted in the summary
SKIP_IMAGE_KINDS = ("missing_image", "corrupt_image", "size_mismatch", "bad_label_line")
DROP_BOX_KINDS = ("bad_class", "non_finite", "zero_size", "duplicate")
NOTE_KINDS = ("no_label", "polygon", "unmatched")  # one counted issue per split, always logged


@dataclass
class Issue:
    kind: str
    file: str
    message: str
    where: str = ""  # "line 3", "annotation id 17", "object 2"

    def __str__(self) -> str:
        loc = f"{self.file} ({self.where})" if self.where else self.file
        return f"{loc}: {self.message}"


@dataclass
class VerifyReport:
    """Counts and issues of one split's verification, printed before training."""

    split: str
    n_found: int = 0
    n_images: int = 0
    n_negatives: int = 0
    n_boxes: int = 0
    issues: list[Issue] = field(default_factory=list)

    def count_records(self, records: list[ImageRecord]) -> "VerifyReport":
        """Set the usable-image, negative-image and target-box counts from the kept ``records``."""
        self.n_images = len(records)
        self.n_negatives = sum(1 for r in records if not r.train_mask.any())
        self.n_boxes = sum(int(r.train_mask.sum()) for r in records)
        return self

    def counts(self) -> Counter:
        return Counter(i.kind for i in self.issues)

    def summary(self) -> str:
        c = self.counts()
        skipped = {k: c[k] for k in SKIP_IMAGE_KINDS if c[k]}
        dropped = {k: c[k] for k in DROP_BOX_KINDS if c[k]}
        text = (f"{self.split}: {self.n_images}/{self.n_found} images usable ({self.n_negatives} without boxes), "
                f"{self.n_boxes} boxes")
        text += f"; skipped {sum(skipped.values())} images {dict(skipped)}" if skipped else "; skipped 0 images"
        text += f"; dropped {sum(dropped.values())} boxes {dict(dropped)}" if dropped else "; dropped 0 boxes"
        if c["out_of_range"]:
            text += f"; clipped {c['out_of_range']} out-of-range boxes"
        return text

    def log(self, logger: logging.Logger = LOGGER) -> None:
        """Warn once per issue (the counted notes, then the first MAX_LOGGED_ISSUES others), then
        the one-line summary."""
        notes = [i for i in self.issues if i.kind in NOTE_KINDS]
        others = [i for i in self.issues if i.kind not in NOTE_KINDS]
        for issue in notes + others[:MAX_LOGGED_ISSUES]:
            logger.warning("%s [%s]", issue, issue.kind)
        if len(others) > MAX_LOGGED_ISSUES:
            logger.warning("... %d more issues (see the summary counts)", len(others) - MAX_LOGGED_ISSUES)
        logger.info("%s", self.summary())


def check_image_file(path: str | Path) -> tuple[int, int, str | None]:
    """Read and decode an image: ``(width, height, None)`` or ``(0, 0, reason)``."""
    try:
        data = read_bytes(path)
    except OSError as e:
        return 0, 0, f"cannot read image: {e.strerror or e}"
    if data.size == 0:
        return 0, 0, "empty image file"
    tail = np.trim_zeros(data[-64:], "b")  # some writers pad after the last marker
    if data[:2].tobytes() == b"\xff\xd8" and tail[-2:].tobytes() != b"\xff\xd9":
        return 0, 0, "truncated JPEG (no end-of-image marker FFD9)"
    if data[:8].tobytes() == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail.tobytes():
        return 0, 0, "truncated PNG (no IEND chunk)"
    img = decode_image(data)  # upright: EXIF orientation applied, as everywhere (utils/data/image_io.py)
    if img is None:
        return 0, 0, "cannot decode image (corrupt or unsupported format)"
    return int(img.shape[1]), int(img.shape[0]), None


def check_boxes(rec: ImageRecord, nc: int, refs: list[str] | None = None) -> tuple[ImageRecord, list[Issue]]:
    """Apply the box rules of the module table to one record (boxes in pixels of ``rec``)."""
    n = len(rec)
    if n == 0:
        return rec, []
    refs = refs if refs is not None else [f"box {i}" for i in range(n)]
    src = rec.label_file or rec.path
    issues, keep = [], np.ones(n, bool)
    boxes = rec.boxes_xyxy.astype(np.float32).copy()
    for i in np.flatnonzero((rec.classes < 0) | (rec.classes >= nc)):
        issues.append(Issue("bad_class", src, f"class id {rec.classes[i]} not in [0, {nc - 1}]", refs[i]))
        keep[i] = False
    for i in np.flatnonzero(keep & ~np.isfinite(boxes).all(1)):
        issues.append(Issue("non_finite", src, f"non-finite coordinates {boxes[i].tolist()}", refs[i]))
        keep[i] = False
    size = np.array([rec.width, rec.height, rec.width, rec.height], np.float32)
    norm = boxes / size
    outside = keep & ((norm < -RANGE_TOL) | (norm > 1 + RANGE_TOL)).any(1)
    for i in np.flatnonzero(outside):
        issues.append(Issue("out_of_range", src, f"normalised xyxy {np.round(norm[i], 4).tolist()} "
                                                 f"outside [0, 1]; clipped", refs[i]))
    box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    derived_area = np.abs(rec.area - box_area) <= 1e-3 * np.abs(box_area)  # area was the box area
    boxes[keep] = np.clip(boxes[keep], 0, size)
    flat = keep & ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))
    for i in np.flatnonzero(flat):
        issues.append(Issue("zero_size", src, "box has no width or height inside the image", refs[i]))
        keep[i] = False
    seen: dict[tuple, str] = {}
    for i in np.flatnonzero(keep):
        key = (int(rec.classes[i]), bool(rec.iscrowd[i]), *boxes[i].tolist())
        if key in seen:
            issues.append(Issue("duplicate", src, f"duplicate of {seen[key]}; removed", refs[i]))
            keep[i] = False
        else:
            seen[key] = refs[i]
    area = np.where(derived_area, (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), rec.area)
    out = rec.select(keep)
    out.boxes_xyxy, out.area = boxes[keep], area[keep].astype(np.float32)
    return out, issues


def verify_records(records: list[ImageRecord], nc: int, split: str, refs: list[list[str]] | None = None,
                   skip: set[str] | None = None, known_issues: list[Issue] | None = None,
                   normalized: bool = False, workers: int = 4) -> tuple[list[ImageRecord], VerifyReport]:
    """Check every image (decoded in a thread pool) and every box; return the usable records.

    A record width/height of 0 means "unknown: take it from the image". ``skip`` holds image
    paths whose labels the reader could not parse (their issues are in ``known_issues``).
    ``normalized``: boxes are normalised xyxy and are scaled to pixels here (area = box area).
    """
    report = VerifyReport(split, n_found=len(records))
    issues, skip = list(known_issues or []), skip or set()
    with ThreadPoolExecutor(max(1, workers)) as pool:
        checks = list(pool.map(lambda r: check_image_file(r.path), records))
    kept = []
    for k, (rec, (w, h, err)) in enumerate(zip(records, checks)):
        if err is not None:
            issues.append(Issue("missing_image" if not os.path.exists(rec.path) else "corrupt_image", rec.path, err))
            continue
        if rec.path in skip:
            continue
        if rec.width and rec.height and (rec.width, rec.height) != (w, h):
            swapped = " (width and height swapped: an EXIF orientation tag, which is applied, may be the cause)" \
                if (rec.width, rec.height) == (h, w) else ""
            issues.append(Issue("size_mismatch", rec.path, f"annotations say {rec.width}x{rec.height}, "
                                                           f"image is {w}x{h}{swapped}"))
            continue
        rec.width, rec.height = w, h
        if normalized:
            rec.boxes_xyxy = rec.boxes_xyxy * np.array([w, h, w, h], np.float32)
            rec.area = (rec.boxes_xyxy[:, 2] - rec.boxes_xyxy[:, 0]) * (rec.boxes_xyxy[:, 3] - rec.boxes_xyxy[:, 1])
        rec, box_issues = check_boxes(rec, nc, refs[k] if refs is not None else None)
        issues += box_issues
        kept.append(rec)
    report.issues = issues
    return kept, report.count_records(kept)


# ------------------------------------------------------------------------------------ cache
def files_signature(paths: list[str], extra: str = "") -> str:
    """sha256 over each path with its size and mtime (absent files count as absent) and ``extra``."""
    h = hashlib.sha256(f"v{CACHE_VERSION}|{extra}".encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}|-\n".encode())
    return h.hexdigest()


def is_writable_dir(path: Path) -> bool:
    """True when ``path`` is a folder this process may write: access AND a write permission bit
    (so read-only trees stay untouched even for root, who bypasses permission checks)."""
    try:
        st = path.stat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and bool(st.st_mode & 0o222) and os.access(path, os.W_OK)


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "yolo-data-cache"


def cache_path(root: Path, split: str, cache_dir: Path | None = None) -> Path | None:
    """``<root>/<split>.cache.npz`` when the dataset root is writable; otherwise a file under
    ``cache_dir`` (default ``~/.cache/yolo-data-cache``) named by the root's hash; ``None`` if
    neither is writable."""
    if cache_dir is None and is_writable_dir(root):
        return root / f"{split}.cache.npz"
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not is_writable_dir(folder):
        return None
    tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
    return folder / f"{root.name}-{tag}-{split}.cache.npz"


def save_cache(path: Path, key: str, records: list[ImageRecord], report: VerifyReport, meta: dict) -> bool:
    """Write records + report + ``meta`` (JSON-able) as an ``.npz`` without pickles. False on failure."""
    counts = np.array([len(r) for r in records], np.int64)
    cat = (lambda name, dtype, width: np.concatenate([getattr(r, name) for r in records]).astype(dtype)
           if records else np.zeros((0, *width), dtype))
    info = {"key": key, "version": CACHE_VERSION, "meta": meta, "report": [report.split, report.n_found],
            "issues": [[i.kind, i.file, i.message, i.where] for i in report.issues]}
    arrays = dict(info=np.array(json.dumps(info)), counts=counts,
                  paths=np.array([r.path for r in records], dtype=str),
                  label_files=np.array([r.label_file for r in records], dtype=str),
                  ids=np.array([r.image_id for r in records], np.int64),
                  sizes=np.array([[r.width, r.height] for r in records], np.int64).reshape(-1, 2),
                  boxes=cat("boxes_xyxy", np.float32, (4,)), classes=cat("classes", np.int64, ()),
                  iscrowd=cat("iscrowd", bool, ()), area=cat("area", np.float32, ()),
                  difficult=cat("difficult", bool, ()))
    try:
        write_atomic(path, lambda f: np.savez(f, **arrays))
        return True
    except OSError as e:
        LOGGER.info("could not write the dataset cache %s (%s); continuing without it", path, e)
        return False


def load_cache(path: Path, key: str) -> tuple[list[ImageRecord], VerifyReport, dict] | None:
    """Records, report and meta from ``path`` when it exists and was made for ``key``; else None."""
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            info = json.loads(str(z["info"]))
            if info.get("key") != key or info.get("version") != CACHE_VERSION:
                return None
            arrays = {k: z[k] for k in z.files if k != "info"}
    except (OSError, ValueError, KeyError) as e:
        LOGGER.info("ignoring unreadable dataset cache %s (%s)", path, e)
        return None
    ends = np.cumsum(arrays["counts"])
    starts = ends - arrays["counts"]
    records = [ImageRecord(str(p), int(i), int(wh[0]), int(wh[1]), arrays["boxes"][s:e], arrays["classes"][s:e],
                           arrays["iscrowd"][s:e], arrays["area"][s:e], arrays["difficult"][s:e], str(lf))
               for p, lf, i, wh, s, e in zip(arrays["paths"], arrays["label_files"], arrays["ids"],
                                             arrays["sizes"], starts, ends)]
    report = VerifyReport(info["report"][0], n_found=info["report"][1], issues=[Issue(*x) for x in info["issues"]])
    return records, report.count_records(records), info["meta"]
