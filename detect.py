"""Run a trained checkpoint on images, folders, globs, videos or list files; save what it finds.

    python detect.py --weights runs/train/exp/weights/best.pt --source data/images --img-size 640
    python detect.py --weights best.pt --source "imgs/*.jpg" --save-txt --save-conf --save-json --augment

Outputs go to ``--project/--name`` (``runs/detect/exp``, then ``exp2``, ``exp3``, ...): annotated
images and videos (unless ``--nosave``), ``labels/<stem>.txt`` in YOLO format ``cls cx cy w h
[conf]`` normalised to the original image (``<stem>_<frame>.txt`` for video frames; an empty file
when nothing is found), and ``predictions.json`` (COCO results) with ``--save-json``.
Bad input (missing source, wrong checkpoint) exits with status 2 and a one-line message.
"""
from __future__ import annotations

from utils.cli.cpu_env import choose_openmp_wait_policy

choose_openmp_wait_policy()  # before torch (and its OpenMP) loads; see utils/cli/cpu_env.py

import argparse
import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

from utils.cli.checks import OneLineParser, int_at_least
from utils.cli.common import (add_device_flags, add_nms_flags, add_run_dir_flags, exit_code, fp16_on, img_size_for,
                              log_to_terminal)
from utils.cli.device import select_device
from utils.config import ConfigError
from utils.infer.annotate import annotate, coco_image_id, coco_results, count_per_class, yolo_label_lines
from utils.infer.load import class_names, load_detector
from utils.infer.predict import VideoOut, infer
from utils.infer.sources import SourceError, iter_frames, resolve_source
from utils.ops.nms import NMS_KINDS
from utils.train.runs import increment_path

LOGGER = logging.getLogger(__name__)


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    ap = OneLineParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True, help="checkpoint written by train.py")
    ap.add_argument("--source", required=True, help="image, video, folder, glob pattern or .txt list of paths")
    ap.add_argument("--img-size", type=int_at_least(1), default=640, help="inference size (long side, pixels)")
    add_nms_flags(ap, conf_thres=0.25, iou_thres=0.45, kinds=NMS_KINDS)
    ap.add_argument("--classes", type=int_at_least(0), nargs="+", help="keep only these class indices")
    ap.add_argument("--agnostic-nms", action="store_true", help="suppress across classes")
    ap.add_argument("--save-txt", action="store_true", help="write labels/*.txt")
    ap.add_argument("--save-conf", action="store_true", help="append the score to --save-txt lines")
    ap.add_argument("--save-json", action="store_true", help="write predictions.json (COCO results)")
    ap.add_argument("--nosave", action="store_true", help="do not write annotated images/videos")
    ap.add_argument("--line-thickness", type=int_at_least(1), default=3, help="box line width (pixels)")
    ap.add_argument("--hide-labels", action="store_true", help="draw boxes without labels")
    ap.add_argument("--hide-conf", action="store_true", help="draw labels without scores")
    add_device_flags(ap)
    add_run_dir_flags(ap, "runs/detect")
    return ap.parse_args(argv)


def run(opt: argparse.Namespace) -> dict:
    """Detect on every frame of ``opt.source``; returns counts and the run folder."""
    files = resolve_source(opt.source)
    device = select_device(opt.device)
    half = fp16_on(device, opt.half)
    model, ckpt = load_detector(opt.weights, device, half)
    stride = int(model.stride.max())
    img_size = img_size_for(opt.img_size, stride)
    names, category_ids = class_names(ckpt, model.nc), ckpt.get("category_ids")
    if opt.classes and max(opt.classes) >= model.nc:
        raise ConfigError(f"--classes {max(opt.classes)}: {opt.weights} predicts {model.nc} classes (0-{model.nc - 1})")
    save_dir = increment_path(Path(opt.project) / opt.name, opt.exist_ok)
    (save_dir / "labels" if opt.save_txt else save_dir).mkdir(parents=True, exist_ok=True)
    times, seen, skipped, results, video = np.zeros(3), 0, [], [], VideoOut()
    for frame in iter_frames(files):
        if frame.image is None:
            LOGGER.warning("warning: cannot read %s %s (damaged or not an image), skipped",
                           "video" if frame.is_video else "image", frame.path)
            skipped.append(str(frame.path))
            continue
        t = times.sum()
        det = infer(model, frame.image, opt, img_size, stride, times)
        seen += 1
        stem = f"{frame.path.stem}_{frame.frame}" if frame.is_video else frame.path.stem
        h, w = frame.image.shape[:2]
        where = f"video {frame.path} ({frame.frame}/{frame.n_frames})" if frame.is_video else f"image {frame.path}"
        LOGGER.info("%s %dx%d: %s, %.1f ms", where, w, h, count_per_class(det, names), (times.sum() - t) * 1e3)
        if opt.save_txt:
            lines = yolo_label_lines(det, (h, w), opt.save_conf)
            (save_dir / "labels" / f"{stem}.txt").write_text("".join(s + "\n" for s in lines))
        if opt.save_json:
            results += coco_results(det, coco_image_id(Path(stem)), category_ids)
        if not opt.nosave:
            img = annotate(frame.image, det, names, opt.line_thickness, opt.hide_labels, opt.hide_conf)
            if frame.is_video:
                video.write(save_dir / f"{frame.path.stem}.mp4", frame, img)
            else:
                cv2.imwrite(str(save_dir / frame.path.name), img)
    video.close()
    if opt.save_json:
        (save_dir / "predictions.json").write_text(json.dumps(results))
    ms = times / max(seen, 1) * 1e3
    LOGGER.info("Speed: %.1f ms pre-process, %.1f ms inference, %.1f ms NMS per image (img-size %d, %s%s)",
                *ms, img_size, device, (", fp16" if half else "") + (", augmented x3" if opt.augment else ""))
    LOGGER.info("%d image(s)/frame(s) processed, %d skipped (unreadable)%s", seen, len(skipped),
                ": " + ", ".join(skipped) if skipped else "")
    LOGGER.info("Results saved to %s", save_dir)
    return {"save_dir": save_dir, "seen": seen, "skipped": skipped}


def main(argv: list[str] | None = None) -> int:
    opt = parse_opt(argv)
    log_to_terminal()
    # CheckpointError and ModelConfigError are ConfigErrors
    return exit_code(lambda: run(opt), errors=(ConfigError, SourceError))


if __name__ == "__main__":
    sys.exit(main())
