"""Box geometry: hand-computed cases, equality with torchvision, finite gradients."""
import math

import numpy as np
import pytest
import torch
import torchvision.ops as tvo

from ops_testkit import box_diou  # tests/utils/ops/ops_testkit.py
from utils.ops.boxes import (IOU_VARIANTS, aligned_inter_union, box_area, box_iou, ciou, clip_boxes,
                             cxcywh_to_xywh, cxcywh_to_xyxy, diou, giou, iou, pairwise_inter_union, siou,
                             wh_iou, xywh_to_cxcywh, xywh_to_xyxy, xyxy_to_cxcywh, xyxy_to_xywh)

VARIANTS = list(IOU_VARIANTS.items())


def _t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def _random_xyxy(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 100
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * 50 + 1
    return torch.cat((xy, xy + wh), 1)


# --- conversions -------------------------------------------------------------------------------

def test_conversions_hand_values_torch_and_numpy():
    xyxy = [[10.0, 20.0, 40.0, 60.0]]   # w = 30, h = 40, centre (25, 40)
    for make in (torch.tensor, np.array):
        b = make(xyxy)
        assert xyxy_to_xywh(b).tolist() == [[10, 20, 30, 40]]
        assert xyxy_to_cxcywh(b).tolist() == [[25, 40, 30, 40]]
        assert xywh_to_xyxy(make([[10.0, 20.0, 30.0, 40.0]])).tolist() == xyxy
        assert cxcywh_to_xyxy(make([[25.0, 40.0, 30.0, 40.0]])).tolist() == xyxy
        assert xywh_to_cxcywh(make([[10.0, 20.0, 30.0, 40.0]])).tolist() == [[25, 40, 30, 40]]
        assert cxcywh_to_xywh(make([[25.0, 40.0, 30.0, 40.0]])).tolist() == [[10, 20, 30, 40]]
        assert float(box_area(b)[0]) == 1200.0
    assert isinstance(xyxy_to_cxcywh(np.array(xyxy)), np.ndarray)


def test_conversions_round_trip_and_torchvision():
    b = _random_xyxy(50, 0)
    for fmt, fwd, back in (("xywh", xyxy_to_xywh, xywh_to_xyxy), ("cxcywh", xyxy_to_cxcywh, cxcywh_to_xyxy)):
        torch.testing.assert_close(fwd(b), tvo.box_convert(b, "xyxy", fmt))
        torch.testing.assert_close(back(fwd(b)), b)
    torch.testing.assert_close(cxcywh_to_xywh(xywh_to_cxcywh(b)), b)


def test_clip_boxes_torch_and_numpy():
    boxes = [[-5.0, 10.0, 120.0, 90.0]]   # image 80 high, 100 wide
    assert clip_boxes(torch.tensor(boxes), (80, 100)).tolist() == [[0, 10, 100, 80]]
    assert clip_boxes(np.array(boxes), (80, 100)).tolist() == [[0, 10, 100, 80]]


# --- the core: intersection and union, torch and numpy -------------------------------------------

def test_inter_union_hand_values_torch_and_numpy():
    # [0,0,2,2] vs [1,1,3,3]: inter 1, union 7; vs [2,0,3,1] (touching): inter 0, union 5;
    # [0,0,4,2] vs [1,-1,2,5]: inter 1 * 2 = 2, union 8 + 6 - 2 = 12
    a = [[0.0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 4, 2]]
    b = [[1.0, 1, 3, 3], [2, 0, 3, 1], [1, -1, 2, 5]]
    for make in (torch.tensor, np.array):
        inter, union = aligned_inter_union(make(a), make(b))
        assert inter.tolist() == [1, 0, 2] and union.tolist() == [7, 5, 12]
        inter, union = pairwise_inter_union(make(a), make(b))
        assert inter.shape == (3, 3) and inter[[0, 1, 2], [0, 1, 2]].tolist() == [1, 0, 2]
        assert inter[2].tolist() == [2, 1, 2] and union[2].tolist() == [10, 8, 12]  # row [0,0,4,2]


def test_pairwise_core_numpy_equals_torch_and_torchvision():
    a, b = _random_xyxy(40, 9), _random_xyxy(30, 10)
    inter, union = pairwise_inter_union(a, b)
    inter_np, union_np = pairwise_inter_union(a.numpy(), b.numpy())
    assert isinstance(inter_np, np.ndarray)
    assert np.array_equal(inter_np, inter.numpy()) and np.array_equal(union_np, union.numpy())
    torch.testing.assert_close(inter / union, tvo.box_iou(a, b))


def test_wh_iou_hand_values_torch_and_numpy():
    # 20x20 vs 16x30: inter 16*20 = 320, union 400 + 480 - 320 = 560; vs 10x13: 130 / 400
    for make in (torch.tensor, np.array):
        got = wh_iou(make([[20.0, 20.0]]), make([[16.0, 30.0], [10.0, 13.0]]))
        assert got.shape == (1, 2) and got[0].tolist() == pytest.approx([320 / 560, 130 / 400])


# --- aligned variants: hand-computed cases --------------------------------------------------------

@pytest.mark.parametrize("name,fn", VARIANTS)
def test_identical_boxes_give_one(name, fn):
    b = _t([0, 0, 2, 2], [3, 1, 7, 9])
    torch.testing.assert_close(fn(b, b.clone()), torch.ones(2, dtype=torch.float64), atol=1e-6, rtol=0)


def test_quarter_overlap_hand_values():
    a, b = _t([0, 0, 2, 2]), _t([1, 1, 3, 3])
    # intersection [1,1,2,2] = 1, union 4 + 4 - 1 = 7
    iou_h = 1 / 7
    # enclosing box [0,0,3,3] has area 9, so GIoU = IoU - (9 - 7) / 9
    giou_h = 1 / 7 - 2 / 9
    # centres (1,1) and (2,2): rho^2 = 1 + 1 = 2; enclosing diagonal^2 = 3^2 + 3^2 = 18
    diou_h = 1 / 7 - 2 / 18
    # same aspect ratio (both square): v = 0, so CIoU = DIoU
    ciou_h = diou_h
    # SIoU: dx = dy = 1 -> alpha = 45 deg, Lambda = sin(90 deg) = 1, gamma = 2 - 1 = 1;
    # rho_x = rho_y = (1/3)^2 = 1/9 -> Delta = 2 (1 - e^{-1/9}); equal sizes -> Omega = 0
    siou_h = 1 / 7 - (2 * (1 - math.exp(-1 / 9)) + 0) / 2
    for fn, want in ((iou, iou_h), (giou, giou_h), (diou, diou_h), (ciou, ciou_h), (siou, siou_h)):
        assert fn(a, b).item() == pytest.approx(want, abs=1e-6), fn.__name__


def test_disjoint_boxes_hand_values():
    a, b = _t([0, 0, 1, 1]), _t([2, 0, 3, 1])
    assert iou(a, b).item() == 0.0
    # union 1 + 1 = 2, enclosing [0,0,3,1] area 3 -> GIoU = 0 - (3 - 2) / 3 = -1/3
    assert giou(a, b).item() == pytest.approx(-1 / 3, abs=1e-6)
    # centres (0.5, 0.5) and (2.5, 0.5): rho^2 = 4; diagonal^2 = 3^2 + 1^2 = 10 -> DIoU = -0.4
    assert diou(a, b).item() == pytest.approx(-0.4, abs=1e-6)
    assert ciou(a, b).item() == pytest.approx(-0.4, abs=1e-6)  # same aspect ratio
    # SIoU: dy = 0 -> Lambda = 0, gamma = 2; rho_x = (2/3)^2 = 4/9, rho_y = 0;
    # Delta = 1 - e^{-8/9}; Omega = 0
    assert siou(a, b).item() == pytest.approx(-(1 - math.exp(-8 / 9)) / 2, abs=1e-6)


def test_aspect_mismatch_hand_values():
    a, b = _t([0, 0, 2, 2]), _t([0, 0, 2, 4])
    # IoU = 4 / 8 = 0.5; centres (1,1), (1,2): rho^2 = 1; diagonal^2 = 2^2 + 4^2 = 20
    diou_h = 0.5 - 1 / 20
    v = 4 / math.pi ** 2 * (math.atan(2 / 4) - math.atan(2 / 2)) ** 2
    alpha = v / (1 - 0.5 + v)
    assert diou(a, b).item() == pytest.approx(diou_h, abs=1e-6)
    assert ciou(a, b).item() == pytest.approx(diou_h - alpha * v, abs=1e-6)
    # SIoU: dx = 0 -> Lambda = 0, gamma = 2; rho_y = (1/4)^2 -> Delta = 1 - e^{-2/16};
    # omega_w = 0, omega_h = |2 - 4| / 4 = 0.5 -> Omega = (1 - e^{-0.5})^4
    siou_h = 0.5 - ((1 - math.exp(-2 / 16)) + (1 - math.exp(-0.5)) ** 4) / 2
    assert siou(a, b).item() == pytest.approx(siou_h, abs=1e-6)


def test_siou_angle_cost_is_sin_2alpha():
    # centre offset (dx, dy) = (3, 1) from a box; alpha = atan(1/3); boxes equal size -> Omega = 0
    a, b = _t([0, 0, 10, 10]), _t([3, 1, 13, 11])
    lam = math.sin(2 * math.atan2(1, 3))
    gamma = 2 - lam
    rho_x, rho_y = (3 / 13) ** 2, (1 / 11) ** 2   # enclosing box [0,0,13,11]
    inter, union = 7 * 9, 200 - 7 * 9
    want = inter / union - ((1 - math.exp(-gamma * rho_x)) + (1 - math.exp(-gamma * rho_y))) / 2
    assert siou(a, b).item() == pytest.approx(want, abs=1e-6)


# --- aligned variants: torchvision ---------------------------------------------------------------

@pytest.mark.parametrize("name,ref", [("giou", tvo.generalized_box_iou_loss),
                                      ("diou", tvo.distance_box_iou_loss),
                                      ("ciou", tvo.complete_box_iou_loss)])
def test_equal_to_torchvision_losses(name, ref):
    a, b = _random_xyxy(1000, 1), _random_xyxy(1000, 2)
    assert (iou(a, b) == 0).sum() > 100 and (iou(a, b) > 0).sum() > 100  # both regimes covered
    ours = 1 - IOU_VARIANTS[name](a, b)
    torch.testing.assert_close(ours, ref(a, b, reduction="none"), atol=1e-6, rtol=0)


def test_aligned_iou_equals_torchvision_diagonal():
    a, b = _random_xyxy(1000, 3), _random_xyxy(1000, 4)
    torch.testing.assert_close(iou(a, b), torch.diagonal(tvo.box_iou(a, b)), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name,fn", VARIANTS)
def test_gradients_finite_for_degenerate_identical_disjoint(name, fn):
    pred = torch.tensor([[1, 1, 1, 3],      # zero width vs normal box
                         [1, 1, 1, 3],      # zero width, identical
                         [0, 0, 0, 0],      # point vs point at another place
                         [0, 0, 2, 2],      # identical
                         [0, 0, 1, 1],      # disjoint
                         [0, 0, 2, 0]],     # zero height vs box with same centre
                        dtype=torch.float32, requires_grad=True)
    target = torch.tensor([[0, 0, 2, 2], [1, 1, 1, 3], [5, 5, 5, 5], [0, 0, 2, 2], [2, 0, 3, 1],
                           [0, -1, 2, 1]], dtype=torch.float32)
    value = fn(pred, target)
    assert torch.isfinite(value).all()
    (1 - value).sum().backward()
    assert torch.isfinite(pred.grad).all(), pred.grad


# --- pairwise ----------------------------------------------------------------------------------

def test_box_iou_equals_torchvision():
    a, b = _random_xyxy(40, 5).float(), _random_xyxy(30, 6).float()
    torch.testing.assert_close(box_iou(a, b), tvo.box_iou(a, b))
    assert box_iou(_t([0, 0, 2, 2]), _t([1, 1, 3, 3])).item() == pytest.approx(1 / 7)
    assert box_iou(_t([0, 0, 0, 0]), _t([0, 0, 0, 0])).item() == 0.0  # no nan for empty boxes


def test_box_diou_pairwise():
    a, b = _random_xyxy(40, 7), _random_xyxy(30, 8)
    torch.testing.assert_close(box_diou(a, b), tvo.distance_box_iou(a, b), atol=1e-6, rtol=0)
    # diagonal of the pairwise matrix is the aligned value; hand value 1/7 - 2/18
    torch.testing.assert_close(torch.diagonal(box_diou(a, b)), diou(a[:30], b))
    assert box_diou(_t([0, 0, 2, 2]), _t([1, 1, 3, 3])).item() == pytest.approx(1 / 7 - 2 / 18, abs=1e-6)
