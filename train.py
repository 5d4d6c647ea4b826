"""Train any model YAML on any dataset YAML, on CPU or CUDA, one GPU or many (torchrun).

    python train.py                                   # the main job: a small model on the embedded shapes set
    python train.py --cfg configs/yolov4_resnet50.yaml --data data/coco_vehicles.yaml --img-size 640 --epochs 100
    python train.py --resume                          # continue the latest run exactly
    python train.py --task classify                   # Darknet-19 (width 0.25) on the embedded shapes_cls crops
    python train.py --task classify --cfg configs/darknet19_cls.yaml --data imagenet.yaml --hyp configs/hyp.classify.yaml --img-size 224 --epochs 160
    torchrun --nproc_per_node 2 train.py --cfg ... --data ... --sync-bn
"""
from __future__ import annotations

from utils.cli.cpu_env import choose_openmp_wait_policy

choose_openmp_wait_policy()  # before torch (and its OpenMP) loads; see utils/cli/cpu_env.py

import argparse
import logging
import os
import sys
from pathlib import Path

from utils.cli.checks import OneLineParser, check_freeze, float_in, int_at_least
from utils.cli.common import exit_code, log_to_terminal
from utils.config import OPTIMIZERS, ConfigError
from utils.train.options import (AMP_CHOICES, CACHE_CHOICES, NMS_KINDS, TASKS, RunComplete, TrainOptions,
                                 options_from_args, resolve_resume)

LOGGER = logging.getLogger("train")


def parse_args(argv: list[str] | None = None) -> TrainOptions:
    """The command line as options (an omitted flag takes its --task default; see utils/train/options.py)."""
    ap = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=TASKS, default="detect",
                    help="classify: an image classifier (Classify head) on an imagefolder dataset")
    ap.add_argument("--cfg", default=None, help="model YAML (default configs/yolov4_n.yaml; classify: darknet19_cls_n.yaml)")
    ap.add_argument("--data", default=None, help="dataset YAML (default data/shapes.yaml; classify: data/shapes_cls.yaml)")
    ap.add_argument("--hyp", default=None, help="hyperparameter YAML (default configs/hyp.shapes.yaml; classify: "
                    "hyp.classify_shapes.yaml; hyp.scratch.yaml: yolov5-style long runs)")
    ap.add_argument("--weights", default="", help="initial weights: a checkpoint of this framework (matching tensors)")
    ap.add_argument("--epochs", type=int_at_least(1), default=None, help="default 40 (classify: 30)")
    ap.add_argument("--batch-size", type=int_at_least(1), default=None, help="total batch size over all processes (default 16; classify: 32)")
    ap.add_argument("--img-size", type=int_at_least(1), default=None, help="train and val image size (pixels; default 160, classify: 64)")
    ap.add_argument("--device", default=None, help="cpu, 0, cuda:0 ... (default: CUDA if available)")
    ap.add_argument("--workers", type=int_at_least(0), default=None,
                    help="data loader workers per process (default: min(8, cores) on CUDA, cores // 4 on CPU)")
    ap.add_argument("--project", default=None, help="parent of the run folders (default runs/train; --evolve: runs/evolve)")
    ap.add_argument("--name", default="exp")
    ap.add_argument("--exist-ok", action="store_true", help="reuse project/name instead of incrementing")
    ap.add_argument("--resume", nargs="?", const=True, default=False, help="resume the latest run, or the given last.pt")
    ap.add_argument("--evolve", type=int_at_least(1), default=None, metavar="N",
                    help="hyperparameter evolution: N generations of mutated --hyp values (utils/train/evolve.py)")
    ap.add_argument("--seed", type=int_at_least(0), default=0)
    ap.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help="overrides the hyp YAML")
    ap.add_argument("--cos-lr", action="store_true", help="cosine LR schedule (overrides the hyp YAML)")
    ap.add_argument("--close-mosaic", type=int_at_least(0), default=None, metavar="N",
                    help="no mosaic in the last N epochs (YOLOv8's close_mosaic; overrides the hyp YAML's, default 0)")
    ap.add_argument("--multi-scale", action="store_true", help="vary the image size every few batches (seed 004)")
    ap.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP")
    ap.add_argument("--patience", type=int_at_least(0), default=100, help="early stopping: epochs without improvement (0 = off)")
    ap.add_argument("--freeze", type=int_at_least(0), nargs="+", default=[],
                    help="freeze the first N layers, or these layer indices")
    ap.add_argument("--cache", choices=CACHE_CHOICES, default="auto",
                    help="decoded images in RAM: auto = when train + val take <= 1 GiB and 10%% of the free memory")
    ap.add_argument("--amp", choices=AMP_CHOICES, default="auto",
                    help="mixed precision: auto = fp16 on CUDA, off on CPU")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                    help="train in channels_last memory format (faster convolutions on CPU and CUDA)")
    ap.add_argument("--noval", action="store_true",
                    help="validate after the final epoch only (faster; no per-epoch mAP, early stopping or best.pt "
                         "before the end)")
    ap.add_argument("--val-interval", type=int_at_least(1), default=None,
                    help="validate after every Nth epoch and after the last (default 4, as darknet's -map; 1: every "
                         "epoch, as yolov5)")
    ap.add_argument("--nms", choices=NMS_KINDS, default="nms", help="NMS kind for validation")
    ap.add_argument("--iou-thres", type=float_in(0, 1), default=0.65, help="validation NMS IoU threshold")
    ap.add_argument("--noautoanchor", action="store_true", help="keep the YAML anchors even if k-means fits better")
    ap.add_argument("--nan-retries", type=int_at_least(0), default=3, help="reloads of last.pt after repeated non-finite losses")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--download", action="store_true",
                    help="allow the dataset YAML's 'download' entry to run when the data is missing")
    ns = ap.parse_args(argv)
    for flag, given in (("--noval", ns.noval), ("--val-interval", ns.val_interval is not None)):
        if given and ns.task == "classify":
            ap.error(f"{flag} is for --task detect (a classifier's validation takes a fraction of an epoch)")
    if ns.evolve and (ns.resume or ns.task == "classify"):
        ap.error("--evolve does not combine with " + ("--resume (run the same --evolve command again to continue an "
                 "evolution)" if ns.resume else "--task classify"))
    return options_from_args(ns)


def prepare(opt: TrainOptions) -> TrainOptions:
    """Before anything is built: resolve --resume (and say what its checkpoint names), check --freeze
    against the model, and fetch a missing dataset only with consent (--download, or a yes at a
    prompt). Returns the options of the run to train (under --resume: the checkpoint's)."""
    from models.yolo import load_model_cfg
    from utils.data.config import ensure_dataset, load_data_config
    from utils.train.checkpoint import RESUME_KEYS, load_checkpoint, require_keys, remove_stale_temporaries
    if opt.resume:
        opt = resolve_resume(opt) if not opt.save_dir else opt
        path = Path(opt.resume)
        LOGGER.info("--resume %s: the checkpoint names cfg %s, data %s, weights %s", path, opt.cfg, opt.data,
                    opt.weights or "(none)")
        require_keys(load_checkpoint(path), RESUME_KEYS, path, "resume")
        for name in ("last.pt", "best.pt"):
            remove_stale_temporaries(path.parent / name)
    if opt.weights:
        require_keys(load_checkpoint(opt.weights), ("model",), opt.weights, "take initial weights")
    if opt.freeze:
        rows = [load_model_cfg(opt.cfg).get(k) for k in ("backbone", "head")]
        if all(isinstance(r, list) for r in rows):  # otherwise building the model names the problem
            check_freeze(list(opt.freeze), len(rows[0]) + len(rows[1]), opt.cfg)
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:  # under torchrun rank 0 fetches after the processes connect
        ensure_dataset(load_data_config(opt.data), download=True, allowed=opt.download)
    return opt


def detect(opt: TrainOptions) -> None:
    """--task detect: N runs of mutated hyps under --evolve N, else one run."""
    from utils.train.evolve import run_evolution
    from utils.train.trainer import Trainer
    run = prepare(opt)
    if opt.evolve:
        print(run_evolution(run))
        return
    from utils.train import dist
    try:
        summary = Trainer(run).fit()
    finally:
        dist.cleanup()  # leave the torchrun process group (a no-op in one process)
    if dist.world()[0] <= 0:  # rank 0, or one process: under torchrun the other ranks hold no validation result
        print(f"mAP@0.5 {summary['map50']:.4f}  mAP@0.5:0.95 {summary['map']:.4f}  results in {summary['save_dir']}")


def classify(opt: TrainOptions) -> None:
    """--task classify: utils.train.classify's trainer (same optimiser, schedules, EMA and checkpoints)."""
    from utils.train.classify import ClassifyTrainer
    summary = ClassifyTrainer(opt).fit()
    print(f"top-1 {summary['top1']:.4f}  top-5 {summary['top5']:.4f}  (best top-1 {summary['best_top1']:.4f}) "
          f"in {summary['seconds']:.0f} s  results in {summary['save_dir']}")


def main(argv: list[str] | None = None) -> int:
    log_to_terminal()
    opt = parse_args(argv)
    if opt.task == "classify":
        return exit_code(lambda: classify(opt), interrupted="weights/last.pt holds the last finished epoch")
    from utils.train.trainer import TrainingStopped
    hint = ("evolve.csv keeps the finished generations; run the same command again" if opt.evolve else
            "weights/last.pt holds the last finished epoch; continue with --resume")
    return exit_code(lambda: detect(opt), errors=(ConfigError, TrainingStopped), done=(RunComplete,), interrupted=hint)


if __name__ == "__main__":
    sys.exit(main())
