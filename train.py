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

from utils.cli.checks import OneLineParser, check_freeze, float_in, int_at_least
from utils.config import ConfigError

LOGGER = logging.getLogger("train")
TASK_DEFAULTS = {  # what an omitted flag means for each --task
    "detect": {"cfg": "configs/yolov4_n.yaml", "data": "data/shapes.yaml", "hyp": "configs/hyp.shapes.yaml",
               "epochs": 40, "img_size": 160},
    "classify": {"cfg": "configs/darknet19_cls_n.yaml", "data": "data/shapes_cls.yaml",
                 "hyp": "configs/hyp.classify_shapes.yaml", "epochs": 30, "img_size": 64, "batch_size": 32},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=("detect", "classify"), default="detect",
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
    ap.add_argument("--optimizer", choices=("SGD", "Adam", "AdamW"), default=None, help="overrides the hyp YAML")
    ap.add_argument("--cos-lr", action="store_true", help="cosine LR schedule (overrides the hyp YAML)")
    ap.add_argument("--multi-scale", action="store_true", help="vary the image size every few batches (seed 004)")
    ap.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP")
    ap.add_argument("--patience", type=int_at_least(0), default=100, help="early stopping: epochs without improvement (0 = off)")
    ap.add_argument("--freeze", type=int_at_least(0), nargs="+", default=[],
                    help="freeze the first N layers, or these layer indices")
    ap.add_argument("--cache", choices=("ram",), default=None, help="cache decoded images in RAM")
    ap.add_argument("--amp", choices=("auto", "off", "fp16", "bf16"), default="auto",
                    help="mixed precision: auto = fp16 on CUDA, off on CPU")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                    help="train in channels_last memory format (faster convolutions on CPU and CUDA)")
    ap.add_argument("--nms", choices=("nms", "diou"), default="nms", help="NMS kind for validation")
    ap.add_argument("--iou-thres", type=float_in(0, 1), default=0.65, help="validation NMS IoU threshold")
    ap.add_argument("--noautoanchor", action="store_true", help="keep the YAML anchors even if k-means fits better")
    ap.add_argument("--nan-retries", type=int_at_least(0), default=3, help="reloads of last.pt after repeated non-finite losses")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--download", action="store_true",
                    help="allow the dataset YAML's 'download' entry to run when the data is missing")
    opt = ap.parse_args(argv)
    if opt.evolve and (opt.resume or opt.task == "classify"):
        ap.error("--evolve does not combine with " + ("--resume (run the same --evolve command again to continue an "
                 "evolution)" if opt.resume else "--task classify"))
    opt.project = opt.project or ("runs/evolve" if opt.evolve else "runs/train")
    for key in ("batch_size", "workers", "device", "epochs"):  # --resume keeps the run's values unless given
        setattr(opt, f"{key}_given", getattr(opt, key) is not None)
    defaults = TASK_DEFAULTS[opt.task] if not opt.resume else TASK_DEFAULTS["detect"]
    for key, value in defaults.items():
        if getattr(opt, key) is None:
            setattr(opt, key, value)
    opt.batch_size = 16 if opt.batch_size is None else opt.batch_size
    opt.device = "" if opt.device is None else opt.device
    return opt  # workers None: the Trainer picks the device's default


def prepare(opt: argparse.Namespace) -> None:
    """Before anything is built: say what a --resume checkpoint names, check --freeze against the
    model, and fetch a missing dataset only with consent (--download, or a yes at a prompt)."""
    from models.yolo import load_model_cfg
    from utils.data.config import ensure_dataset, load_data_config
    from utils.train.checkpoint import RESUME_KEYS, CheckpointError, load_checkpoint, require_keys, remove_stale_temporaries
    run = opt
    if opt.resume:
        from utils.train.trainer import resolve_resume
        try:
            run, path = resolve_resume(opt)
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"--resume {opt.resume}: not a checkpoint of a training run ({e!r} missing or "
                                  f"malformed)") from None
        LOGGER.info("--resume %s: the checkpoint names cfg %s, data %s, weights %s", path, run.cfg, run.data,
                    run.weights or "(none)")
        require_keys(load_checkpoint(path), RESUME_KEYS, path, "resume")
        for name in ("last.pt", "best.pt"):
            remove_stale_temporaries(path.parent / name)
    if run.weights:
        require_keys(load_checkpoint(run.weights), ("model",), run.weights, "take initial weights")
    if run.freeze:
        rows = [load_model_cfg(run.cfg).get(k) for k in ("backbone", "head")]
        if all(isinstance(r, list) for r in rows):  # otherwise building the model names the problem
            check_freeze(run.freeze, len(rows[0]) + len(rows[1]), run.cfg)
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:  # under torchrun rank 0 fetches after the processes connect
        ensure_dataset(load_data_config(run.data), download=True, allowed=opt.download)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    opt = parse_args(argv)
    from utils.train.trainer import RunComplete, Trainer, TrainingStopped, fit
    if opt.task == "classify":
        return classify(opt)
    try:
        prepare(opt)
        if opt.evolve:  # N ordinary runs of mutated hyps, one after another
            from utils.train.evolve import run_evolution
            print(run_evolution(opt))
            return 0
        summary = fit(Trainer(opt))
    except RunComplete as e:
        print(e)
        return 0
    except (ConfigError, TrainingStopped) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = ("evolve.csv keeps the finished generations; run the same command again" if opt.evolve else
                "weights/last.pt holds the last finished epoch; continue with --resume")
        print(f"interrupted: {hint}", file=sys.stderr)
        return 130
    if summary["save_dir"]:
        print(f"mAP@0.5 {summary['map50']:.4f}  mAP@0.5:0.95 {summary['map']:.4f}  results in {summary['save_dir']}")
    return 0


def classify(opt: argparse.Namespace) -> int:
    """--task classify: utils.train.classify's trainer (same optimiser, schedules, EMA and checkpoints)."""
    from utils.train.classify import ClassifyTrainer, fit_classifier
    try:
        summary = fit_classifier(ClassifyTrainer(opt))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: weights/last.pt holds the last finished epoch", file=sys.stderr)
        return 130
    print(f"top-1 {summary['top1']:.4f}  top-5 {summary['top5']:.4f}  (best top-1 {summary['best_top1']:.4f}) "
          f"in {summary['seconds']:.0f} s  results in {summary['save_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
