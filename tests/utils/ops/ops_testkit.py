"""Shared by the ops tests (were utils.ops.boxes.box_diou and utils.ops.nms.diou_nms; no user path
called them): reference functions built from the library API, so they live here."""
import torch
from torch import Tensor

from utils.ops.boxes import EPS, diou
from utils.ops.nms import batched_diou_nms


def box_diou(boxes1: Tensor, boxes2: Tensor, eps: float = EPS) -> Tensor:
    """Pairwise Distance-IoU ``IoU - rho^2 / c^2`` of xyxy ``[N, 4]`` and ``[M, 4]`` -> ``[N, M]``:
    the aligned :func:`utils.ops.boxes.diou` broadcast over ``[N, 1, 4]`` and ``[1, M, 4]``."""
    return diou(boxes1[:, None], boxes2[None], eps)


def diou_nms(boxes_xyxy: Tensor, scores: Tensor, iou_thres: float) -> Tensor:
    """Single-class DIoU-NMS -> kept indices ``[K]`` int64 by decreasing score (the contract of
    ``torchvision.ops.nms``): :func:`utils.ops.nms.batched_diou_nms` with one class."""
    idxs = torch.zeros(boxes_xyxy.shape[0], dtype=torch.int64, device=boxes_xyxy.device)
    return batched_diou_nms(boxes_xyxy, scores, idxs, iou_thres)
