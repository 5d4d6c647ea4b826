"""Training options: one frozen object built once, from train.py's flags or from a checkpoint.

:class:`TrainOptions` holds every setting of a run besides the hyperparameters (``utils/config.py``
:class:`Hyp`), grouped by subject with one comment each. It is built by :func:`options_from_args`
(a new run) or :func:`resolve_resume` (``--resume``: the checkpoint's options with this command's
overrides), checked by :func:`check_options`, and never changed in flight: a value decided later
(the default loader workers, the run folder) makes a new object with ``dataclasses.replace``.
Checkpoints and ``opt.yaml`` store :func:`options_to_dict` (plain data, so checkpoints load with
``weights_only=True``); :func:`options_from_dict` reads that back, and the ``opt`` dict of older
checkpoints too (their ``*_given`` keys are dropped, a field they lack takes :data:`OLD_DEFAULTS`
or its default).
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.config import ConfigError, Hyp, OPTIMIZERS, load_hyp, replace

TASKS = ("detect", "classify")
AMP_CHOICES = ("auto", "off", "fp16", "bf16")
NMS_KINDS = ("nms", "diou")
CACHE_CHOICES = ("auto", "ram", "off")  # utils/data/ram_cache.py decides "auto"
TASK_DEFAULTS: dict[str, dict[str, Any]] = {  # what an omitted flag means for each --task
    "detect": {"cfg": "configs/yolov4_n.yaml", "data": "data/shapes.yaml", "hyp": "configs/hyp.shapes.yaml",
               "epochs": 40, "img_size": 160, "batch_size": 16, "val_interval": 4},
    "classify": {"cfg": "configs/darknet19_cls_n.yaml", "data": "data/shapes_cls.yaml",
                 "hyp": "configs/hyp.classify_shapes.yaml", "epochs": 30, "img_size": 64, "batch_size": 32,
                 "val_interval": 1},
}
RESUME_OVERRIDES = ("device", "batch_size", "workers", "val_interval")  # what --resume may change (and --epochs)
OLD_DEFAULTS = {"channels_last": False, "val_interval": 1}  # checkpoints from before a flag existed trained without it
OLD_VALUES = {"cache": {None: "off"}}      # values older checkpoints stored, as they read now


class RunComplete(Exception):
    """``--resume`` of a run that has trained all its epochs (or stopped early); the message says how
    to train longer."""


@dataclass(frozen=True)
class TrainOptions:
    # --- what to train ---------------------------------------------------------------------
    task: str = "detect"                    # detect | classify
    cfg: str = "configs/yolov4_n.yaml"      # model YAML
    data: str = "data/shapes.yaml"          # dataset YAML
    hyp: str = "configs/hyp.shapes.yaml"    # hyperparameter YAML (a resumed run uses its checkpoint's hyp)
    weights: str = ""                       # initial weights: a checkpoint of this framework ('' = from scratch)
    freeze: tuple[int, ...] = ()            # (N,): the first N layers; (i, j, ...): these layer indices
    # --- how long and how big ----------------------------------------------------------------
    epochs: int = 40                        # epochs of the whole run (--resume --epochs N extends it to N)
    batch_size: int = 16                    # total over all processes
    img_size: int = 160                     # train and val image size (pixels, a multiple of the model stride)
    patience: int = 100                     # early stopping: epochs without improvement (0 = off)
    seed: int = 0                           # seeds torch, numpy, random and the loader's sample order
    # --- flags that override the hyp YAML ----------------------------------------------------
    optimizer: str | None = None            # SGD | Adam | AdamW (None: the hyp's)
    cos_lr: bool = False                    # lr_schedule: cosine
    close_mosaic: int | None = None         # hyp close_mosaic: no mosaic in the last N epochs (None: the hyp's)
    # --- training extras ---------------------------------------------------------------------
    multi_scale: bool = False               # vary the image size every few batches (seed 004)
    sync_bn: bool = False                   # SyncBatchNorm under DDP (CUDA only)
    cache: str = "auto"                     # decoded images in RAM: auto (when small, utils/data/ram_cache.py) | ram | off
    amp: str = "auto"                       # auto (fp16 on CUDA, off on CPU) | off | fp16 | bf16
    channels_last: bool = True              # NHWC weights (faster convolutions on CPU and CUDA)
    noautoanchor: bool = False              # keep the YAML anchors even if k-means fits better
    nan_retries: int = 3                    # reloads of last.pt after repeated non-finite losses
    # --- validation --------------------------------------------------------------------------
    val_interval: int = 4                   # detect: validate every Nth epoch and the last (darknet -map: 4; yolov5: 1)
    noval: bool = False                     # validate after the final epoch only (yolov5's --noval; no early stopping)
    nms: str = "nms"                        # nms | diou
    iou_thres: float = 0.65                 # NMS IoU threshold
    # --- where and on what -------------------------------------------------------------------
    device: str = ""                        # cpu, 0, cuda:0 ... ('' = CUDA if available)
    workers: int | None = None              # loader workers per process (None: the Trainer picks the device's default)
    project: str = "runs/train"             # parent of the run folders
    name: str = "exp"                       # run folder name (numbered unless exist_ok)
    exist_ok: bool = False                  # reuse project/name instead of numbering it
    save_dir: str = ""                      # the run folder, once known (a resumed run's is its checkpoint's)
    quiet: bool = False                     # no progress bars
    download: bool = False                  # consent to run the dataset YAML's download (never from a checkpoint)
    # --- this command ------------------------------------------------------------------------
    resume: bool | str = False              # False: a new run; True: the latest last.pt under project; a path
    evolve: int | None = None               # hyperparameter evolution: N generations (utils/train/evolve.py)
    given: frozenset[str] = frozenset()     # flags given on the command line among those with task defaults

    def __post_init__(self) -> None:
        check_options(self)


def _choice(name: str, value: Any, allowed: tuple) -> str | None:
    return None if value in allowed else f"{name} must be one of {allowed}, got {value!r}"


def _int_at_least(name: str, value: Any, low: int) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    return None if ok else f"{name} must be an integer >= {low}, got {value!r}"


def check_options(o: TrainOptions) -> None:
    """ConfigError naming the first field whose value is not allowed."""
    problems = [_choice("task", o.task, TASKS), _choice("amp", o.amp, AMP_CHOICES), _choice("nms", o.nms, NMS_KINDS),
                _choice("cache", o.cache, CACHE_CHOICES), _choice("optimizer", o.optimizer, (None, *OPTIMIZERS)),
                _int_at_least("epochs", o.epochs, 1), _int_at_least("batch_size", o.batch_size, 1),
                _int_at_least("img_size", o.img_size, 1), _int_at_least("patience", o.patience, 0),
                _int_at_least("seed", o.seed, 0), _int_at_least("nan_retries", o.nan_retries, 0),
                None if o.workers is None else _int_at_least("workers", o.workers, 0),
                None if o.evolve is None else _int_at_least("evolve", o.evolve, 1),
                None if o.close_mosaic is None else _int_at_least("close_mosaic", o.close_mosaic, 0),
                _int_at_least("val_interval", o.val_interval, 1),
                *(_int_at_least("freeze", v, 0) for v in o.freeze)]
    if not (isinstance(o.iou_thres, (int, float)) and 0 <= o.iou_thres <= 1):
        problems.append(f"iou_thres must be in [0, 1], got {o.iou_thres!r}")
    if not isinstance(o.freeze, tuple) or not isinstance(o.given, frozenset):
        problems.append("freeze must be a tuple and given a frozenset")
    first = next((p for p in problems if p), None)
    if first:
        raise ConfigError(f"training options: {first}")


def default_project(evolve: int | None) -> str:
    return "runs/evolve" if evolve else "runs/train"


def options_from_args(ns: argparse.Namespace) -> TrainOptions:
    """train.py's parsed flags (``None`` where a flag with a task default was omitted) as options.
    Under ``--resume`` the omitted ones take the detect defaults until the checkpoint's replace them."""
    flags = vars(ns)
    defaults = TASK_DEFAULTS["detect" if ns.resume else ns.task]
    given = frozenset(k for k in (*TASK_DEFAULTS["detect"], "device", "workers", "project") if flags[k] is not None)
    values = {**flags, **{k: v for k, v in defaults.items() if flags[k] is None}}
    values.update(device=values["device"] or "", project=values["project"] or default_project(ns.evolve),
                  freeze=tuple(values["freeze"]), resume=True if ns.resume == "" else ns.resume, given=given)
    return TrainOptions(**values)


def options_to_dict(o: TrainOptions) -> dict[str, Any]:
    """Every field as plain data (tuples and sets as lists) for checkpoints and ``opt.yaml``."""
    out = {f.name: getattr(o, f.name) for f in dataclasses.fields(o)}
    return {**out, "freeze": list(o.freeze), "given": sorted(o.given)}


def options_from_dict(d: dict[str, Any], source: str) -> TrainOptions:
    """A checkpoint's ``opt`` dict as options. Keys that are no field (the ``*_given`` of older
    checkpoints) are dropped; ``given`` is the resuming command's, so the saved one is dropped too."""
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: the checkpoint's options are not a mapping ({type(d).__name__})")
    names = {f.name for f in dataclasses.fields(TrainOptions)} - {"given"}
    values = {**OLD_DEFAULTS, **{k: v for k, v in d.items() if k in names}}
    for k, old in OLD_VALUES.items():
        if k in values and values[k] in old:
            values[k] = old[values[k]]
    values["freeze"] = tuple(values.get("freeze") or ())
    try:
        return TrainOptions(**values)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def hyp_with_flags(hyp: Hyp, o: TrainOptions) -> Hyp:
    """``hyp`` with the flags that override the hyp YAML folded in (``--optimizer``, ``--cos-lr``,
    ``--close-mosaic``)."""
    overrides: dict[str, Any] = {}
    if o.optimizer and o.optimizer != hyp.optimizer:
        overrides["optimizer"] = o.optimizer
    if o.cos_lr and hyp.lr_schedule != "cosine":
        overrides["lr_schedule"] = "cosine"
    if o.close_mosaic is not None and o.close_mosaic != hyp.close_mosaic:
        overrides["close_mosaic"] = o.close_mosaic
    return replace(hyp, **overrides) if overrides else hyp


def run_hyp(o: TrainOptions) -> Hyp:
    """The hyp a new run trains with: the ``--hyp`` file and the flags that override it."""
    return hyp_with_flags(load_hyp(o.hyp), o)


def resume_path(o: TrainOptions) -> Path:
    """The last.pt that ``--resume`` names: the given one, or the newest under ``project``."""
    if o.resume is not True:
        return Path(o.resume)
    found = sorted(Path(o.project).glob("*/weights/last.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ConfigError(f"--resume: no runs with weights/last.pt under {o.project}")
    return found[-1]


def resumed_options(o: TrainOptions, ckpt: dict[str, Any], path: Path) -> TrainOptions:
    """The checkpoint's options with this command's ``RESUME_OVERRIDES`` and download consent, and
    ``--epochs N`` extending (or finishing) the run to N epochs. RunComplete when nothing is left.
    ``given``, ``evolve`` and ``download`` are always this command's."""
    saved = options_from_dict(ckpt["opt"], str(path))
    changes = {k: getattr(o, k) for k in RESUME_OVERRIDES if k in o.given}
    done = int(ckpt["epoch"]) + 1
    if "epochs" in o.given:
        if o.epochs < done:
            raise ConfigError(f"--epochs {o.epochs}: {path} has already trained {done} epochs; a run cannot be "
                              f"shortened (give more than {done} to train longer)")
        complete, epochs = o.epochs == done, o.epochs
    else:
        complete, epochs = done >= saved.epochs or bool(ckpt.get("finished", False)), saved.epochs
    if complete:
        how = "stopped early" if done < epochs else "all epochs trained"
        raise RunComplete(f"{path}: the run is complete ({done} of {epochs} epochs, {how}); to train longer, "
                          f"extend it: python train.py --resume {path} --epochs {done + max(done // 2, 1)}")
    return dataclasses.replace(saved, **changes, epochs=epochs, download=o.download, given=o.given, evolve=o.evolve,
                               resume=str(path), save_dir=str(path.parent.parent))


def resolve_resume(o: TrainOptions) -> TrainOptions:
    """``--resume``: the options of the run being resumed (``resume`` is then its last.pt's path)."""
    from utils.train.checkpoint import CheckpointError, load_checkpoint
    path = resume_path(o)
    ckpt = load_checkpoint(path)
    try:
        return resumed_options(o, ckpt, path)
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"--resume {o.resume}: not a checkpoint of a training run ({e!r} missing or "
                              f"malformed)") from None
