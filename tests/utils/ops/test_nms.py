"""NMS: equality with torchvision, the DIoU-NMS rule of seed 003 on a hand-made case, equality with
a box-by-box reference loop, the options of non_max_suppression, and scale_boxes."""
import pytest
import torch
import torchvision

from ops_testkit import diou_nms  # tests/utils/ops/ops_testkit.py
from utils.ops.nms import _RULES, PREFIX_MIN, batched_diou_nms, first_kept, greedy_iou_nms, non_max_suppression, scale_boxes


def random_boxes(n: int, seed: int, n_classes: int = 5, dtype=torch.float32):
    """xyxy boxes of 8..128 px in a 600 px square; distinct scores (a permutation) so that the
    greedy order, and hence the kept set, is unique."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 600
    wh = 8 + torch.rand(n, 2, generator=g) * 120
    boxes = torch.cat([xy, xy + wh], 1).to(dtype)
    scores = (torch.randperm(n, generator=g).to(dtype) + 1) / n
    idxs = torch.randint(0, n_classes, (n,), generator=g)
    return boxes, scores, idxs


def diou_reference(boxes, scores, thres):
    """Box-by-box DIoU-NMS in plain Python floats: drop b when IoU - rho^2/c^2 >= thres for a
    kept higher-scored box (eps 1e-7 on the union and on c^2, as utils.ops.nms)."""
    b = boxes.tolist()
    order = sorted(range(len(b)), key=lambda i: -float(scores[i]))
    kept = []
    for i in order:
        x1, y1, x2, y2 = b[i]
        drop = False
        for j in kept:
            u1, v1, u2, v2 = b[j]
            inter = max(0.0, min(x2, u2) - max(x1, u1)) * max(0.0, min(y2, v2) - max(y1, v1))
            union = (x2 - x1) * (y2 - y1) + (u2 - u1) * (v2 - v1) - inter
            rho2 = ((x1 + x2 - u1 - u2) / 2) ** 2 + ((y1 + y2 - v1 - v2) / 2) ** 2
            c2 = (max(x2, u2) - min(x1, u1)) ** 2 + (max(y2, v2) - min(y1, v1)) ** 2
            if inter / (union + 1e-7) - rho2 / (c2 + 1e-7) >= thres:
                drop = True
                break
        if not drop:
            kept.append(i)
    return kept


@pytest.mark.parametrize("n,thres", [(0, 0.5), (1, 0.5), (300, 0.45), (2000, 0.3), (2000, 0.7)])
def test_greedy_iou_equals_torchvision(n, thres):
    boxes, scores, idxs = random_boxes(n, seed=n)
    ones = torch.zeros(n, dtype=torch.int64)
    assert torch.equal(greedy_iou_nms(boxes, scores, ones, thres), torchvision.ops.nms(boxes, scores, thres))
    assert torch.equal(greedy_iou_nms(boxes, scores, idxs, thres),
                       torchvision.ops.batched_nms(boxes, scores, idxs, thres))


def test_diou_keeps_occluded_box_that_nms_drops():
    # A = (0,0,10,10), B = A shifted by (2,2), C = A shifted by (1,1); scores 0.9, 0.8, 0.7.
    # A-B: inter 8*8 = 64, union 100+100-64 = 136, IoU = 8/17 = 0.4706 > 0.45 -> NMS drops B;
    #      centres (5,5),(7,7): rho^2 = 8; enclosing (0,0,12,12): c^2 = 288; DIoU = 0.4706 - 1/36
    #      = 0.4428 < 0.45 -> DIoU-NMS keeps B.
    # A-C: IoU = 81/119 = 0.6807, rho^2 = 2, c^2 = 242, DIoU = 0.6724 >= 0.45 -> both drop C.
    boxes = torch.tensor([[0., 0., 10., 10.], [2., 2., 12., 12.], [1., 1., 11., 11.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert torchvision.ops.nms(boxes, scores, 0.45).tolist() == [0]
    assert diou_nms(boxes, scores, 0.45).tolist() == [0, 1]
    assert diou_reference(boxes, scores, 0.45) == [0, 1]
    # the same through non_max_suppression: rows (cx, cy, w, h, obj, cls)
    pred = torch.tensor([[[5., 5., 10., 10., 0.9, 1.0],
                          [7., 7., 10., 10., 0.8, 1.0],
                          [6., 6., 10., 10., 0.7, 1.0]]])
    assert len(non_max_suppression(pred, 0.25, 0.45, nms="nms")[0]) == 1
    out = non_max_suppression(pred, 0.25, 0.45, nms="diou")[0]
    assert out[:, :4].tolist() == [[0., 0., 10., 10.], [2., 2., 12., 12.]]


@pytest.mark.parametrize("seed,thres", [(0, 0.45), (1, 0.3), (2, 0.6), (3, 0.0), (4, -0.2)])
def test_diou_nms_equals_reference_loop(seed, thres):
    boxes, scores, idxs = random_boxes(400, seed, dtype=torch.float64)
    assert diou_nms(boxes, scores, thres).tolist() == diou_reference(boxes, scores, thres)
    expected = []
    for c in idxs.unique().tolist():
        members = torch.nonzero(idxs == c).flatten()
        expected += members[diou_reference(boxes[members], scores[members], thres)].tolist()
    expected.sort(key=lambda i: -float(scores[i]))
    assert batched_diou_nms(boxes, scores, idxs, thres).tolist() == expected


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_diou_nms_cuda_equals_cpu():
    boxes, scores, idxs = random_boxes(3000, 7, n_classes=10)
    cpu = batched_diou_nms(boxes, scores, idxs, 0.45)
    gpu = batched_diou_nms(boxes.cuda(), scores.cuda(), idxs.cuda(), 0.45)
    assert torch.equal(cpu, gpu.cpu())


def _pred(rows):
    """[1, N, 5+nc] from rows (cx, cy, w, h, obj, cls...)."""
    return torch.tensor([rows], dtype=torch.float32)


def test_multi_label_and_best_class():
    # one box, obj 0.9, class scores (0.8, 0.5, 0.1): scores 0.72, 0.45, 0.09; conf 0.25
    pred = _pred([[50, 50, 20, 20, 0.9, 0.8, 0.5, 0.1]])
    best = non_max_suppression(pred, conf_thres=0.25)[0]
    assert best.shape == (1, 6)
    assert best[0].tolist() == pytest.approx([40, 40, 60, 60, 0.72, 0], abs=1e-6)
    multi = non_max_suppression(pred, conf_thres=0.25, multi_label=True)[0]
    assert sorted(multi[:, 5].tolist()) == [0.0, 1.0]  # 0.09 is below conf
    assert sorted(multi[:, 4].tolist()) == pytest.approx([0.45, 0.72], abs=1e-6)


def test_classes_filter_max_det_and_agnostic():
    # three disjoint boxes of classes 0, 1, 2 and a fourth box overlapping box 0 of class 1
    # (inter 19*19 = 361, union 800 - 361 = 439, IoU 0.822); scores obj*cls = 0.81, 0.72, 0.63, 0.54
    rows = [[50, 50, 20, 20, 0.9, 0.9, 0.0, 0.0],
            [150, 50, 20, 20, 0.9, 0.0, 0.8, 0.0],
            [250, 50, 20, 20, 0.9, 0.0, 0.0, 0.7],
            [51, 51, 20, 20, 0.9, 0.0, 0.6, 0.0]]
    pred = _pred(rows)
    assert non_max_suppression(pred)[0][:, 5].tolist() == [0, 1, 2, 1]  # class-aware: all four
    assert non_max_suppression(pred, classes=[1])[0][:, 4].tolist() == pytest.approx([0.72, 0.54])
    assert non_max_suppression(pred, max_det=2)[0][:, 4].tolist() == pytest.approx([0.81, 0.72])
    agn = non_max_suppression(pred, agnostic=True)[0]
    assert agn[:, 5].tolist() == [0, 1, 2]  # the class-1 box on top of box 0 is suppressed
    assert non_max_suppression(pred, agnostic=True, nms="diou")[0][:, 5].tolist() == [0, 1, 2]


def test_nms_batch_and_conf():
    pred = torch.cat([_pred([[50, 50, 20, 20, 0.9, 0.9]]), _pred([[50, 50, 20, 20, 0.2, 0.9]])])
    out = non_max_suppression(pred, conf_thres=0.25)
    assert [len(o) for o in out] == [1, 0]  # obj 0.2 <= conf
    assert out[1].shape == (0, 6)


def test_nms_rejects_unknown_kind():
    with pytest.raises(ValueError, match="nms must be one of"):
        non_max_suppression(_pred([[50, 50, 20, 20, 0.9, 0.9]]), nms="soft")


def test_scale_boxes_letterbox_inverse():
    # 480x640 (h0, w0) image letterboxed into 640x640: gain 1, pad_h = (640 - 480) / 2 = 80
    boxes = torch.tensor([[10., 90., 110., 190.], [-5., 70., 700., 600.]])
    out = scale_boxes(boxes, (640, 640), (480, 640))
    assert out.tolist() == [[10., 10., 110., 110.], [0., 0., 640., 480.]]  # second row clipped
    # 1000x500 image into 320x320: ratios (0.32, 0.32), pad_w = (320 - 160) / 2 = 80, given explicitly
    got = scale_boxes(torch.tensor([[80., 0., 240., 320.]]), (320, 320), (1000, 500), ((0.32, 0.32), (80, 0)))
    assert got.tolist()[0] == pytest.approx([0., 0., 500., 1000.])
    assert boxes[1, 0] == -5.0  # input untouched
    assert scale_boxes(boxes.numpy(), (640, 640), (480, 640)).tolist() == out.tolist()  # numpy too


def _sorted_candidates(n: int, seed: int, side: float, levels: int = 0):
    """``random_boxes`` (8..128 px) with corners in a ``side`` px square, sorted by decreasing score
    (stable); with ``levels`` the scores are rounded to that many values, so that many tie."""
    boxes, scores, idxs = random_boxes(n, seed)
    boxes = boxes - boxes[:, :2].repeat(1, 2) * (1 - side / 600)
    if levels:
        scores = torch.ceil(scores * levels) / levels
    order = torch.sort(scores, descending=True, stable=True).indices
    return boxes[order], scores[order], idxs[order]


@pytest.mark.parametrize("kind", ["nms", "diou"])
@pytest.mark.parametrize("n,side,levels,max_det,sizes", [
    (5000, 4000.0, 0, 300, [1200]),               # sparse: the 300th kept box lies in the first 4 x 300
    (5000, 4000.0, 50, 300, [1200]),              # the same with 100-box ties in score
    (5000, 4000.0, 0, 10, [1024]),                # a small max_det starts at PREFIX_MIN
    (5000, 30.0, 0, 300, [1200, 5000]),           # dense: the 300th kept box is the ~2,800th
    (20000, 30.0, 0, 300, [1200, 4800]),          # the same density, 4x the candidates: 4 x 4800 <= 20000
    (4000, 4000.0, 0, 300, [4000]),               # 4 x 1200 > 4000: every candidate at once
    (700, 160.0, 0, 300, [700]),
])
def test_first_kept_equals_the_rule_on_every_candidate(kind, n, side, levels, max_det, sizes):
    boxes, scores, idxs = _sorted_candidates(n, seed=n + levels, side=side, levels=levels)
    rule = _RULES[kind]
    seen = []

    def spy(b, s, i, t):
        seen.append(b.shape[0])
        return rule(b, s, i, t)

    got = first_kept(boxes, scores, idxs, 0.45, max_det, spy)
    want = torch.sort(rule(boxes, scores, idxs, 0.45)).values[:max_det]   # positions = score order
    assert torch.equal(got, want)
    assert seen == sizes


def test_non_max_suppression_equals_torchvision_on_every_candidate():
    """An untrained head's output at conf 0.001 (thousands of candidates an image, many tied):
    the 300 detections are torchvision's batched_nms of all of them, in score order."""
    g = torch.Generator().manual_seed(3)
    n, nc = 3000, 4
    rows = torch.cat([torch.rand(1, n, 2, generator=g) * 160, 8 + torch.rand(1, n, 2, generator=g) * 60,
                      torch.rand(1, n, 1 + nc, generator=g).mul(40).ceil() / 40], 2)   # 40 score levels
    out = non_max_suppression(rows, 0.001, 0.65, multi_label=True)[0]
    x = rows[0]
    boxes = torch.cat([x[:, :2] - x[:, 2:4] / 2, x[:, :2] + x[:, 2:4] / 2], 1)
    i, j = (x[:, 5:] * x[:, 4:5] > 0.001).nonzero(as_tuple=True)
    det = torch.cat([boxes[i], (x[i, 5 + j] * x[i, 4])[:, None], j[:, None].float()], 1)
    det = det[torch.sort(det[:, 4], descending=True, stable=True).indices]
    assert det.shape[0] >= 4 * max(PREFIX_MIN, 4 * 300)   # the prefix path is taken
    keep = torch.sort(torchvision.ops.batched_nms(det[:, :4], det[:, 4], det[:, 5].long(), 0.65)).values
    assert torch.equal(out, det[keep[:300]])
