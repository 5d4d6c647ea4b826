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
import logging
import sys
from pathlib import Path

from utils.cli.checks import OneLineParser, float_in, int_at_least
from utils.config import ConfigError

LOGGER = logging.getLogger("test")


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    ap = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="", help="checkpoint written by train.py")
    ap.add_argument("--predictions", default="", help="COCO results JSON to score instead of running a model")
    ap.add_argument("--data", required=True, help="dataset YAML")
    ap.add_argument("--task", choices=("val", "test", "train"), default="val", help="split to evaluate")
    ap.add_argument("--img-size", type=int_at_least(1), default=None,
                    help="inference size (long side, pixels; default 640, a classifier: its training size)")
    ap.add_argument("--batch-size", type=int_at_least(1), default=32)
    ap.add_argument("--conf-thres", type=float_in(0, 1), default=0.001, help="score threshold (obj x class)")
    ap.add_argument("--iou-thres", type=float_in(0, 1), default=0.65, help="NMS IoU threshold")
    ap.add_argument("--nms", choices=("nms", "diou"), default="nms", help="suppression rule")
    ap.add_argument("--max-det", type=int_at_least(1), default=300, help="detections per image at most")
    ap.add_argument("--augment", action="store_true", help="test-time augmentation: scales 1/0.83/0.67, one flipped")
    ap.add_argument("--save-json", action="store_true", help="write predictions.json (COCO results)")
    ap.add_argument("--verbose", action="store_true", help="one table row per class")
    ap.add_argument("--no-plots", action="store_true", help="skip the PR / F1 / P / R curves and confusion matrix")
    ap.add_argument("--device", default="cpu", help="cpu, 0 or cuda:0")
    ap.add_argument("--half", action="store_true", help="FP16 inference (CUDA only)")
    ap.add_argument("--workers", type=int_at_least(0), default=2, help="data loader workers")
    ap.add_argument("--project", default="runs/test", help="parent folder of the run folders")
    ap.add_argument("--name", default="exp", help="run folder name (numbered when it exists)")
    ap.add_argument("--exist-ok", action="store_true", help="reuse --project/--name as is")
    return ap.parse_args(argv)


def _short(items: list, n: int = 8) -> str:
    """``items`` for a message, cut after ``n`` entries."""
    return str(list(items)) if len(items) <= n else f"[{', '.join(map(str, items[:n]))}, ...]"


def load_for_eval(opt: argparse.Namespace):
    """Checkpoint -> ``(fused eval model, checkpoint dict, device, half)``; checked before the data."""
    from detect import load_detector
    from utils.cli.device import select_device

    device = select_device(opt.device)
    half = opt.half and device.type == "cuda"
    if opt.half and not half:
        LOGGER.warning("warning: --half needs CUDA; running FP32 on %s", device)
    model, ckpt = load_detector(opt.weights, device, half)
    return model, ckpt, device, half


def evaluate_model(opt: argparse.Namespace, info, loaded):
    """``load_for_eval`` output -> ``(metrics, {record index: ImageDet}, speed ms per image)`` via
    the evaluate() that training uses."""
    from detect import class_names
    from utils.eval.evaluate import EvalSettings, evaluate
    from utils.data.loader import build_dataloader

    model, ckpt, device, half = loaded
    names = class_names(ckpt, model.nc)
    if model.nc != info.nc:
        raise ConfigError(f"{opt.weights}: the model predicts {model.nc} classes {_short(names)} but {opt.data} "
                          f"split '{opt.task}' has {info.nc} {_short(info.names)}; use the dataset YAML it was "
                          f"trained on")
    if names != info.names:
        LOGGER.warning("warning: checkpoint class names %s differ from the dataset's %s; the dataset's are used",
                       names, info.names)
    stride = int(model.stride.max())
    img_size = -(-opt.img_size // stride) * stride
    if img_size != opt.img_size:
        LOGGER.warning("warning: --img-size %d is not a multiple of the stride %d; using %d",
                       opt.img_size, stride, img_size)
    loader = build_dataloader(info, img_size, opt.batch_size, augment=False, rect=True, stride=stride,
                              workers=opt.workers)
    settings = EvalSettings(opt.conf_thres, opt.iou_thres, opt.nms, opt.max_det, half=half, augment=opt.augment)
    result = evaluate(model, loader, info.records, info.names, settings, device)
    LOGGER.info("Speed: %.1f ms pre-process, %.1f ms inference, %.1f ms NMS per image (img-size %d, batch %d, %s%s)",
                *result.speed_ms.values(), img_size, opt.batch_size, device,
                (", fp16" if half else "") + (", augmented x3" if opt.augment else ""))
    return result.metrics, result.detections, result.speed_ms


def evaluate_file(opt: argparse.Namespace, info, entries: list[dict]):
    """COCO results entries -> ``(metrics, {record index: ImageDet}, dropped counts)``, no model."""
    from utils.eval.coco_io import aligned, detections_from_coco
    from utils.eval.metrics import detection_metrics

    detections, dropped = detections_from_coco(entries, info)
    if dropped:
        LOGGER.warning("warning: %s: %d of %d detections dropped: %d on images not in split '%s', %d of "
                       "categories outside %s (category ids %s)", opt.predictions,
                       dropped.unknown_image + dropped.unknown_category, len(entries), dropped.unknown_image,
                       opt.task, dropped.unknown_category, _short(info.names), _short(info.category_ids))
    gts, dets = aligned(info, detections)
    return detection_metrics(gts, dets, info.nc, info.names), detections, dropped


def report(opt: argparse.Namespace, info, metrics, detections: dict, save_dir: Path, speed=None, dropped=None) -> dict:
    """Table, COCOeval, metrics.json, predictions.json and plots for one evaluation."""
    from utils.eval.evaluate import format_table
    from utils.eval.coco_io import aligned, coco_results_of, metrics_report, run_cocoeval, split_image_ids, write_json
    from utils.eval.metrics import confusion_matrix
    from utils.eval.plots_metrics import plot_detection_metrics

    lines = format_table(metrics).splitlines()
    LOGGER.info("\n".join(lines if opt.verbose else lines[:2]))
    coco_stats = None
    if info.annotation_json is not None:
        coco_stats, summary = run_cocoeval(info.annotation_json, coco_results_of(detections, info, rounded=False),
                                           split_image_ids(info), info.category_ids)
        LOGGER.info("pycocotools COCOeval (%s, %d images, category ids %s):\n%s", info.annotation_json.name,
                    len(info.records), info.category_ids, summary)
    if opt.save_json:
        write_json(save_dir / "predictions.json", coco_results_of(detections, info), indent=None)
    settings = {k: v for k, v in vars(opt).items() if k not in ("project", "name", "exist_ok")}
    data = metrics_report(metrics, coco_stats, settings, speed, dropped)
    write_json(save_dir / "metrics.json", data)
    if not opt.no_plots:
        gts, dets = aligned(info, detections)
        plot_detection_metrics(metrics, save_dir, confusion_matrix(gts, dets, info.nc))
    LOGGER.info("Results saved to %s", save_dir)
    return data


def _is_classifier(weights: str) -> bool:
    from utils.train.checkpoint import load_checkpoint
    return Path(weights).suffix != ".weights" and load_checkpoint(weights).get("task") == "classify"


def run(opt: argparse.Namespace) -> dict:
    """Evaluate ``opt.weights`` or ``opt.predictions`` on split ``opt.task`` of ``opt.data``."""
    from utils.data.config import load_data_config
    from utils.data.datasets import load_split
    from utils.eval.coco_io import load_coco_predictions
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
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        run(opt)
    except ConfigError as e:  # CheckpointError and ModelConfigError are ConfigErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
