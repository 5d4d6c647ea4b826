"""Everything train.py does, as build_* steps around the one epoch loop of utils.train.loop.

:class:`Trainer` builds one run from a :class:`~utils.train.options.TrainOptions` (from train.py's
flags, or from a checkpoint on --resume) and a Hyp, both read-only; ``Trainer(opt).fit()`` trains
it. Rank 0 evaluates, logs and writes checkpoints.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.yolo import Model
from utils.train import dist
from utils.train.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from utils.config import ConfigError, Hyp, hyp_from_dict
from utils.cli.device import select_device
from utils.train.ema import ModelEMA, unwrap
from utils.eval.evaluate import EvalSettings, evaluate, format_table, validation_losses
from utils.train.loop import LoopSettings, LoopState, NonFiniteLossError, TrainParts, is_finite_model, train_one_epoch
from utils.train.loss import build_criterion
from utils.train.options import TrainOptions, hyp_with_flags, options_to_dict, resolve_resume, run_hyp
from utils.train.runs import append_csv, increment_path, results_row, save_yaml, truncate_csv
from utils.train.schedule import build_optimizer, lr_factor, mosaic_on, validates, warmup_iterations

LOGGER = logging.getLogger(__name__)


class TrainingStopped(RuntimeError):
    """Training cannot go on (repeated non-finite losses); the message says why and what to do."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers(device: torch.device, world_size: int) -> int:
    """Loader workers per process when ``--workers`` is not given. CUDA: up to 8 per process
    (yolov5's default). CPU: a quarter of the cores, because every worker takes a core from the
    model (see cpu_threads); on 2 cores that is 0 -- measured on the main job, 2 torch threads
    with in-process loading trained an epoch in 11 s against 15-19 s for 1 thread beside 2 workers."""
    per_process = max(_cores() // max(world_size, 1), 1)
    return min(8, per_process) if device.type == "cuda" else per_process // 4


def cpu_threads(workers: int, world_size: int) -> None:
    """Leave a core to each loader worker: oversubscribed OpenMP threads spin and can make CPU
    training 10-40x slower (measured 0.23 s vs 6-10 s per step on 2 busy cores)."""
    threads = max(1, _cores() // max(world_size, 1) - workers)
    if torch.get_num_threads() > threads:
        torch.set_num_threads(threads)
        LOGGER.info("CPU training: %d torch thread(s) beside %d loader worker(s)", threads, workers)


def amp_dtype(choice: str, device: torch.device) -> torch.dtype | None:
    if choice == "off" or (choice == "auto" and device.type != "cuda"):
        return None
    if choice in ("auto", "fp16"):
        return torch.float16
    return torch.bfloat16


def resume_model_cfg(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The architecture a checkpoint was trained with (the YAML on disk may have changed since)."""
    cfg = dict(ckpt["model_cfg"])
    cfg.pop("pretrained", None)  # the weights come from the checkpoint, not from torchvision
    return cfg


def _transfer_weights(model: nn.Module, path: str) -> None:
    from utils.train.transfer import transfer_weights  # matching tensors, counted and logged (e.g. a classifier's backbone)
    counts = transfer_weights(model, path)
    if counts["transferred"] == 0:
        raise ConfigError(f"--weights {path}: none of its {counts['source_tensors']} tensors matches a tensor of "
                          f"the model (names or shapes differ); give weights of this architecture, or leave "
                          f"--weights out to train from scratch")


def _freeze(model: nn.Module, freeze: list[int]) -> None:
    layers = set(range(freeze[0])) if len(freeze) == 1 else set(freeze)
    for name, p in model.named_parameters():
        if name.startswith("model.") and int(name.split(".")[1]) in layers:
            p.requires_grad_(False)


def build_data(opt: TrainOptions):
    from utils.data.config import ensure_dataset, load_data_config
    from utils.data.datasets import load_split
    cfg = load_data_config(opt.data)
    if dist.is_main():
        ensure_dataset(cfg, download=True, allowed=opt.download)
    dist.barrier()
    return load_split(cfg, "train"), load_split(cfg, "val")


def build_model(opt: TrainOptions, nc: int, device: torch.device, bn_momentum: float = 0.03,
                cfg: dict[str, Any] | None = None) -> Model:
    """``cfg``: a resumed checkpoint's own architecture instead of the YAML that ``opt.cfg`` names."""
    model = Model(cfg if cfg is not None else opt.cfg, nc=nc)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = bn_momentum
    if opt.weights and cfg is None:  # on resume the checkpoint's weights replace them anyway
        _transfer_weights(model, opt.weights)
    if opt.freeze:
        _freeze(model, opt.freeze)
    model = model.to(device)
    # channels_last weights make every convolution (and the BN/activation between them) run in
    # NHWC; the input needs no conversion, the first convolution's output follows its weight.
    return model.to(memory_format=torch.channels_last) if opt.channels_last else model


def _check_anchors(model: Model, info, hyp: Hyp, img_size: int) -> None:
    from utils.ops.anchors import check_anchors
    det = model.detect
    bpr, new = check_anchors(info, det.anchors.view(-1, 2).cpu().numpy(), hyp.anchor_t, img_size)
    LOGGER.info("anchors: best possible recall %.4f", bpr)
    if new is not None:
        det.anchors.copy_(torch.as_tensor(new, dtype=det.anchors.dtype).view_as(det.anchors))
        LOGGER.info("anchors: replaced by k-means anchors (better recall on this dataset)")


class Trainer:
    """One run: the built pieces (model, criterion, optimiser, EMA, loaders) and :meth:`fit`, the
    epoch loop. ``opt.resume`` names the last.pt to continue (resolved by ``resolve_resume``; a
    bare ``--resume`` is resolved here); ``hyp``: train with it instead of ``opt.hyp`` (evolution)."""

    def __init__(self, opt: TrainOptions, hyp: Hyp | None = None):
        self.rank, local_rank, self.world = dist.world()
        self.device = select_device(opt.device, local_rank)
        if self.world > 1:
            dist.init(self.device)
        if opt.resume and not opt.save_dir:
            opt = resolve_resume(opt)
        ckpt = load_checkpoint(opt.resume) if opt.resume else None
        if hyp is None:
            hyp = hyp_with_flags(hyp_from_dict(ckpt["hyp"], str(opt.resume)), opt) if ckpt else run_hyp(opt)
        self.hyp = hyp
        seed_everything(opt.seed + max(self.rank, 0))
        if opt.workers is None:
            opt = dataclasses.replace(opt, workers=default_workers(self.device, self.world))
        if self.device.type == "cpu":
            cpu_threads(opt.workers, self.world)
        save_dir = Path(opt.save_dir) if ckpt else increment_path(Path(opt.project) / opt.name, opt.exist_ok)
        self.save_dir = Path(dist.broadcast_object(str(save_dir)))
        self.opt = opt = dataclasses.replace(opt, save_dir=str(self.save_dir))
        self.wdir = self.save_dir / "weights"
        self.train_info, self.val_info = build_data(opt)
        self.names = self.train_info.names
        self.model = build_model(opt, len(self.names), self.device, self.hyp.bn_momentum,
                                 resume_model_cfg(ckpt) if ckpt else None)
        gs = int(self.model.stride.max())
        if opt.img_size % gs:
            raise ConfigError(f"--img-size {opt.img_size} must be a multiple of the largest stride {gs}")
        if not ckpt and not opt.noautoanchor and dist.is_main():
            _check_anchors(self.model, self.train_info, self.hyp, opt.img_size)
        self._build_optimisation(gs)
        self.start_epoch, self.best_fitness, self.loop = 0, -1.0, LoopState()
        if ckpt:
            self.restore(ckpt)
        self._build_loaders(gs)

    def _build_optimisation(self, gs: int) -> None:
        hyp, opt = self.hyp, self.opt
        self.accumulate = max(round(hyp.nbs / opt.batch_size), 1)
        wd = hyp.weight_decay * opt.batch_size * self.accumulate / hyp.nbs
        self.optimizer = build_optimizer(self.model, hyp.optimizer, hyp.lr0, hyp.momentum, wd)
        self.amp = amp_dtype(opt.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        self.ema = ModelEMA(self.model, hyp.ema_decay, tau=hyp.ema_tau) if hyp.ema_decay > 0 and dist.is_main() else None
        self.criterion = build_criterion(self.model, hyp, image_size=opt.img_size)
        if self.world > 1:
            if opt.sync_bn and self.device.type == "cuda":
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            elif opt.sync_bn and dist.is_main():
                LOGGER.warning("--sync-bn ignored: PyTorch's SyncBatchNorm needs CUDA devices")
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def _build_loaders(self, gs: int) -> None:
        from utils.data.loader import LoaderSettings, MultiScale, build_dataloader
        from utils.data.ram_cache import available_memory, cache_bytes, decide_ram_cache
        opt, bs = self.opt, self.opt.batch_size // self.world
        need = cache_bytes([*self.train_info.records, *self.val_info.records], opt.img_size)  # rank 0's need
        ram, why = decide_ram_cache(opt.cache, need, self.world, available_memory())
        if dist.is_main():
            LOGGER.info(why)
        train = LoaderSettings(opt.img_size, bs, augment=True, shuffle=True, stride=gs, workers=opt.workers,
                               seed=opt.seed, cache_ram=ram, rank=self.rank, world_size=self.world)
        self.train_loader = build_dataloader(self.train_info, train, self.hyp)
        val = LoaderSettings(opt.img_size, bs * 2, rect=True, stride=gs, workers=opt.workers, cache_ram=ram)
        self.val_loader = build_dataloader(self.val_info, val, self.hyp) if dist.is_main() else None
        self.multi_scale = MultiScale.from_hyp(opt.img_size, self.hyp, gs, opt.seed) if opt.multi_scale else None

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Weights, optimiser, scaler, EMA, counters and RNG states of a checkpoint of this run."""
        try:
            unwrap(self.model).load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[1:2] or [str(e)[:200]]
            source = f"--resume {self.opt.resume}" if self.opt.resume else str(self.wdir / "last.pt")
            raise CheckpointError(f"{source}: its weights do not fit the model built from it and "
                                  f"{self.opt.data} ({len(self.names)} classes): {first[0].strip()}") from None
        if ckpt.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None and ckpt.get("ema") is not None:
            self.ema.ema.load_state_dict(ckpt["ema"])
            self.ema.updates = ckpt["ema_updates"]
        self.start_epoch, self.best_fitness = ckpt["epoch"] + 1, ckpt["best_fitness"]
        self.loop = LoopState(iteration=ckpt["loop"]["iteration"], last_opt_step=ckpt["loop"]["last_opt_step"],
                              recent=list(ckpt["loop"].get("recent", [])))
        set_rng_state(ckpt["rng"])
        LOGGER.info("resuming from epoch %d of %d", self.start_epoch + 1, self.opt.epochs)
        was = int(ckpt["opt"].get("epochs", self.opt.epochs))
        if was != self.opt.epochs:
            e = self.start_epoch
            LOGGER.info("--epochs %d: the run is extended from %d to %d epochs; the lr schedule is recomputed for %d "
                        "epochs (lr factor at epoch %d: %.4g of %d epochs -> %.4g of %d)", self.opt.epochs, was,
                        self.opt.epochs, self.opt.epochs, e + 1, lr_factor(self.hyp, was, e), was,
                        lr_factor(self.hyp, self.opt.epochs, e), self.opt.epochs)

    def checkpoint(self, epoch: int, metrics: dict[str, float], finished: bool = False) -> dict[str, Any]:
        """``finished``: the last epoch of the run (all epochs, or early stopping)."""
        return {"epoch": epoch, "finished": finished, "best_fitness": self.best_fitness,
                "model_cfg": unwrap(self.model).yaml,
                "names": list(self.names), "category_ids": list(self.train_info.category_ids),
                "model": unwrap(self.model).state_dict(),
                "ema": self.ema.ema.state_dict() if self.ema else None,
                "ema_updates": self.ema.updates if self.ema else 0,
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "loop": {"iteration": self.loop.iteration, "last_opt_step": self.loop.last_opt_step,
                         "recent": [float(v) for v in self.loop.recent]},
                "rng": rng_state(), "hyp": self.hyp.to_dict(), "opt": options_to_dict(self.opt), "metrics": metrics}

    def eval_model(self) -> nn.Module:
        """What each epoch validates: a copy of the EMA weights (the raw ones without EMA) with every
        Conv+BN folded, as test.py and detect.py run a checkpoint -- so validation reports their mAP,
        in ~2/3 of the unfused model's inference time (yolov4_n at 160 px on CPU)."""
        model = copy.deepcopy(self.ema.ema if self.ema else unwrap(self.model)).eval()
        model.fuse()
        return model.to(memory_format=torch.channels_last) if self.opt.channels_last else model

    def settings(self) -> LoopSettings:
        nb = len(self.train_loader)
        return LoopSettings(self.device, self.opt.epochs, self.accumulate, warmup_iterations(self.hyp, nb),
                            self.amp, show_progress=dist.is_main() and not self.opt.quiet)

    def parts(self) -> TrainParts:
        return TrainParts(self.model, self.criterion, self.optimizer, self.scaler, self.ema, self.multi_scale)

    def fit(self) -> dict[str, Any]:
        """The epoch loop: train, evaluate (rank 0, EMA weights), checkpoint, early-stop. Non-finite or
        exploding losses and a non-finite validation loss reload last.pt (``--nan-retries`` times).
        Returns ``{'save_dir', 'map50', 'map', 'best_fitness'}`` (the last epoch's mAPs)."""
        opt, main = self.opt, dist.is_main()
        log = _Logger(self) if main else None
        s, parts = self.settings(), self.parts()
        ev = EvalSettings(iou_thres=opt.iou_thres, nms=opt.nms)
        if main:
            _log_close_mosaic(self.hyp, opt.epochs)
        epoch, retries, stale, result = self.start_epoch, 0, 0, None
        while epoch < opt.epochs:
            self.train_loader.sampler.set_epoch(epoch)
            self.train_loader.sampler.set_mosaic(mosaic_on(self.hyp, opt.epochs, epoch))
            hook = log.first_batch if (main and epoch == 0) else None
            stop, diverged = False, None
            try:
                losses = train_one_epoch(parts, self.train_loader, self.hyp, epoch, s, self.loop, first_batch_hook=hook)
                if not is_finite_model(self.model):
                    raise NonFiniteLossError(f"weights became non-finite in epoch {epoch + 1}")
            except NonFiniteLossError as err:
                diverged = str(err)
            if main and diverged is None:
                if validates(epoch, opt.epochs, opt.val_interval, opt.noval):
                    result = evaluate(self.eval_model(), self.val_loader, self.val_info.records,
                                      self.names, ev, self.device, self.criterion, show_progress=not opt.quiet)
                    val_losses = result.losses
                else:  # not validated (--val-interval, --noval): the divergence check still sees a val batch
                    result = None
                    weights = self.ema.ema if self.ema else self.model   # unfolded: no copy for one batch
                    val_losses = validation_losses(weights, self.val_loader, self.device, self.criterion)
                diverged = _diverged(val_losses, losses, epoch)
                if diverged is None:
                    stop, stale = self._end_epoch(log, epoch, losses, result, stale)
            stop, diverged = dist.broadcast_object((stop, diverged))  # one decision for every rank
            if diverged:
                retries += 1
                epoch, result = self._recover(NonFiniteLossError(diverged), retries), None
                continue
            epoch += 1
            if stop:
                break
        if main:
            log.close()
        dist.barrier()
        m = result.metrics if result else None
        return {"save_dir": str(self.save_dir), "map50": m.map50 if m else math.nan, "map": m.map if m else math.nan,
                "best_fitness": self.best_fitness}

    def _recover(self, err: NonFiniteLossError, retries: int) -> int:
        """Reload last.pt after repeated non-finite losses; returns the epoch to restart from."""
        last = self.wdir / "last.pt"
        if retries > self.opt.nan_retries or not last.exists():
            why = "no last.pt to reload yet" if not last.exists() else f"still failing after {retries - 1} reload(s)"
            raise TrainingStopped(f"training stopped: {err}; {why}. Lower the learning rate (hyp lr0), check the "
                                  f"data for extreme boxes, or disable AMP (--amp off).") from None
        LOGGER.warning("%s: reloading %s (attempt %d of %d)", err, last, retries, self.opt.nan_retries)
        self.restore(load_checkpoint(last))
        return self.start_epoch

    def _end_epoch(self, log: _Logger, epoch: int, losses: dict, result, stale: int) -> tuple[bool, int]:
        """Rank 0 after a good epoch: checkpoints, results row, early stopping. Returns ``(stop, stale)``.
        ``result`` None (an epoch not validated): last.pt and the row's training columns only. ``stale``
        counts epochs since the last improvement, validated or not, so ``--patience`` stays in epochs."""
        opt = self.opt
        row = results_row(epoch, losses, result, [g["lr"] for g in self.optimizer.param_groups])
        if result is None:
            save_checkpoint(self.checkpoint(epoch, {}), self.wdir / "last.pt")
            log.epoch(row)
            LOGGER.info("epoch %d/%d (%s)", epoch + 1, opt.epochs, _next_validation(opt, epoch))
            return False, stale + 1
        fitness = result.metrics.fitness
        improved = fitness > self.best_fitness
        stale = 0 if improved else stale + 1
        self.best_fitness = max(fitness, self.best_fitness)
        stop = opt.patience > 0 and stale >= opt.patience
        ckpt = self.checkpoint(epoch, {k: v for k, v in row.items() if k.startswith("metrics/")},
                               finished=stop or epoch + 1 >= opt.epochs)
        save_checkpoint(ckpt, self.wdir / "last.pt")
        if improved:
            save_checkpoint(ckpt, self.wdir / "best.pt")
        log.epoch(row)
        LOGGER.info("epoch %d/%d\n%s", epoch + 1, opt.epochs, format_table(result.metrics))
        if stop:
            LOGGER.info("early stopping: no improvement in %d epochs", opt.patience)
        return stop, stale


class _Logger:
    """Rank-0 outputs of a run: options, hyp, results.csv, TensorBoard scalars, plots."""

    def __init__(self, t: Trainer):
        from torch.utils.tensorboard import SummaryWriter
        from utils.eval.plots import plot_labels
        t.wdir.mkdir(parents=True, exist_ok=True)
        save_yaml(t.save_dir / "hyp.yaml", t.hyp.to_dict())
        save_yaml(t.save_dir / "opt.yaml", options_to_dict(t.opt))
        self.csv = t.save_dir / "results.csv"
        if t.start_epoch:
            truncate_csv(self.csv, t.start_epoch)
        else:
            self.csv.unlink(missing_ok=True)
            plot_labels(t.train_info.records, t.names, t.save_dir / "labels.png")
        self.tb = SummaryWriter(str(t.save_dir))
        self.save_dir, self.names = t.save_dir, t.names

    def first_batch(self, imgs: torch.Tensor, targets: torch.Tensor) -> None:
        from utils.eval.plots import plot_batch
        plot_batch(imgs, targets, self.names, self.save_dir / "train_batch0.jpg")

    def epoch(self, row: dict[str, Any]) -> None:
        append_csv(self.csv, row)
        for k, v in row.items():
            if k != "epoch" and v != "":   # "": a column an epoch under --noval has no value for
                self.tb.add_scalar(k, v, row["epoch"])
        self.tb.flush()

    def close(self) -> None:
        from utils.eval.plots import plot_results
        plot_results(self.csv, self.save_dir / "results.png")
        self.tb.close()


def _next_validation(opt: TrainOptions, epoch: int) -> str:
    """What an epoch without validation says about the next one."""
    if opt.noval:
        return f"--noval: validated after epoch {opt.epochs} only"
    nxt = next(e for e in range(epoch + 1, opt.epochs) if validates(e, opt.epochs, opt.val_interval))
    return f"--val-interval {opt.val_interval}: next validation after epoch {nxt + 1}"


def _log_close_mosaic(hyp: Hyp, epochs: int) -> None:
    """Say from which epoch hyp ``close_mosaic`` trains without mosaic; a warning where no epoch keeps it."""
    if hyp.mosaic <= 0 or not hyp.close_mosaic:
        return
    first = epochs - hyp.close_mosaic
    if first <= 0:
        LOGGER.warning("hyp close_mosaic %d >= --epochs %d: no epoch of this run uses mosaic", hyp.close_mosaic, epochs)
    else:
        LOGGER.info("close_mosaic: mosaic off from epoch %d of %d", first + 1, epochs)


VAL_EXPLODE_FACTOR = 1000.0  # measured: a healthy first epoch's validation loss is 1-4x the training loss


def _diverged(val_losses: dict[str, float], train_losses: dict[str, float], epoch: int) -> str | None:
    """A validation loss that is not finite, or ``VAL_EXPLODE_FACTOR`` times the epoch's training
    loss, means the weights have blown up even where the training losses still passed (e.g. SGD at
    lr0 1.0 without clipping: training losses ~0.3, validation 3e15 through exploded BatchNorm
    statistics): treat it like repeated non-finite training losses. ``val_losses``: a validation's, or on
    an epoch that is not validated, one validation batch's (:func:`validation_losses`)."""
    bad = [k for k, v in val_losses.items() if not math.isfinite(v)]
    if bad:
        return f"non-finite validation {'/'.join(bad)} loss after epoch {epoch + 1}"
    val, train = sum(val_losses.values()), sum(train_losses.values())
    if val > VAL_EXPLODE_FACTOR * max(train, 1e-12):
        return (f"exploded validation loss {val:.3g} after epoch {epoch + 1} ({val / max(train, 1e-12):.3g}x the "
                f"training loss {train:.3g})")
    return None
