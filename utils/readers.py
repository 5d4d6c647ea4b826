"""Annotation readers: COCO JSON, YOLO txt and VOC XML -> :class:`utils.records.ImageRecord`.

Readers only parse; the checks of :mod:`utils.verify` run afterwards on their output.
Each returns a :class:`ReadResult`; problems that make an image's labels unreliable are
``bad_label_line`` issues and the image's path goes into ``skip``.

Box conventions on input:
* COCO ``bbox`` = ``[x, y, w, h]`` in pixels (top-left corner + size) -> ``xyxy``.
* YOLO line = ``class cx cy w h`` normalised to [0, 1]; a line ``class x1 y1 x2 y2 x3 y3 ...``
  (a yolov5 polygon) gives the polygon's bounding box. Boxes stay normalised (``normalized=True``)
  until verification knows the image size.
* VOC ``bndbox`` = 1-based inclusive pixel corners -> ``(xmin - 1, ymin - 1, xmax, ymax)``.
"""
from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from utils.config import ConfigError
from utils.records import ImageRecord, make_record
from utils.verify import Issue

LOGGER = logging.getLogger(__name__)


@dataclass
class ReadResult:
    records: list[ImageRecord]
    refs: list[list[str]]              # per record, per box: "line 3" / "annotation id 7" / "object 2"
    names: list[str]
    category_ids: list[int]
    issues: list[Issue] = field(default_factory=list)
    skip: set[str] = field(default_factory=set)  # image paths whose labels could not be parsed
    normalized: bool = False           # True: boxes are normalised xyxy until the image size is known


# ------------------------------------------------------------------------------------- COCO
def _coco_categories(data: dict, json_path: Path, names: tuple[str, ...] | None, yaml_path: Path):
    cats = sorted(data.get("categories", []), key=lambda c: c["id"])
    if names is None:
        return [c["name"] for c in cats], [int(c["id"]) for c in cats]
    by_name = {c["name"]: int(c["id"]) for c in cats}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(f"{yaml_path}: key 'names': {unknown} not among the categories of {json_path}")
    return list(names), [by_name[n] for n in names]


def _coco_box(ann: dict) -> list[float] | None:
    box = ann.get("bbox")
    if not isinstance(box, list) or len(box) != 4 or not all(isinstance(v, (int, float)) for v in box):
        return None
    x, y, w, h = (float(v) for v in box)
    return [x, y, x + w, y + h]


def read_coco(json_path: Path, image_paths: list[Path], names: tuple[str, ...] | None,
              yaml_path: Path) -> ReadResult:
    """Images listed in the JSON (in its order) found among ``image_paths`` by file name;
    images without annotations are kept as negatives; crowd boxes kept with ``iscrowd``."""
    try:
        data = json.loads(Path(json_path).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{yaml_path}: annotations {json_path} unreadable: {e}") from None
    names_out, cat_ids = _coco_categories(data, json_path, names, yaml_path)
    cls_of = {cid: i for i, cid in enumerate(cat_ids)}
    by_name = {p.name: p for p in image_paths}
    first_dir = image_paths[0].parent if image_paths else Path(json_path).parent
    anns: dict[int, list[dict]] = {}
    for a in data.get("annotations", []):
        anns.setdefault(a.get("image_id"), []).append(a)
    res = ReadResult([], [], names_out, cat_ids)
    ignored = outside = 0
    for im in data.get("images", []):
        fname = Path(im["file_name"]).name
        fallback = first_dir / im["file_name"]
        if image_paths and fname not in by_name and fallback.exists():
            outside += 1          # on disk but not in this split's list file: another split's image
            continue
        path = str(by_name.get(fname, fallback))  # absent from disk: kept, verification names it missing
        rows, refs = [], []
        for a in anns.get(im["id"], []):
            if a.get("category_id") not in cls_of:
                ignored += 1
                continue
            box = _coco_box(a)
            if box is None:
                res.issues.append(Issue("bad_label_line", str(json_path), f"bbox {a.get('bbox')!r} is not 4 numbers "
                                        f"(image {fname})", f"annotation id {a.get('id')}"))
                res.skip.add(path)
                continue
            rows.append((box, cls_of[a["category_id"]], bool(a.get("iscrowd", 0)), float(a.get("area", 0.0))))
            refs.append(f"annotation id {a.get('id')}")
        boxes = [r[0] for r in rows]
        area = [r[3] if r[3] > 0 else (r[0][2] - r[0][0]) * (r[0][3] - r[0][1]) for r in rows]
        res.records.append(make_record(path, im["id"], im.get("width", 0), im.get("height", 0), boxes,
                                       [r[1] for r in rows], [r[2] for r in rows], area, None, json_path))
        res.refs.append(refs)
    if ignored:
        LOGGER.info("%s: %d annotations of categories outside 'names' are not used", json_path, ignored)
    if outside:
        LOGGER.info("%s: %d images of the JSON are not in this split's image folder or list and are not used",
                    json_path, outside)
    return res


# ------------------------------------------------------------------------------------- YOLO
def yolo_label_path(image_path: Path, labels: str = "labels") -> Path:
    """``.../images/x/a.jpg`` -> ``.../labels/x/a.txt`` (last ``images`` part replaced); an image
    outside any ``images`` folder keeps its label beside it."""
    parts = list(image_path.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = labels
            return Path(*parts).with_suffix(".txt")
    return image_path.with_suffix(".txt")


def parse_yolo_line(tokens: list[str]) -> tuple[int, list[float]] | str:
    """``(class, normalised xyxy)`` or an error message."""
    if len(tokens) < 5 or (len(tokens) > 5 and len(tokens) % 2 == 0):
        return f"expected 'class cx cy w h' (or a polygon), got {len(tokens)} values"
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        return f"non-numeric value in {' '.join(tokens)!r}"
    if not values[0].is_integer():
        return f"class id {tokens[0]!r} is not an integer"
    if len(values) == 5:
        cx, cy, w, h = values[1:]
        return int(values[0]), [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    xs, ys = values[1::2], values[2::2]
    return int(values[0]), [min(xs), min(ys), max(xs), max(ys)]


def read_yolo_file(txt: Path) -> tuple[list[int], list[list[float]], list[str], list[Issue]]:
    """Classes, normalised xyxy boxes, line refs and issues of one label file (absent -> empty)."""
    cls, boxes, refs, issues = [], [], [], []
    if not txt.is_file():
        return cls, boxes, refs, issues
    try:
        lines = txt.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        return cls, boxes, refs, [Issue("bad_label_line", str(txt), f"unreadable label file: {e}")]
    for n, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens:
            continue
        parsed = parse_yolo_line(tokens)
        if isinstance(parsed, str):
            issues.append(Issue("bad_label_line", str(txt), parsed, f"line {n}"))
            continue
        cls.append(parsed[0])
        boxes.append(parsed[1])
        refs.append(f"line {n}")
    return cls, boxes, refs, issues


def read_yolo(image_paths: list[Path], names: tuple[str, ...], labels: str = "labels") -> ReadResult:
    res = ReadResult([], [], list(names), list(range(1, len(names) + 1)), normalized=True)
    no_label = 0
    for i, p in enumerate(image_paths):
        txt = yolo_label_path(p, labels)
        no_label += not txt.is_file()
        cls, boxes, refs, issues = read_yolo_file(txt)
        if issues:
            res.issues += issues
            res.skip.add(str(p))
        res.records.append(make_record(p, i, 0, 0, boxes, cls, label_file=txt))
        res.refs.append(refs)
    if no_label:
        LOGGER.info("%d of %d images have no label file (used as images without objects)", no_label, len(image_paths))
    return res


# -------------------------------------------------------------------------------------- VOC
def voc_annotation_path(image_path: Path) -> Path:
    """``<year>/JPEGImages/id.jpg`` -> ``<year>/Annotations/id.xml``."""
    return image_path.parent.parent / "Annotations" / (image_path.stem + ".xml")


def parse_voc_xml(xml_path: Path) -> tuple[int, int, list[tuple[str, list[float], bool]]] | str:
    """``(width, height, [(name, xyxy 0-based, difficult), ...])`` or an error message."""
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError) as e:
        return f"unreadable XML: {e}"
    size = root.find("size")
    try:
        w = int(float(size.findtext("width"))) if size is not None else 0
        h = int(float(size.findtext("height"))) if size is not None else 0
        objects = []
        for obj in root.iter("object"):
            bb = obj.find("bndbox")
            x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            objects.append((obj.findtext("name", "").strip(), [x1 - 1, y1 - 1, x2, y2],
                            obj.findtext("difficult", "0").strip() in ("1", "true")))
    except (TypeError, ValueError, AttributeError) as e:
        return f"bad <size> or <bndbox> ({e})"
    return w, h, objects


def read_voc(image_paths: list[Path], names: tuple[str, ...] | None) -> ReadResult:
    """VOC XML per image; ``names`` None -> all object names found, sorted. Objects of other
    names are not used (logged as a count)."""
    parsed = {}
    res = ReadResult([], [], [], [])
    for p in image_paths:
        xml = voc_annotation_path(p)
        out = parse_voc_xml(xml) if xml.is_file() else (0, 0, [])
        if isinstance(out, str):
            res.issues.append(Issue("bad_label_line", str(xml), out))
            res.skip.add(str(p))
            out = (0, 0, [])
        parsed[p] = out
    if names is None:
        names = tuple(sorted({o[0] for _, _, objs in parsed.values() for o in objs}))
    res.names, res.category_ids = list(names), list(range(1, len(names) + 1))
    index = {n: i for i, n in enumerate(names)}
    ignored = Counter()
    for i, p in enumerate(image_paths):
        w, h, objs = parsed[p]
        used = [(k, o) for k, o in enumerate(objs) if o[0] in index]
        ignored.update(o[0] for o in objs if o[0] not in index)
        res.records.append(make_record(p, i, w, h, [o[1] for _, o in used], [index[o[0]] for _, o in used],
                                       None, None, [o[2] for _, o in used], voc_annotation_path(p)))
        res.refs.append([f"object {k + 1}" for k, _ in used])
    if ignored:
        LOGGER.info("VOC objects of classes outside 'names' are not used: %s", dict(ignored))
    return res
