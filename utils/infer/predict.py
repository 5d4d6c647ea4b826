"""One image through a detector (letterbox, forward, NMS, boxes back to its pixels), and the video
writer detect.py saves annotated frames with."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from utils.data.augment import letterbox
from utils.eval.tta import forward as tta_forward
from utils.infer.sources import Frame
from utils.ops.nms import non_max_suppression, scale_boxes


def infer(model: nn.Module, img_bgr: np.ndarray, opt: argparse.Namespace, img_size: int, stride: int,
          times: np.ndarray) -> np.ndarray:
    """One BGR image -> ``[k, 6]`` detections ``(x1, y1, x2, y2, score, cls)`` in its own pixels;
    adds (pre-process, inference, NMS) seconds to ``times``. ``opt`` gives conf_thres, iou_thres,
    classes, agnostic_nms, max_det, nms and augment."""
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
