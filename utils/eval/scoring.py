"""test.py's two ways to score a split -- a checkpoint through the ``evaluate()`` training uses, or
a saved COCO results file with no model -- and the report both end in (table, COCOeval,
metrics.json, predictions.json, plots)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from utils.config import ConfigError

LOGGER = logging.getLogger(__name__)


def short_list(items: list, n: int = 8) -> str:
    """``items`` for a message, cut after ``n`` entries."""
    return str(list(items)) if len(items) <= n else f"[{', '.join(map(str, items[:n]))}, ...]"


def evaluate_model(opt: argparse.Namespace, info, loaded):
    """``(model, ckpt, device, half)`` -> ``(metrics, {record index: ImageDet}, speed ms per image)``
    via the evaluate() that training uses."""
    from utils.cli.common import img_size_for
    from utils.data.loader import LoaderSettings, build_dataloader
    from utils.eval.evaluate import EvalSettings, evaluate
    from utils.infer.load import class_names

    model, ckpt, device, half = loaded
    names = class_names(ckpt, model.nc)
    if model.nc != info.nc:
        raise ConfigError(f"{opt.weights}: the model predicts {model.nc} classes {short_list(names)} but {opt.data} "
                          f"split '{opt.task}' has {info.nc} {short_list(info.names)}; use the dataset YAML it was "
                          f"trained on")
    if names != info.names:
        LOGGER.warning("warning: checkpoint class names %s differ from the dataset's %s; the dataset's are used",
                       names, info.names)
    stride = int(model.stride.max())
    img_size = img_size_for(opt.img_size, stride)
    loader = build_dataloader(info, LoaderSettings(img_size, opt.batch_size, augment=False, rect=True, stride=stride,
                                                   workers=opt.workers))
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
                       opt.task, dropped.unknown_category, short_list(info.names), short_list(info.category_ids))
    gts, dets = aligned(info, detections)
    return detection_metrics(gts, dets, info.nc, info.names), detections, dropped


def report(opt: argparse.Namespace, info, metrics, detections: dict, save_dir: Path, speed=None, dropped=None) -> dict:
    """Table, COCOeval, metrics.json, predictions.json and plots for one evaluation."""
    from utils.eval.coco_io import aligned, coco_results_of, metrics_report, run_cocoeval, split_image_ids, write_json
    from utils.eval.evaluate import format_table
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
