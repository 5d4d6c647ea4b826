"""Annotation readers: COCO JSON, YOLO txt and VOC XML -> :class:`utils.data.records.ImageRecord`.

Readers only parse; the checks of :mod:`utils.data.verify` run afterwards on their output.
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

from utils.data.coco_schema import validate_coco
from utils.config import ConfigError
from utils.data.records import ImageRecord, make_record
from utils.data.verify import Issue

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
    cats = sorted(data["categories"], key=lambda c: c["id"])
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
    validate_coco(data, json_path)
    names_out, cat_ids = _coco_categories(data, json_path, names, yaml_path)
    cls_of = {cid: i for i, cid in enumerate(cat_ids)}
    by_name = {p.name: p for p in image_paths}
    first_dir = image_paths[0].parent if image_paths else Path(json_path).parent
    res = ReadResult([], [], names_out, cat_ids)
    anns = _coco_annotations_by_image(data, json_path, res)
    ignored, outside = Counter(), 0
    for im in data["images"]:
        fname = Path(im["file_name"]).name
        fallback = first_dir / im["file_name"]
        if image_paths and fname not in by_name and fallback.exists():
            outside += 1          # on disk but not in this split's list file: another split's image
            continue
        path = str(by_name.get(fname, fallback))  # absent from disk: kept, verification names it missing
        rows, refs = [], []
        for a in anns.get(im["id"], []):
            if a["category_id"] not in cls_of:
                ignored[a["category_id"]] += 1  # categories outside 'names' (a subset): not used
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
        LOGGER.info("%s: %d annotations of categories outside 'names' are not used (category_id: count %s)",
                    json_path, sum(ignored.values()), dict(ignored))
    if outside:
        LOGGER.info("%s: %d images of the JSON are not in this split's image folder or list and are not used",
                    json_path, outside)
    return res


def _coco_annotations_by_image(data: dict, json_path: Path, res: ReadResult) -> dict[int, list[dict]]:
    """Annotations grouped by image id. One whose category is not in the JSON's ``categories`` is a
    ``bad_class`` issue naming its id; those whose ``image_id`` is not in ``images`` are counted in
    one ``unmatched`` issue (the first one named)."""
    image_ids = {im["id"] for im in data["images"]}
    defined = {c["id"] for c in data["categories"]}
    anns: dict[int, list[dict]] = {}
    orphans = []
    for a in data["annotations"]:
        if a["image_id"] not in image_ids:
            orphans.append(a)
        elif a["category_id"] not in defined:
            res.issues.append(Issue("bad_class", str(json_path), f"category_id {a['category_id']} is not among the "
                                    f"JSON's categories {sorted(defined)}; box dropped", f"annotation id {a['id']}"))
        else:
            anns.setdefault(a["image_id"], []).append(a)
    if orphans:
        res.issues.append(Issue("unmatched", str(json_path), f"{len(orphans)} of {len(data['annotations'])} "
                                f"annotations refer to an image_id not in 'images' (first: image_id "
                                f"{orphans[0]['image_id']}); they are not used", f"annotation id {orphans[0]['id']}"))
    return anns


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
    """Classes, normalised xyxy boxes, line refs and issues of one label file (absent -> empty).
    A polygon line's ref ends with ``(polygon)``."""
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
        refs.append(f"line {n}" + (" (polygon)" if len(tokens) > 5 else ""))
    return cls, boxes, refs, issues


def missing_labels_issue(missing: list[tuple[Path, Path]], n_images: int, what: str) -> list[Issue]:
    """One ``no_label`` issue counting the images without a label file, naming the first one."""
    if not missing:
        return []
    image, label = missing[0]
    return [Issue("no_label", str(image), f"no {what} {label}; {len(missing)} of {n_images} images have none "
                                          f"and are used as images without objects")]


def read_yolo(image_paths: list[Path], names: tuple[str, ...], labels: str = "labels") -> ReadResult:
    """YOLO txt per image. Missing label files and polygon lines are each counted in one issue."""
    res = ReadResult([], [], list(names), list(range(1, len(names) + 1)), normalized=True)
    missing, polygons = [], []
    for i, p in enumerate(image_paths):
        txt = yolo_label_path(p, labels)
        if not txt.is_file():
            missing.append((p, txt))
        cls, boxes, refs, issues = read_yolo_file(txt)
        if issues:
            res.issues += issues
            res.skip.add(str(p))
        polygons += [(txt, r) for r in refs if r.endswith("(polygon)")]
        res.records.append(make_record(p, i, 0, 0, boxes, cls, label_file=txt))
        res.refs.append(refs)
    res.issues += missing_labels_issue(missing, len(image_paths), "label file")
    if polygons:
        n_files = len({t for t, _ in polygons})
        res.issues.append(Issue("polygon", str(polygons[0][0]), f"{len(polygons)} label lines in {n_files} files are "
                                f"polygons (yolov5's segment format 'class x1 y1 x2 y2 ...'); their bounding boxes "
                                f"are used", polygons[0][1].replace(" (polygon)", "")))
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
    except (TypeError, ValueError, OverflowError) as e:
        return f"bad <size> ({e})"
    if w < 0 or h < 0:
        return f"bad <size>: width {w}, height {h}"
    objects = []
    for k, obj in enumerate(root.iter("object"), 1):
        name = (obj.findtext("name") or "").strip()
        where = f"object {k}" + (f" ({name})" if name else "")
        if not name:
            return f"{where} has no <name>"
        bb = obj.find("bndbox")
        if bb is None:
            return f"{where} has no <bndbox>"
        try:
            x1, y1, x2, y2 = (float(bb.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            return f"{where}: <bndbox> needs numeric <xmin> <ymin> <xmax> <ymax>"
        objects.append((name, [x1 - 1, y1 - 1, x2, y2], obj.findtext("difficult", "0").strip() in ("1", "true")))
    return w, h, objects


def read_voc(image_paths: list[Path], names: tuple[str, ...] | None) -> ReadResult:
    """VOC XML per image; ``names`` None -> all object names found, sorted. Objects of other
    names are not used (logged as a count)."""
    parsed, missing = {}, []
    res = ReadResult([], [], [], [])
    for p in image_paths:
        xml = voc_annotation_path(p)
        if not xml.is_file():
            missing.append((p, xml))
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
    res.issues += missing_labels_issue(missing, len(image_paths), "annotation XML")
    ignored, first_file = Counter(), {}
    for i, p in enumerate(image_paths):
        w, h, objs = parsed[p]
        used = [(k, o) for k, o in enumerate(objs) if o[0] in index]
        for o in objs:
            if o[0] not in index:
                ignored[o[0]] += 1
                first_file.setdefault(o[0], voc_annotation_path(p).name)
        res.records.append(make_record(p, i, w, h, [o[1] for _, o in used], [index[o[0]] for _, o in used],
                                       None, None, [o[2] for _, o in used], voc_annotation_path(p)))
        res.refs.append([f"object {k + 1}" for k, _ in used])
    if ignored:
        LOGGER.info("VOC objects of classes outside 'names' are not used: %s",
                    ", ".join(f"{n} x{c} (first in {first_file[n]})" for n, c in ignored.items()))
    return res
