"""yolov5l from the yolov5 pip package (7.0.x), wrapped as a ``bench_train.Trainee`` and as a fused
eval model, so the GPU check times it with the same step function, batches and settings as the
project's models (and with the project's EMA and SGD groups, which yolov5's train.py also has).

Models are built from the YAMLs inside the installed package with random weights; nothing is
downloaded. yolov5's own loss (``ComputeLoss``, hyp.scratch-low scaled as its train.py scales it)
replaces ``build_criterion``; everything else in the step is identical.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Optional

import torch
import yaml

HERE = Path(__file__).resolve().parent

from bench_train import Trainee
from utils.config import Hyp
from utils.train.ema import ModelEMA
from utils.train.schedule import build_optimizer

def import_yolov5() -> tuple[Optional[ModuleType], str]:
    """``(package, "")``, or ``(None, "failed: yolov5 import: ...")`` when the installed package
    (or one of its dependencies) does not import."""
    os.environ.setdefault("YOLO_OFFLINE", "1")            # ultralytics: no online check
    os.environ.setdefault("YOLOv5_AUTOINSTALL", "false")  # yolov5: never pip-install at run time
    warnings.filterwarnings("ignore", message=".*pkg_resources.*")
    try:
        import yolov5
        from yolov5.models.yolo import Model  # noqa: F401  (the pieces used below)
        from yolov5.utils.loss import ComputeLoss  # noqa: F401
    except Exception as err:  # a missing dependency of the package (e.g. pkg_resources) lands here
        return None, f"failed: yolov5 import: {type(err).__name__}: {err}"
    logging.getLogger("yolov5").setLevel(logging.WARNING)
    return yolov5, ""


def package_root(pkg: ModuleType) -> Path:
    return Path(pkg.__file__).resolve().parent


def build_model(root: Path, name: str, nc: int) -> torch.nn.Module:
    """A yolov5 model from the package's ``models/<name>.yaml``, random weights (seed 0)."""
    from yolov5.models.yolo import Model
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        return Model(str(root / "models" / f"{name}.yaml"), ch=3, nc=nc)


def loss_hyp(root: Path, nc: int, size: int, nl: int) -> dict:
    """hyp.scratch-low with box/cls/obj scaled for ``nl`` layers, ``nc`` classes and ``size`` as
    yolov5's train.py scales them."""
    h = yaml.safe_load((root / "data" / "hyps" / "hyp.scratch-low.yaml").read_text())
    h["box"] *= 3 / nl
    h["cls"] *= nc / 80 * 3 / nl
    h["obj"] *= (size / 640) ** 2 * 3 / nl
    h["label_smoothing"] = 0.0
    return h


def build_trainee(root: Path, name: str, nc: int, size: int, hyp: Hyp, device: torch.device,
                  amp: Optional[torch.dtype], channels_last: bool) -> Trainee:
    """yolov5 model + ComputeLoss + the project's SGD groups, GradScaler and EMA (as bench_train's)."""
    from yolov5.utils.loss import ComputeLoss
    model = build_model(root, name, nc).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.nc, model.hyp = nc, loss_hyp(root, nc, size, model.model[-1].nl)
    model.train()
    optimizer = build_optimizer(model, hyp.optimizer, hyp.lr0, hyp.momentum, hyp.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    return Trainee(model, ComputeLoss(model), optimizer, scaler, ModelEMA(model, hyp.ema_decay), hyp, device,
                   amp, channels_last)


def fused_model(root: Path, name: str, nc: int) -> torch.nn.Module:
    model = build_model(root, name, nc).eval()
    with contextlib.redirect_stdout(io.StringIO()):
        return model.fuse()


def ratios(ours: list[dict], peer: list[dict], keys: tuple[str, ...], anchor: str) -> list[dict]:
    """One row per setting both sides measured: ``anchor``'s images/s over the peer's (> 1: ours faster)."""
    mine = {tuple(r[k] for k in keys): r for r in ours if r["model"] == anchor}
    out = []
    for r in peer:
        key = tuple(r[k] for k in keys)
        if key in mine and r["img_s"] > 0:
            out.append({**dict(zip(keys, key)), "ours": anchor, "peer": r["model"], "ours_img_s": mine[key]["img_s"],
                        "peer_img_s": r["img_s"], "ratio": mine[key]["img_s"] / r["img_s"]})
    return out
