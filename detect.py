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
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from utils.infer.annotate import annotate, coco_image_id, coco_results, count_per_class, yolo_label_lines
from utils.data.augment import letterbox
from utils.train.checkpoint import CheckpointError, load_model
from utils.cli.checks import OneLineParser, float_in, int_at_least
from utils.config import ConfigError
from utils.ops.nms import NMS_KINDS, non_max_suppression, scale_boxes
from utils.cli.device import select_device
from utils.train.runs import increment_path
from utils.infer.sources import Frame, SourceError, iter_frames, resolve_source
from utils.eval.tta import forward as tta_forward

LOGGER = logging.getLogger(__name__)


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    ap = OneLineParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True, help="checkpoint written by train.py")
    ap.add_argument("--source", required=True, help="image, video, folder, glob pattern or .txt list of paths")
    ap.add_argument("--img-size", type=int_at_least(1), default=640, help="inference size (long side, pixels)")
    ap.add_argument("--conf-thres", type=float_in(0, 1), default=0.25, help="score threshold (obj x class)")
    ap.add_argument("--iou-thres", type=float_in(0, 1), default=0.45, help="NMS threshold")
    ap.add_argument("--classes", type=int_at_least(0), nargs="+", help="keep only these class indices")
    ap.add_argument("--agnostic-nms", action="store_true", help="suppress across classes")
    ap.add_argument("--nms", choices=NMS_KINDS, default="nms", help="suppression rule")
    ap.add_argument("--max-det", type=int_at_least(1), default=300, help="detections per image at most")
    ap.add_argument("--augment", action="store_true", help="test-time augmentation: scales 1/0.83/0.67, one flipped")
    ap.add_argument("--save-txt", action="store_true", help="write labels/*.txt")
    ap.add_argument("--save-conf", action="store_true", help="append the score to --save-txt lines")
    ap.add_argument("--save-json", action="store_true", help="write predictions.json (COCO results)")
    ap.add_argument("--nosave", action="store_true", help="do not write annotated images/videos")
    ap.add_argument("--line-thickness", type=int_at_least(1), default=3, help="box line width (pixels)")
    ap.add_argument("--hide-labels", action="store_true", help="draw boxes without labels")
    ap.add_argument("--hide-conf", action="store_true", help="draw labels without scores")
    ap.add_argument("--device", default="cpu", help="cpu, 0 or cuda:0")
    ap.add_argument("--half", action="store_true", help="FP16 inference (CUDA only)")
    ap.add_argument("--project", default="runs/detect", help="parent folder of the run folders")
    ap.add_argument("--name", default="exp", help="run folder name (numbered when it exists)")
    ap.add_argument("--exist-ok", action="store_true", help="reuse --project/--name as is")
    return ap.parse_args(argv)


def load_detector(weights: str, device: torch.device, half: bool):
    """Checkpoint -> fused eval model on ``device``; any malformed checkpoint is a CheckpointError."""
    try:
        model, ckpt = load_model(weights, device="cpu")
    except (KeyError, RuntimeError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{weights}: checkpoint does not hold a usable model "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    model.fuse()
    # NHWC convolutions: measured 1.27-1.75x faster fused inference on CPU (RESULTS.md)
    model = model.to(device).eval().to(memory_format=torch.channels_last)
    model = model.half() if half else model
    if device.type == "cuda":  # first CUDA calls (cuDNN autotuning) would distort the speed summary
        with torch.inference_mode():
            model(torch.zeros(1, 3, 64, 64, device=device, dtype=next(model.parameters()).dtype))
    return model, ckpt


def class_names(ckpt: dict, nc: int) -> list[str]:
    names = ckpt.get("names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    return list(names) if isinstance(names, (list, tuple)) and len(names) == nc else [str(i) for i in range(nc)]


def infer(model, img_bgr: np.ndarray, opt: argparse.Namespace, img_size: int, stride: int,
          times: np.ndarray) -> np.ndarray:
    """One BGR image -> ``[k, 6]`` detections in its own pixels; adds (pre, inference, NMS) seconds."""
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    img, ratio_hw, pad_wh = letterbox(cv2.cvtColor(img_bgr, cv2.COLOR_BGR2RGB), img_size, auto=True, stride=stride)
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].to(device).to(dtype) / 255
    sync()
    t1 = time.perf_counter()
    with torch.inference_mode():
        pred = tta_forward(model, x, opt.augment)[0].float()
    sync()
    t2 = time.perf_counter()
    det = non_max_suppression(pred, opt.conf_thres, opt.iou_thres, opt.classes, opt.agnostic_nms,
                              max_det=opt.max_det, nms=opt.nms)[0]
    det[:, :4] = scale_boxes(det[:, :4], tuple(x.shape[2:]), img_bgr.shape[:2], (ratio_hw, pad_wh))
    det = det.cpu().numpy()
    times += (t1 - t0, t2 - t1, time.perf_counter() - t2)
    return det


class VideoOut:
    """One cv2.VideoWriter per source video, opened at its first frame."""

    def __init__(self):
        self.path: Path | None = None
        self.writer = None

    def write(self, path: Path, frame: Frame, img: np.ndarray) -> None:
        if path != self.path:
            self.close()
            h, w = img.shape[:2]
            self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), frame.fps or 30.0, (w, h))
            self.path = path
        self.writer.write(img)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
        self.writer, self.path = None, None


def run(opt: argparse.Namespace) -> dict:
    """Detect on every frame of ``opt.source``; returns counts and the run folder."""
    files = resolve_source(opt.source)
    device = select_device(opt.device)
    half = opt.half and device.type == "cuda"
    if opt.half and not half:
        LOGGER.warning("warning: --half needs CUDA; running FP32 on %s", device)
    model, ckpt = load_detector(opt.weights, device, half)
    stride = int(model.stride.max())
    img_size = -(-opt.img_size // stride) * stride
    if img_size != opt.img_size:
        LOGGER.warning("warning: --img-size %d is not a multiple of the stride %d; using %d", opt.img_size, stride, img_size)
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
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        run(opt)
    except (ConfigError, SourceError) as e:  # CheckpointError and ModelConfigError are ConfigErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
