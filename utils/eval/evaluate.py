"""The one ``evaluate()`` that training (after each epoch) and test.py share: predict, NMS, map
boxes back to original pixels, score with COCO semantics; plus the yolov5-style summary table."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from utils.eval.metrics import DetectionMetrics, ImageDet, detection_metrics, ground_truth
from utils.eval.tta import forward as tta_forward
from utils.ops.nms import non_max_suppression, scale_boxes
from utils.train.ema import unwrap

LOSS_NAMES = ("box", "obj", "cls")


def preprocess(imgs: torch.Tensor, device: torch.device, half: bool = False) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> float in [0, 1] on ``device``."""
    x = imgs.to(device, non_blocking=True)
    return (x.half() if half else x.float()) / 255.0


@dataclass(frozen=True)
class EvalSettings:
    conf_thres: float = 0.001
    iou_thres: float = 0.65
    nms: str = "nms"                # nms | diou
    max_det: int = 300
    multi_label: bool = True
    half: bool = False
    augment: bool = False           # test-time augmentation (utils/eval/tta.py: 3 scales, one flipped)


@dataclass
class EvalResult:
    metrics: DetectionMetrics
    losses: dict[str, float]
    detections: dict[int, ImageDet]      # record index -> detections in original pixels
    speed_ms: dict[str, float]           # per image: preprocess, inference, nms


@torch.no_grad()
def evaluate(model: nn.Module, loader, records, names: list[str], settings: EvalSettings,
             device: torch.device, criterion=None, show_progress: bool = True) -> EvalResult:
    """Predict every image of ``loader``, map boxes back to original pixels, and score them with
    COCO semantics against ``records`` (indexed by the loader's record indices)."""
    model = unwrap(model)
    was_training = model.training
    model.eval()
    dets: dict[int, ImageDet] = {}
    loss_sum, batches = torch.zeros(len(LOSS_NAMES)), 0
    t = np.zeros(3)
    for imgs, targets, _, shapes, indices in tqdm(loader, desc="evaluate", disable=not show_progress,
                                                  bar_format="{l_bar}{bar:10}{r_bar}"):
        t0 = time.perf_counter()
        x = preprocess(imgs, device, settings.half)
        t1 = time.perf_counter()
        pred, raw = tta_forward(model, x, settings.augment)
        t2 = time.perf_counter()
        if criterion is not None:
            loss_sum += _batch_losses(criterion, raw, targets, device)
            batches += 1
        out = non_max_suppression(pred.float(), settings.conf_thres, settings.iou_thres,
                                  multi_label=settings.multi_label, max_det=settings.max_det, nms=settings.nms)
        for det, shape, idx in zip(out, shapes, indices):
            boxes = scale_boxes(det[:, :4], tuple(x.shape[2:]), tuple(shape[0]), shape[1]).cpu().numpy()
            dets[idx] = ImageDet(boxes.astype(np.float64), det[:, 4].cpu().numpy(), det[:, 5].long().cpu().numpy())
        t += (t1 - t0, t2 - t1, time.perf_counter() - t2)
    order = sorted(dets, key=lambda i: (records[i].image_id, i))  # pycocotools breaks score ties by image id
    metrics = detection_metrics(ground_truth([records[i] for i in order]), [dets[i] for i in order],
                                len(names), names)
    model.train(was_training)
    n = max(len(order), 1)
    losses = {k: float(v) for k, v in zip(LOSS_NAMES, (loss_sum / max(batches, 1)).tolist())}
    return EvalResult(metrics, losses, dets, dict(zip(("preprocess", "inference", "nms"), (t * 1000 / n).tolist())))


def _batch_losses(criterion, raw: list[torch.Tensor], targets: torch.Tensor, device: torch.device) -> torch.Tensor:
    """One batch's ``LOSS_NAMES`` losses as a CPU vector (fp32 whatever the model's precision)."""
    _, items = criterion([r.float() for r in raw], targets.to(device))
    return torch.stack([items[k].float().cpu() for k in LOSS_NAMES])


@torch.no_grad()
def validation_losses(model: nn.Module, loader, device: torch.device, criterion, batches: int = 1) -> dict[str, float]:
    """Mean box/obj/cls losses of ``model`` in eval mode on the first ``batches`` batches of ``loader``,
    no NMS and no metrics: the divergence check of an epoch that is not validated (a blown-up model
    shows on one batch; on the main job ~0.12 s against ~0.5-0.9 s for a validation)."""
    model = unwrap(model)
    was_training = model.training
    model.eval()
    loss_sum, n = torch.zeros(len(LOSS_NAMES)), 0
    for imgs, targets, *_ in loader:
        loss_sum += _batch_losses(criterion, model(preprocess(imgs, device))[1], targets, device)
        n += 1
        if n >= batches:
            break
    model.train(was_training)
    return {k: float(v) for k, v in zip(LOSS_NAMES, (loss_sum / max(n, 1)).tolist())}


def format_table(m: DetectionMetrics) -> str:
    """The yolov5-style table: Class, Images, Instances, P, R, mAP@.5, mAP@.5:.95."""
    lines = [f"{'Class':>20}{'Images':>11}{'Instances':>11}{'P':>11}{'R':>11}{'mAP@.5':>11}{'mAP@.5:.95':>11}"]
    for name, images, inst, p, r, ap50, ap in m.rows():
        lines.append(f"{name:>20}{images:>11}{inst:>11}{p:>11.3g}{r:>11.3g}{ap50:>11.3g}{ap:>11.3g}")
    return "\n".join(lines)
