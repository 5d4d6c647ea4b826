"""Hyperparameter configuration: one frozen object read from a hyp YAML.

The hyp YAML is flat (yolov5-compatible keys). Every key is a field of :class:`Hyp`, grouped
below by subject with one comment each; :data:`RANGES` gives every field its allowed values.
Unknown keys, values of the wrong type, non-finite numbers and values out of range stop with a
message naming the file and the key, before anything is built.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A user's configuration file is wrong; the message names the file and the key or row."""


BOX_LOSSES = ("iou", "giou", "diou", "ciou", "siou", "mse")
LR_SCHEDULES = ("linear", "cosine", "step", "poly")
OPTIMIZERS = ("SGD", "Adam", "AdamW")


@dataclass(frozen=True)
class Hyp:
    # --- optimiser -------------------------------------------------------------------------
    optimizer: str = "SGD"          # SGD | Adam | AdamW (train.py --optimizer overrides)
    lr0: float = 0.01               # initial learning rate
    lrf: float = 0.01               # final lr = lr0 * lrf (linear and cosine schedules)
    lr_schedule: str = "linear"     # linear | cosine | step | poly
    lr_power: float = 4.0           # poly schedule: lr0 * (1 - epoch / epochs) ** lr_power (seed 004: 4)
    lr_steps: tuple = ()            # step schedule: ((epoch, lr), ...) absolute lrs from that epoch on
    momentum: float = 0.937         # SGD momentum / Adam beta1
    weight_decay: float = 0.0005    # applied to conv/linear weights only (not BN, not biases)
    warmup_epochs: float = 3.0      # linear warm-up length (fractions allowed)
    warmup_momentum: float = 0.8    # momentum at the start of warm-up
    warmup_bias_lr: float = 0.1     # bias lr at the start of warm-up
    warmup_min_iters: int = 100     # warm-up lasts at least this many batches (yolov5), when warmup_epochs > 0
    nbs: int = 64                   # nominal batch size: gradients accumulate up to it
    grad_clip: float = 10.0         # max gradient norm (0 disables)
    ema_decay: float = 0.9999       # model EMA decay (0 disables EMA)
    ema_tau: float = 2000.0         # EMA warm-up: decay ramps as ema_decay * (1 - exp(-updates / ema_tau))
    bn_momentum: float = 0.03       # BatchNorm running-stat momentum (short runs: 0.1, or eval lags training)
    # --- loss ------------------------------------------------------------------------------
    box_loss: str = "ciou"          # iou | giou | diou | ciou | siou | mse (YOLOv3 t-encoded SSE)
    box: float = 0.05               # box loss gain
    cls: float = 0.5                # class loss gain
    obj: float = 1.0                # objectness loss gain (scaled with image size and levels)
    cls_pw: float = 1.0             # class BCE positive weight
    obj_pw: float = 1.0             # objectness BCE positive weight
    iou_t: float = 0.20             # read by nothing, range-checked: yolov5 hyp YAMLs carry it (its loss assigns by anchor_t)
    anchor_t: float = 4.0           # anchor-to-target size ratio threshold for assignment
    fl_gamma: float = 0.0           # focal loss gamma (0 disables)
    label_smoothing: float = 0.0    # class label smoothing epsilon
    # --- loss design (utils/train/loss_variants.py; defaults = yolov5's loss) ----------------------
    assigner: str = "ratio"         # ratio (yolov5 size-ratio rule) | best_anchor (YOLOv2/v3: highest shape IoU)
    obj_ignore_iou: float = 0.0     # no no-object loss where a prediction's IoU with a target exceeds it (0 = off)
    lambda_coord: float = 1.0       # weight of the box term (seed 003's lambda_coord)
    lambda_noobj: float = 1.0       # weight of the no-object cells in the objectness term (seed 003)
    obj_loss: str = "bce"           # bce | mse (YOLOv2: objectness regressed with squared error)
    obj_target: str = "iou"         # iou (the box quality, yolov5) | one (seed 003: o = 1 at the best anchor)
    cls_loss: str = "bce"           # bce (YOLOv3: independent logistic) | softmax (YOLOv2 region layer)
    # --- augmentation ----------------------------------------------------------------------
    hsv_h: float = 0.015            # hue jitter (fraction of the hue circle)
    hsv_s: float = 0.7              # saturation gain jitter
    hsv_v: float = 0.4              # value (exposure) gain jitter
    degrees: float = 0.0            # rotation (+/- deg)
    translate: float = 0.1          # translation (+/- fraction)
    scale: float = 0.5              # scale gain (+/-)
    shear: float = 0.0              # shear (+/- deg)
    perspective: float = 0.0        # perspective (+/- fraction), 0..0.001
    flipud: float = 0.0             # vertical flip probability
    fliplr: float = 0.5             # horizontal flip probability
    mosaic: float = 1.0             # mosaic probability
    mixup: float = 0.0              # mixup probability
    close_mosaic: int = 0           # mosaic (and mixup) off for the last N epochs (YOLOv8's close_mosaic; 0: never)
    multi_scale_every: int = 10     # multi-scale: new image size every N batches (seed 004)
    multi_scale_range: tuple = (0.5, 1.5)  # multi-scale bounds as fractions of --img-size

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


# Allowed values of every Hyp field, in one table: a new field needs a line here (a test checks).
# Numbers: an interval, "[" / "]" closed, "(" / ")" open; every number must also be finite.
# Strings: the tuple of choices. lr_steps and multi_scale_range have their own checks (_check_pairs).
RANGES: dict[str, str | tuple[str, ...]] = {
    "optimizer": OPTIMIZERS, "lr_schedule": LR_SCHEDULES, "box_loss": BOX_LOSSES, "lr_power": "(0, 10]",
    "assigner": ("ratio", "best_anchor"), "obj_ignore_iou": "[0, 1)", "lambda_coord": "[0, 100]",
    "lambda_noobj": "[0, 100]", "obj_loss": ("bce", "mse"), "obj_target": ("iou", "one"),
    "cls_loss": ("bce", "softmax"),
    "lr0": "(0, 1]", "lrf": "[0, 1]", "momentum": "[0, 1)", "weight_decay": "[0, 1)",
    "warmup_epochs": "[0, 1000]", "warmup_momentum": "[0, 1)", "warmup_bias_lr": "[0, 1]",
    "warmup_min_iters": "[0, 100000]",
    "nbs": "[1, 4096]", "grad_clip": "[0, 1e6]", "ema_decay": "[0, 1)", "ema_tau": "(0, 1e6]", "bn_momentum": "(0, 1]",
    "box": "[0, 100]", "cls": "[0, 100]", "obj": "[0, 100]", "cls_pw": "(0, 100]", "obj_pw": "(0, 100]",
    "iou_t": "[0, 1]", "anchor_t": "(1, 100]", "fl_gamma": "[0, 10]", "label_smoothing": "[0, 1)",
    "hsv_h": "[0, 0.5]", "hsv_s": "[0, 1]", "hsv_v": "[0, 1]", "degrees": "[0, 180]", "translate": "[0, 1]",
    "scale": "[0, 1)", "shear": "[0, 45]", "perspective": "[0, 0.001]", "flipud": "[0, 1]", "fliplr": "[0, 1]",
    "mosaic": "[0, 1]", "mixup": "[0, 1]", "close_mosaic": "[0, 100000]", "multi_scale_every": "[1, 100000]",
    "lr_steps": "pairs", "multi_scale_range": "pairs",
}


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def _coerce(path: str, key: str, value: Any, default: Any) -> Any:
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: key '{key}' must be a list, got {value!r}")
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: key '{key}' must be true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: key '{key}' must be a number, got {value!r}")
        if isinstance(default, int) and not float(value).is_integer():
            raise ConfigError(f"{path}: key '{key}' must be an integer, got {value!r}")
        return float(value) if isinstance(default, float) else int(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{path}: key '{key}' must be a string, got {value!r}")
    return value


def hyp_from_dict(d: dict[str, Any], source: str = "<hyp>") -> Hyp:
    """Validate a flat dict against :class:`Hyp` and return the frozen object."""
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: expected a mapping of hyperparameters, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(Hyp)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(fields)}")
    defaults = Hyp()
    values = {k: _coerce(source, k, v, getattr(defaults, k)) for k, v in d.items()}
    hyp = Hyp(**values)
    _check(hyp, source)
    return hyp


def _in_interval(value: float, interval: str) -> bool:
    lo_text, hi_text = interval[1:-1].split(",")
    lo, hi = float(lo_text), float(hi_text)
    above = value > lo if interval[0] == "(" else value >= lo
    below = value < hi if interval[-1] == ")" else value <= hi
    return above and below


def _check_pairs(h: Hyp, source: str) -> None:
    if h.lr_schedule == "step" or h.lr_steps:
        for step in h.lr_steps:
            ok = isinstance(step, tuple) and len(step) == 2 and all(_is_number(v) for v in step)
            if not ok or not (float(step[0]).is_integer() and step[0] >= 0 and _in_interval(step[1], "(0, 1]")):
                raise ConfigError(f"{source}: key 'lr_steps' entries must be [epoch >= 0, lr in (0, 1]], got {step!r}")
    r = h.multi_scale_range
    if not (len(r) == 2 and all(_is_number(v) for v in r) and 0 < r[0] <= 1 <= r[1] <= 4):
        raise ConfigError(f"{source}: key 'multi_scale_range' must be [low, high] with 0 < low <= 1 <= high <= 4, "
                          f"got {list(r)!r}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check(h: Hyp, source: str) -> None:
    """Every field against its line of :data:`RANGES` (a field without one is a programming error)."""
    for f in dataclasses.fields(h):
        rule, value = RANGES.get(f.name), getattr(h, f.name)
        if rule is None:
            raise ConfigError(f"{source}: key '{f.name}' has no allowed range in utils/config.py RANGES")
        if isinstance(rule, tuple):
            if value not in rule:
                raise ConfigError(f"{source}: key '{f.name}' must be one of {rule}, got {value!r}")
        elif rule != "pairs":
            if not _is_number(value):
                raise ConfigError(f"{source}: key '{f.name}' must be a finite number, got {value!r}")
            if not _in_interval(value, rule):
                raise ConfigError(f"{source}: key '{f.name}' must be in {rule}, got {value!r}")
    _check_pairs(h, source)


def read_yaml(path: str | Path, what: str, error: type[ConfigError] = ConfigError) -> Any:
    """``yaml.safe_load`` of a user's file; a missing file or bad YAML is ``error`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise error(f"{path}: not valid YAML{where}: {what}") from None


def load_hyp(path: str | Path) -> Hyp:
    """Read a hyp YAML (``yaml.safe_load``) into a frozen :class:`Hyp`."""
    return hyp_from_dict(read_yaml(path, "hyperparameter file") or {}, str(path))


def replace(h: Hyp, **changes: Any) -> Hyp:
    """A copy of ``h`` with some fields changed (validated again)."""
    return hyp_from_dict({**h.to_dict(), **changes}, "<override>")
