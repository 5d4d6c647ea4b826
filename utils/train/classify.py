"""Image-classification training and evaluation (seed 004's "Training for classification").

``train.py --task classify`` builds a :class:`ClassifyTrainer` from the same
:class:`~utils.train.options.TrainOptions` as detection and calls its ``fit()``.
It shares the detection side's optimiser (three parameter groups), lr schedules and warm-up
(``utils.train.schedule``, incl. ``lr_schedule: poly``), gradient accumulation to ``nbs``, EMA, atomic
checkpoints and run folders; the loss is softmax cross entropy (``label_smoothing`` from the hyp).

A run writes ``runs/train/expN/``: ``weights/last.pt`` and ``best.pt`` (best val top-1; EMA weights
in ``ema``), ``results.csv`` (epoch, train/loss, val/loss, metrics/top1, metrics/top5, x/lr0..2),
``hyp.yaml`` and ``opt.yaml``. A checkpoint carries ``task: classify`` so ``test.py`` reports top-1/5.
"""
from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from models.classifier import ClassifierModel, is_classifier_cfg
from models.yolo import ModelConfigError, load_model_cfg
from utils.train.checkpoint import save_checkpoint
from utils.data.imagefolder import build_classify_loader, load_classify_config, load_classify_split
from utils.config import ConfigError
from utils.data.config import ensure_dataset
from utils.cli.device import select_device
from utils.train.ema import ModelEMA
from utils.eval.evaluate import preprocess
from utils.train.loop import autocast
from utils.train.options import TrainOptions, options_to_dict, run_hyp
from utils.train.runs import append_csv, increment_path, save_yaml
from utils.train.schedule import accumulation_at, build_optimizer, set_lr, warmup_iterations
from utils.train.transfer import transfer_weights

LOGGER = logging.getLogger(__name__)


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """Number of rows whose label is among the ``k`` highest logits, for each ``k`` (``k`` above
    the class count counts every row)."""
    top = logits.topk(min(max(ks), logits.shape[1]), 1).indices  # [B, kmax]
    hit = top == labels[:, None]
    return [int(hit[:, :k].any(1).sum()) for k in ks]


@torch.no_grad()
def evaluate_classifier(model: nn.Module, loader, device: torch.device, show_progress: bool = False) -> dict[str, float]:
    """``{'top1', 'top5', 'loss', 'images'}`` over ``loader`` (accuracies as fractions)."""
    was_training = model.training
    model.eval()
    correct, loss_sum, n = [0, 0], 0.0, 0
    for imgs, labels in tqdm(loader, desc="evaluate", disable=not show_progress, bar_format="{l_bar}{bar:10}{r_bar}"):
        logits = model(preprocess(imgs, device)).float()
        labels = labels.to(device)
        loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        correct = [c + k for c, k in zip(correct, topk_correct(logits, labels))]
        n += labels.numel()
    model.train(was_training)
    n_ = max(n, 1)
    return {"top1": correct[0] / n_, "top5": correct[1] / n_, "loss": loss_sum / n_, "images": n}


def build_classifier(cfg_path: str, nc: int, bn_momentum: float, weights: str = "") -> ClassifierModel:
    """A :class:`ClassifierModel` for ``nc`` classes; ``weights``: matching tensors of a checkpoint."""
    cfg = load_model_cfg(cfg_path)
    if not is_classifier_cfg(cfg):
        raise ModelConfigError(f"{cfg_path}: train.py --task classify needs a model YAML whose last row is "
                               f"[-1, 1, Classify, [nc]] (e.g. configs/darknet19_cls.yaml)")
    model = ClassifierModel(cfg, nc=nc)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = bn_momentum
    if weights:
        transfer_weights(model, weights)
    return model


class ClassifyTrainer:
    """The built pieces of one classification run, and :meth:`fit` (its epoch loop)."""

    def __init__(self, opt: TrainOptions):
        if opt.resume:
            raise ConfigError("--resume is not supported with --task classify yet; start a new run "
                              "(--weights last.pt keeps the weights)")
        unsupported = [flag for flag, on in (("--freeze", opt.freeze), ("--multi-scale", opt.multi_scale),
                                              ("--cache ram", opt.cache == "ram"), ("--sync-bn", opt.sync_bn),
                                              ("--amp " + str(opt.amp), opt.amp not in ("auto", "off")),
                                              ("torchrun (WORLD_SIZE > 1)", int(os.environ.get("WORLD_SIZE", "1")) > 1))
                       if on]
        if unsupported:
            raise ConfigError(f"{unsupported[0]} is not supported with --task classify (detection only, for now)")
        self.opt, self.hyp = opt, run_hyp(opt)  # --optimizer / --cos-lr fold in, as for detection
        self.device = select_device(opt.device)
        torch.manual_seed(opt.seed)
        cfg = load_classify_config(opt.data)
        ensure_dataset(cfg, download=True, allowed=opt.download)
        self.train_split = load_classify_split(cfg, "train")
        self.val_split = load_classify_split(cfg, "val", self.train_split.names)
        self.names = self.train_split.names
        self.model = build_classifier(opt.cfg, len(self.names), self.hyp.bn_momentum, opt.weights).to(self.device)
        workers = opt.workers or 0
        self.train_loader = build_classify_loader(self.train_split, opt.img_size, opt.batch_size, self.hyp,
                                                  shuffle=True, workers=workers, seed=opt.seed)
        self.val_loader = build_classify_loader(self.val_split, opt.img_size, opt.batch_size * 2, workers=workers)
        h = self.hyp
        self.accumulate = max(round(h.nbs / opt.batch_size), 1)
        wd = h.weight_decay * opt.batch_size * self.accumulate / h.nbs
        self.optimizer = build_optimizer(self.model, h.optimizer, h.lr0, h.momentum, wd)
        self.ema = ModelEMA(self.model, h.ema_decay, tau=h.ema_tau) if h.ema_decay > 0 else None
        self.warmup = warmup_iterations(h, len(self.train_loader))
        self.save_dir = increment_path(Path(opt.project) / opt.name, opt.exist_ok)
        self.iteration, self.last_step = 0, -1

    def checkpoint(self, epoch: int, best: float, metrics: dict[str, float]) -> dict[str, Any]:
        return {"task": "classify", "epoch": epoch, "best_fitness": best, "model_cfg": self.model.yaml,
                "names": list(self.names), "model": self.model.state_dict(),
                "ema": self.ema.ema.state_dict() if self.ema else None,
                "ema_updates": self.ema.updates if self.ema else 0, "optimizer": self.optimizer.state_dict(),
                "hyp": self.hyp.to_dict(), "opt": options_to_dict(self.opt), "metrics": metrics}

    def fit(self) -> dict[str, Any]:
        """Train ``opt.epochs`` epochs, evaluating (EMA weights) and checkpointing after each."""
        opt, wdir = self.opt, self.save_dir / "weights"
        wdir.mkdir(parents=True, exist_ok=True)
        save_yaml(self.save_dir / "hyp.yaml", self.hyp.to_dict())
        save_yaml(self.save_dir / "opt.yaml", options_to_dict(opt))
        best, m, start = -1.0, {}, time.perf_counter()
        for epoch in range(opt.epochs):
            train_loss = train_classify_epoch(self, epoch)
            m = evaluate_classifier(self.ema.ema if self.ema else self.model, self.val_loader, self.device)
            lrs = {f"x/lr{j}": g["lr"] for j, g in enumerate(self.optimizer.param_groups)}
            row = {"epoch": epoch, "train/loss": train_loss, "val/loss": m["loss"], "metrics/top1": m["top1"],
                   "metrics/top5": m["top5"], **lrs}
            append_csv(self.save_dir / "results.csv", row)
            metrics = {k: v for k, v in row.items() if k.startswith("metrics/")}
            ckpt = self.checkpoint(epoch, max(best, m["top1"]), metrics)
            save_checkpoint(ckpt, wdir / "last.pt")
            if m["top1"] > best:
                best = m["top1"]
                save_checkpoint(ckpt, wdir / "best.pt")
            LOGGER.info("epoch %d/%d: train loss %.4f  val loss %.4f  top-1 %.4f  top-5 %.4f", epoch + 1, opt.epochs,
                        train_loss, m["loss"], m["top1"], m["top5"])
        return {"save_dir": str(self.save_dir), "top1": m.get("top1", math.nan), "top5": m.get("top5", math.nan),
                "best_top1": best, "seconds": time.perf_counter() - start}


def train_classify_epoch(t: ClassifyTrainer, epoch: int) -> float:
    """One pass over the training loader; returns the mean cross-entropy loss."""
    h, model, opt = t.hyp, t.model, t.opt
    model.train()
    t.train_loader.dataset.epoch = epoch
    total, seen = 0.0, 0
    bar = tqdm(t.train_loader, desc=f"{epoch + 1}/{opt.epochs}", disable=opt.quiet, bar_format="{l_bar}{bar:10}{r_bar}")
    for i, (imgs, labels) in enumerate(bar):
        ni = t.iteration
        set_lr(t.optimizer, h, opt.epochs, epoch, ni, t.warmup)
        with autocast(t.device, None):
            logits = model(preprocess(imgs, t.device))
        loss = F.cross_entropy(logits.float(), labels.to(t.device), label_smoothing=h.label_smoothing)
        if not torch.isfinite(loss):
            raise ConfigError(f"non-finite classification loss at epoch {epoch + 1} batch {i}: lower hyp lr0")
        (loss * imgs.shape[0] / opt.batch_size).backward()
        t.iteration += 1
        last = epoch == opt.epochs - 1 and i == len(t.train_loader) - 1
        if ni - t.last_step >= accumulation_at(ni, t.warmup, t.accumulate) or last:
            nn.utils.clip_grad_norm_(model.parameters(), h.grad_clip if h.grad_clip > 0 else math.inf)
            t.optimizer.step()
            t.optimizer.zero_grad(set_to_none=True)
            if t.ema is not None:
                t.ema.update(model)
            t.last_step = ni
        total, seen = total + float(loss.detach()) * imgs.shape[0], seen + imgs.shape[0]
        bar.set_postfix_str(f"loss={total / seen:.4f}")
    return total / max(seen, 1)


def test_classifier(weights: str, data: str, split: str, img_size: int | None, batch_size: int, device: str,
                    save_dir: Path) -> dict[str, Any]:
    """``test.py`` for a classifier checkpoint: top-1 / top-5 on ``split``, written to metrics.json.
    ``img_size`` None: the size the checkpoint was trained at."""
    import json
    from utils.train.checkpoint import load_model
    dev = select_device(device)
    model, ckpt = load_model(weights, dev)
    size = img_size or int(ckpt.get("opt", {}).get("img_size") or 224)
    s = load_classify_split(load_classify_config(data), split, tuple(ckpt["names"]))
    m = evaluate_classifier(model, build_classify_loader(s, size, batch_size), dev)
    LOGGER.info("%s split '%s': %d images, top-1 %.4f  top-5 %.4f  (img-size %d)", data, split, m["images"],
                m["top1"], m["top5"], size)
    save_dir.mkdir(parents=True, exist_ok=True)
    out = {**m, "weights": str(weights), "data": str(data), "split": split, "img_size": size}
    (save_dir / "metrics.json").write_text(json.dumps(out, indent=2))
    return out
