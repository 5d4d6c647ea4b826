"""Experiment grid YAML (``benchmarks/grid.py``): parse, validate and expand into cells.

A grid names a ``base`` run and ``axes`` whose values override it; every combination of axis values
is one training cell (an ordinary ``train.py`` run directory). ``eval`` axes re-score a trained cell
with ``test.py`` on its ``best.pt`` and never train. Layout::

    name: seed003_cpu                  # optional (default: the file's stem); cells go to runs/grid/<name>/
    base:                              # one train.py run: cfg, data, hyp, epochs, batch, seed, img_size
      cfg: configs/yolov4_n.yaml       #   (required: cfg, data, hyp, epochs) and optionally
      ...                              #   device, workers, train_args (extra train.py flags)
    hyp: {mosaic: 0.0}                 # hyp-key overrides of base.hyp for every cell
    axes:
      variant:                         # a named axis: label -> overrides (base keys or hyp keys)
        CSP: {box_loss: mse}
        CSP + CIoU + CA: {box_loss: ciou, cfg: configs/yolov4_n_ca.yaml}
      img_size: [96, 128, 160]         # a key axis: values of one base or hyp key (or label -> value)
      seed: [0, 1, 2]                  # seeds are averaged in the tables (mean and range)
    eval:                              # test.py-only axes: nms, augment, conf_thres, iou_thres
      nms: {NMS: nms, DIoU-NMS: diou}
    only:                              # an axis's values after the first apply only where these hold
      seed: {variant: [CSP], img_size: [128]}
    test: {conf_thres: 0.001, iou_thres: 0.65, batch: 32}   # test.py settings of every evaluation
    table: {rows: variant, columns: img_size, corner: Detection}

Every mistake is a :class:`GridError` naming the file and the key.
"""
from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.config import ConfigError, Hyp, hyp_from_dict, read_yaml


class GridError(ConfigError):
    """A grid YAML is wrong; the message names the file and the key."""


TOP_KEYS = ("name", "base", "hyp", "axes", "eval", "only", "test", "table")
REQUIRED_BASE = ("cfg", "data", "hyp", "epochs")
BASE_DEFAULTS: dict[str, Any] = {"batch": 16, "seed": 0, "img_size": 160}   # train.py's defaults
BASE_ONLY = ("device", "workers", "train_args")     # base keys that axes may not vary
PATH_KEYS = ("cfg", "data", "hyp")
INT_KEYS = {"epochs": 1, "batch": 1, "img_size": 1, "seed": 0, "workers": 0}   # key -> minimum
EVAL_KEYS: dict[str, Any] = {"nms": "nms", "augment": False, "conf_thres": 0.001, "iou_thres": 0.65}  # test.py defaults
TEST_KEYS: dict[str, Any] = {"conf_thres": 0.001, "iou_thres": 0.65, "batch": 32}
RESERVED_FLAGS = ("--cfg", "--data", "--hyp", "--epochs", "--batch-size", "--img-size", "--seed", "--project",
                  "--name", "--exist-ok", "--resume", "--device", "--workers")
HYP_KEYS = tuple(f.name for f in dataclasses.fields(Hyp))


@dataclass(frozen=True)
class AxisValue:
    label: str                     # what tables show
    overrides: dict[str, Any]      # base / hyp keys (train axes) or test.py keys (eval axes)
    part: str                      # this value's piece of a cell folder name


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple[AxisValue, ...]
    key: str | None                # the one key a key axis sets; None for a named axis of override sets


@dataclass(frozen=True)
class EvalVariant:
    name: str                      # folder under <cell>/eval/; "test" for the grid's plain test settings
    labels: dict[str, str]         # eval axis -> label
    flags: dict[str, Any]          # test.py settings: nms, augment, conf_thres, iou_thres, batch


@dataclass(frozen=True)
class Cell:
    name: str                      # the run directory's name
    labels: dict[str, str]         # train axis -> label
    settings: dict[str, Any]       # cfg, data, hyp, epochs, batch, seed, img_size, device, workers, train_args
    hyp: dict[str, Any]            # hyp overrides on top of settings["hyp"] (the grid's and the axes')
    evals: tuple[EvalVariant, ...]

    def spec(self) -> dict[str, Any]:
        """What the cell trains, as plain data (kept in the cell folder to notice a changed grid);
        the device and loader workers are left out (another machine may continue a grid)."""
        return {"settings": {k: v for k, v in self.settings.items() if k not in ("device", "workers")},
                "hyp": self.hyp}


@dataclass(frozen=True)
class Grid:
    path: Path
    name: str
    base: dict[str, Any]
    hyp: dict[str, Any]
    axes: tuple[Axis, ...]
    eval_axes: tuple[Axis, ...]
    only: dict[str, dict[str, tuple[str, ...]]]
    test: dict[str, Any]
    rows: str | None
    columns: str | None
    corner: str

    def axis(self, name: str) -> Axis:
        return next(a for a in (*self.axes, *self.eval_axes) if a.name == name)


def slug(text: str) -> str:
    """A folder-safe form: ``CSP + CIoU + CA`` -> ``csp-ciou-ca``."""
    return re.sub(r"[^a-z0-9._]+", "-", str(text).lower()).strip("-") or "x"


def label_of(value: Any) -> str:
    """How a scalar axis value reads in tables and conditions (YAML's spelling for booleans)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _fail(grid: Path, where: str, message: str) -> GridError:
    return GridError(f"{grid}: {where}: {message}")


def _check_value(grid: Path, where: str, key: str, value: Any, eval_axis: bool = False) -> None:
    """One override ``key: value`` of a base key, a hyp key (checked by the hyp loader later) or a test.py key."""
    if eval_axis:
        if key not in EVAL_KEYS:
            raise _fail(grid, where, f"unknown evaluation key '{key}'; valid keys: {', '.join(EVAL_KEYS)}")
        ok = {"nms": value in ("nms", "diou"), "augment": isinstance(value, bool)}.get(
            key, isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1)
        if not ok:
            want = {"nms": "nms or diou", "augment": "true or false"}.get(key, "a number in [0, 1]")
            raise _fail(grid, where, f"'{key}' must be {want}, got {value!r}")
        return
    if key in PATH_KEYS:
        if not isinstance(value, str) or not Path(value).is_file():
            raise _fail(grid, where, f"'{key}': file not found: {value!r}")
    elif key in INT_KEYS:
        if isinstance(value, bool) or not isinstance(value, int) or value < INT_KEYS[key]:
            raise _fail(grid, where, f"'{key}' must be an integer >= {INT_KEYS[key]}, got {value!r}")
    elif key == "train_args":
        _check_train_args(grid, where, value)
    elif key != "device" and key not in HYP_KEYS:
        raise _fail(grid, where, f"unknown key '{key}'; valid keys: {', '.join(REQUIRED_BASE)}, batch, seed, "
                                 f"img_size, device, workers, train_args, or a hyp key "
                                 f"({', '.join(HYP_KEYS[:6])}, ...)")


def _check_train_args(grid: Path, where: str, value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise _fail(grid, where, f"'train_args' must be a list of train.py arguments, got {value!r}")
    for flag in value:
        if str(flag).split("=")[0] in RESERVED_FLAGS:
            raise _fail(grid, where, f"'train_args' may not contain {flag}: the grid sets it (use a base key)")


def _mapping(grid: Path, where: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(grid, where, f"expected a mapping, got {value!r}")
    return value


def _parse_axis(grid: Path, section: str, name: Any, spec: Any) -> Axis:
    """``name: [v1, v2]`` / ``name: {label: value}`` (a key axis) or ``name: {label: {key: value}}`` (named)."""
    where, is_eval = f"{section}.{name}", section == "eval"
    if not isinstance(name, str):
        raise _fail(grid, section, f"axis names must be strings, got {name!r}")
    if isinstance(spec, list):   # a listed file reads as its stem (configs/yolov4_s.yaml -> yolov4_s)
        pairs = [(Path(v).stem if name in PATH_KEYS and isinstance(v, str) else label_of(v), v) for v in spec]
    elif isinstance(spec, dict):
        pairs = [(str(k), v) for k, v in spec.items()]
    else:
        raise _fail(grid, where, f"expected a list of values or a mapping label -> value, got {spec!r}")
    if not pairs:
        raise _fail(grid, where, "an axis needs at least one value")
    if len({p[0] for p in pairs}) != len(pairs):
        raise _fail(grid, where, f"repeated value labels {[p[0] for p in pairs]}")
    named = all(isinstance(v, dict) for _, v in pairs)
    parts = [slug(label) for label, _ in pairs] if isinstance(spec, dict) else [_part(name, v) for _, v in pairs]
    if named and name in (*BASE_ONLY, *PATH_KEYS, *INT_KEYS, *HYP_KEYS, *EVAL_KEYS):
        raise _fail(grid, where, f"'{name}' is a key: give its values, not mappings")
    if not named:
        if any(isinstance(v, (dict, list)) for _, v in pairs):
            raise _fail(grid, where, "give either plain values of the key or label -> {key: value} mappings")
        if name in BASE_ONLY:
            raise _fail(grid, where, f"'{name}' is set in base only, it cannot be an axis")
        if not is_eval and name in EVAL_KEYS:
            raise _fail(grid, where, f"'{name}' is a test.py setting: put its axis under 'eval'")
        pairs = [(label, {name: v}) for label, v in pairs]
    for label, overrides in pairs:
        for k, v in overrides.items():
            if k in BASE_ONLY:
                raise _fail(grid, f"{where}.{label}", f"'{k}' is set in base only")
            _check_value(grid, f"{where}.{label}", k, v, is_eval)
    values = tuple(AxisValue(label, dict(o), part) for (label, o), part in zip(pairs, parts))
    if len({v.part for v in values}) != len(values):
        raise _fail(grid, where, f"value labels {[p[0] for p in pairs]} give the same folder names {parts}")
    return Axis(name, values, None if named else name)


def _part(key: str, value: Any) -> str:
    """Folder-name piece of a listed value: a file's stem, ``img_size96``, ``box_loss-giou``."""
    if key in PATH_KEYS and isinstance(value, str):
        return slug(Path(value).stem)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{key}{value}"
    return f"{key}-{slug(label_of(value))}"


def _parse_only(grid: Path, raw: Any, axes: tuple[Axis, ...], eval_axes: tuple[Axis, ...]) -> dict:
    """``only: {axis: {other axis: [labels]}}``: the axis's later values only where every condition holds."""
    known = {a.name: a for a in (*axes, *eval_axes)}
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for name, cond in _mapping(grid, "only", raw).items():
        if name not in known:
            raise _fail(grid, f"only.{name}", f"no axis '{name}'; axes: {', '.join(known)}")
        evals = {a.name for a in eval_axes}
        allowed = {a.name for a in axes} | (evals if name in evals else set())   # eval axes may depend on eval axes
        out[name] = {}
        for other, labels in _mapping(grid, f"only.{name}", cond).items():
            if other == name or other not in allowed:
                raise _fail(grid, f"only.{name}.{other}",
                            f"a condition must name another axis of {sorted(allowed - {name})}")
            labels = [label_of(v) for v in (labels if isinstance(labels, list) else [labels])]
            bad = [v for v in labels if v not in {x.label for x in known[other].values}]
            if bad:
                raise _fail(grid, f"only.{name}.{other}", f"no value {bad[0]!r} on axis '{other}' "
                                                         f"(values: {[x.label for x in known[other].values]})")
            out[name][other] = tuple(labels)
    return out


def _parse_base(grid: Path, raw: Any) -> dict[str, Any]:
    base = _mapping(grid, "base", raw)
    missing = [k for k in REQUIRED_BASE if k not in base]
    if missing:
        raise _fail(grid, "base", f"missing key(s) {', '.join(missing)} (a base names cfg, data, hyp, epochs, "
                                  f"and optionally batch, seed, img_size, device, workers, train_args)")
    for key, value in base.items():
        if key in HYP_KEYS:
            raise _fail(grid, f"base.{key}", "hyp keys go under the top-level 'hyp' section")
        _check_value(grid, f"base.{key}", key, value)
    return {**BASE_DEFAULTS, "device": None, "workers": None, "train_args": [], **base}


def _parse_test(grid: Path, raw: Any) -> dict[str, Any]:
    test = {**TEST_KEYS, **_mapping(grid, "test", raw)}
    for key, value in test.items():
        if key not in TEST_KEYS:
            raise _fail(grid, f"test.{key}", f"unknown key; valid keys: {', '.join(TEST_KEYS)}")
        if key == "batch":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise _fail(grid, "test.batch", f"must be an integer >= 1, got {value!r}")
        else:
            _check_value(grid, f"test.{key}", key, value, eval_axis=True)
    return test


def _parse_table(grid: Path, raw: Any, axes: tuple[Axis, ...], eval_axes: tuple[Axis, ...]) -> tuple:
    """``(rows, columns, corner)``: axis names (not ``seed``: seeds are averaged); default: the first two train axes."""
    table = _mapping(grid, "table", raw)
    unknown = set(table) - {"rows", "columns", "corner"}
    if unknown:
        raise _fail(grid, "table", f"unknown key(s) {sorted(unknown)}; valid keys: rows, columns, corner")
    names = [a.name for a in (*axes, *eval_axes) if a.name != "seed"]
    free = [a.name for a in axes if a.name != "seed"]
    rows = table.get("rows", free[0] if free else None)
    columns = table.get("columns", next((n for n in free if n != rows), None))
    for key, value in (("rows", rows), ("columns", columns)):
        if value is not None and value not in names:
            raise _fail(grid, f"table.{key}", f"no axis {value!r} to use (axes: {', '.join(names) or 'none'}; "
                                              f"seeds are averaged, not tabulated)")
    if rows is not None and rows == columns:
        raise _fail(grid, "table", f"rows and columns are both '{rows}'")
    return rows, columns, str(table.get("corner", rows or "run"))


def load_grid(path: str | Path) -> Grid:
    """Read and validate a grid YAML (``yaml.safe_load``); paths in it are relative to the working directory."""
    path = Path(path)
    raw = _mapping(path, "top level", read_yaml(path, "grid file", GridError))
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise _fail(path, "top level", f"unknown key(s) {', '.join(map(str, unknown))}; "
                                       f"valid keys: {', '.join(TOP_KEYS)}")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or slug(name) != name:
        raise _fail(path, "name", f"must be a folder-safe name (lower-case letters, digits, . _ -), got {name!r}")
    base = _parse_base(path, raw.get("base"))
    hyp = _mapping(path, "hyp", raw.get("hyp"))
    for key in hyp:
        if key not in HYP_KEYS:
            raise _fail(path, f"hyp.{key}", f"unknown hyp key; valid keys: {', '.join(HYP_KEYS)}")
    merged_hyp(path, "hyp", base["hyp"], hyp)
    axes = tuple(_parse_axis(path, "axes", k, v) for k, v in _mapping(path, "axes", raw.get("axes")).items())
    eval_axes = tuple(_parse_axis(path, "eval", k, v) for k, v in _mapping(path, "eval", raw.get("eval")).items())
    clash = {a.name for a in axes} & {a.name for a in eval_axes}
    if clash:
        raise _fail(path, "eval", f"axis {sorted(clash)[0]!r} is also a training axis")
    only = _parse_only(path, raw.get("only"), axes, eval_axes)
    rows, columns, corner = _parse_table(path, raw.get("table"), axes, eval_axes)
    return Grid(path, name, base, hyp, axes, eval_axes, only, _parse_test(path, raw.get("test")), rows, columns,
                corner)


def merged_hyp(grid: Path, where: str, hyp_file: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The hyp file's keys with ``overrides`` applied, validated as train.py would (one line naming ``where``)."""
    merged = {**(read_yaml(hyp_file, "hyperparameter file", GridError) or {}), **overrides}
    hyp_from_dict(merged, f"{grid}: {where} (on {hyp_file})")
    return merged


def _allowed(grid: Grid, axis: str, index: int, labels: dict[str, str]) -> bool:
    """Value ``index`` of ``axis`` applies to the cell/evaluation with ``labels`` (``only`` conditions)."""
    if index == 0 or axis not in grid.only:
        return True
    return all(labels.get(other) in wanted for other, wanted in grid.only[axis].items())


def _combinations(grid: Grid, axes: tuple[Axis, ...], fixed: dict[str, str]) -> list[list[tuple[Axis, AxisValue]]]:
    """Every allowed choice of one value per axis (first axis slowest)."""
    out = []
    for combo in itertools.product(*(list(enumerate(a.values)) for a in axes)):
        labels = {**fixed, **{a.name: v.label for a, (_, v) in zip(axes, combo)}}
        if all(_allowed(grid, a.name, i, labels) for a, (i, _) in zip(axes, combo)):
            out.append([(a, v) for a, (_, v) in zip(axes, combo)])
    return out


def _merge(grid: Grid, combo: list[tuple[Axis, AxisValue]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    setter: dict[str, str] = {}
    for axis, value in combo:
        for key, v in value.overrides.items():
            if key in merged:
                raise _fail(grid.path, "axes", f"'{setter[key]}' and '{axis.name}' both set '{key}'")
            merged[key], setter[key] = v, axis.name
    return merged


def _eval_variants(grid: Grid, labels: dict[str, str]) -> tuple[EvalVariant, ...]:
    plain = {"nms": EVAL_KEYS["nms"], "augment": EVAL_KEYS["augment"], **grid.test}
    variants = []
    for combo in _combinations(grid, grid.eval_axes, labels):
        flags = {**plain, **_merge(grid, combo)}
        changed = [f"__{k}-{slug(label_of(v))}" for k, v in sorted(flags.items()) if v != plain[k]]
        variants.append(EvalVariant("test" + "".join(changed), {a.name: v.label for a, v in combo}, flags))
    return tuple(variants)


def expand(grid: Grid) -> list[Cell]:
    """The grid's training cells in YAML order, each with its evaluations; every cell's hyp is validated."""
    cells, names = [], set()
    for combo in _combinations(grid, grid.axes, {}):
        labels = {a.name: v.label for a, v in combo}
        overrides = _merge(grid, combo)
        settings = {**grid.base, **{k: v for k, v in overrides.items() if k not in HYP_KEYS}}
        hyp = {**grid.hyp, **{k: v for k, v in overrides.items() if k in HYP_KEYS}}
        name = "__".join(v.part for _, v in combo) or "base"
        if name in names:
            raise _fail(grid.path, "axes", f"two cells would share the folder {name!r}; give the values "
                                           f"distinct labels")
        names.add(name)
        merged_hyp(grid.path, f"cell {name}", settings["hyp"], hyp)
        cells.append(Cell(name, labels, settings, hyp, _eval_variants(grid, labels)))
    return cells
