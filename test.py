"""Evaluate a checkpoint, or a saved COCO-format detections file, on a dataset split.

    python test.py --weights runs/train/exp/weights/best.pt --data data/coco_vehicles.yaml --img-size 640
    python test.py --weights best.pt --data data/coco.yaml --task val --nms diou --augment --save-json --verbose
    python test.py --predictions other_detector.json --data data/coco_vehicles.yaml   # no model needed

The model path runs the same ``utils.eval.evaluate.evaluate()`` as training. Both paths print the
Class / Images / Instances / P / R / mAP@.5 / mAP@.5:.95 table (per class with ``--verbose``) and,
for COCO JSON datasets, pycocotools' COCOeval summary. The run folder (``runs/test/exp``, then
``exp2`` ...) receives ``metrics.json``, the PR / F1 / P / R curves and ``confusion_matrix.png``
(unless ``--no-plots``) and, with ``--save-json``, ``predictions.json`` (COCO results).
Bad input exits with status 2 and a one-line ``error: ...``.
"""
from __future__ import annotations

from utils.cli.cpu_env import choose_openmp_wait_policy

choose_openmp_wait_policy()  # before torch (and its OpenMP) loads; see utils/cli/cpu_env.py

import argparse
import sys
from pathlib import Path

from utils.cli.checks import OneLineParser, int_at_least
from utils.cli.common import add_device_flags, add_nms_flags, add_run_dir_flags, exit_code, fp16_on, log_to_terminal
from utils.config import ConfigError


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    ap = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="", help="checkpoint written by train.py")
    ap.add_argument("--predictions", default="", help="COCO results JSON to score instead of running a model")
    ap.add_argument("--data", required=True, help="dataset YAML")
    ap.add_argument("--task", choices=("val", "test", "train"), default="val", help="split to evaluate")
    ap.add_argument("--img-size", type=int_at_least(1), default=None,
                    help="inference size (long side, pixels; default 640, a classifier: its training size)")
    ap.add_argument("--batch-size", type=int_at_least(1), default=32)
    add_nms_flags(ap, conf_thres=0.001, iou_thres=0.65, kinds=("nms", "diou"))
    ap.add_argument("--save-json", action="store_true", help="write predictions.json (COCO results)")
    ap.add_argument("--verbose", action="store_true", help="one table row per class")
    ap.add_argument("--no-plots", action="store_true", help="skip the PR / F1 / P / R curves and confusion matrix")
    add_device_flags(ap)
    ap.add_argument("--workers", type=int_at_least(0), default=2, help="data loader workers")
    add_run_dir_flags(ap, "runs/test")
    return ap.parse_args(argv)


def load_for_eval(opt: argparse.Namespace):
    """Checkpoint -> ``(fused eval model, checkpoint dict, device, half)``; checked before the data."""
    from utils.cli.device import select_device
    from utils.infer.load import load_detector

    device = select_device(opt.device)
    half = fp16_on(device, opt.half)
    model, ckpt = load_detector(opt.weights, device, half)
    return model, ckpt, device, half


def _is_classifier(weights: str) -> bool:
    from utils.train.checkpoint import load_checkpoint
    return Path(weights).suffix != ".weights" and load_checkpoint(weights).get("task") == "classify"


def run(opt: argparse.Namespace) -> dict:
    """Evaluate ``opt.weights`` or ``opt.predictions`` on split ``opt.task`` of ``opt.data``."""
    from utils.data.config import load_data_config
    from utils.data.datasets import load_split
    from utils.eval.coco_io import load_coco_predictions
    from utils.eval.scoring import evaluate_file, evaluate_model, report
    from utils.train.runs import increment_path

    if bool(opt.weights) == bool(opt.predictions):
        raise ConfigError("give exactly one of --weights (evaluate a model) or --predictions (score a COCO "
                          "results JSON)")
    if opt.weights and not Path(opt.weights).is_file():
        raise ConfigError(f"--weights: checkpoint not found: {opt.weights}")
    if opt.augment and not opt.weights:
        raise ConfigError("--augment re-runs a model (--weights); --predictions scores a saved file as it is")
    if opt.weights and _is_classifier(opt.weights):  # top-1 / top-5 of a train.py --task classify checkpoint
        if opt.augment:
            raise ConfigError(f"--augment: {opt.weights} is a classifier; test-time augmentation is for detectors")
        from utils.train.classify import test_classifier
        save_dir = increment_path(Path(opt.project) / opt.name, opt.exist_ok)
        return {"save_dir": save_dir, "metrics": test_classifier(opt.weights, opt.data, opt.task, opt.img_size,
                                                                   opt.batch_size, opt.device, save_dir)}
    opt.img_size = opt.img_size or 640
    loaded = load_for_eval(opt) if opt.weights else None  # model and detections are checked before the data
    entries = load_coco_predictions(opt.predictions) if opt.predictions else None
    info = load_split(load_data_config(opt.data), opt.task, workers=max(opt.workers, 1))
    speed = dropped = None
    if loaded:
        metrics, detections, speed = evaluate_model(opt, info, loaded)
    else:
        metrics, detections, dropped = evaluate_file(opt, info, entries)
    save_dir = increment_path(Path(opt.project) / opt.name, opt.exist_ok)
    save_dir.mkdir(parents=True, exist_ok=True)
    data = report(opt, info, metrics, detections, save_dir, speed, dropped)
    return {"save_dir": save_dir, "metrics": data}


def main(argv: list[str] | None = None) -> int:
    opt = parse_opt(argv)
    log_to_terminal()
    return exit_code(lambda: run(opt))  # CheckpointError and ModelConfigError are ConfigErrors


if __name__ == "__main__":
    sys.exit(main())
