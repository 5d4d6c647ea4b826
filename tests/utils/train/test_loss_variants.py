"""The seeds' loss designs (utils/train/loss_variants.py): hand-checked anchor choice, ignore mask,
softmax and squared-error terms, defaults unchanged, and every variant learns on a fixed batch."""
import math

import pytest
import torch
from loss_testkit import ANCHORS_3, IMG, TinyNet, fit_steps, targets  # tests/utils/train/loss_testkit.py

from models.head import Detect
from utils.config import ConfigError, Hyp, hyp_from_dict, load_hyp, replace
from utils.train.loss import build_criterion
from utils.ops.boxes import wh_iou as shape_iou  # the size-only IoU best_anchor_matches ranks anchors by
from utils.train.loss_variants import (best_anchor_matches, ignore_mask, objectness_terms, softmax_cls_loss,
                                       weighted_objectness)


def test_shape_iou_hand_values():
    # 20x20 vs 16x30: inter 16*20 = 320, union 400 + 480 - 320 = 560
    iou = shape_iou(torch.tensor([[20.0, 20.0]]), torch.tensor([[16.0, 30.0], [10.0, 13.0]]))
    assert iou[0].tolist() == pytest.approx([320 / 560, 130 / 400])


def test_best_anchor_picks_the_hand_computed_anchor():
    anchors = torch.tensor(ANCHORS_3, dtype=torch.float32).view(3, 3, 2)
    matches = best_anchor_matches(anchors, targets(), torch.tensor([64.0, 64.0]))
    # 20x20 -> 16x30 (IoU 0.571 > 33x23's 0.527), level 0 anchor 1
    # 30x14 -> 33x23 (IoU 420/759 = 0.553), level 0 anchor 2
    # 40x44 -> 62x45 (IoU 1760/2790 = 0.631 > 30x61's 0.581), level 1 anchor 1
    got = [sorted(zip(t.tolist(), a.tolist())) for a, t in matches]
    assert got == [[(0, 1), (1, 2)], [(2, 1)], []]


def test_best_anchor_assigner_uses_one_cell_per_target():
    model = TinyNet(decode="scaled")  # even with the scaled decode: no neighbour cells
    crit = build_criterion(model, replace(Hyp(), assigner="best_anchor"))
    preds = model(torch.zeros(2, 3, IMG, IMG))
    m = crit.assign(preds, targets())
    cells = [set(zip(x.img.tolist(), x.anchor.tolist(), x.gy.tolist(), x.gx.tolist())) for x in m]
    # level 0 (8x8 cells): (0.30, 0.45) * 8 = (2.4, 3.6) -> row 3, col 2; (0.70, 0.25) * 8 -> row 2, col 5
    # level 1 (4x4): (0.50, 0.60) * 4 = (2.0, 2.4) -> row 2, col 2
    assert cells == [{(0, 1, 3, 2), (0, 2, 2, 5)}, {(1, 1, 2, 2)}, set()]


def test_ignore_mask_spares_overlapping_predictions():
    # zero raw outputs decode (exp) to a box of the anchor's size centred in its cell
    det = Detect(1, [[16, 16]], [8], "exp")
    det.stride = torch.tensor([8.0])
    raw = torch.zeros(1, 1, 8, 8, 6)
    decoded = det.decode_level(0, raw)[..., :4].view(1, 1, 8, 8, 4)
    target = torch.tensor([[0, 0, (2.5 * 8) / 64, (3.5 * 8) / 64, 16 / 64, 16 / 64]])  # = the box of cell (3, 2)
    wh = torch.tensor([64.0, 64.0])
    mask = ignore_mask(decoded, target, wh, 0.5)
    assert mask.sum() == 1 and mask[0, 0, 3, 2]
    # the 4 direct neighbours are shifted 8 px: IoU 128/384 = 1/3; the diagonals 64/448 = 1/7
    mask = ignore_mask(decoded, target, wh, 0.3)
    assert mask.sum() == 5 and all(mask[0, 0, y, x] for y, x in ((2, 2), (4, 2), (3, 1), (3, 3)))
    assert ignore_mask(decoded, target, wh, 0.1).sum() == 9
    other_image = target.clone()
    other_image[0, 0] = 1
    assert ignore_mask(torch.cat([decoded, decoded]), other_image, wh, 0.5)[0].sum() == 0


def test_softmax_and_mse_terms_hand_values():
    # CE of softmax([2, 0, 0]) at class 0 = log(1 + 2 e^-2)
    ce = softmax_cls_loss(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0]), 0.0)
    assert ce.item() == pytest.approx(math.log(1 + 2 * math.exp(-2)), rel=1e-6)
    h = replace(Hyp(), obj_loss="mse")
    e = objectness_terms(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0]), h)
    assert e.tolist() == pytest.approx([0.25, 0.25])
    # weights: positive 1, plain negative lambda_noobj 0.5, ignored negative 0 -> (0.25 + 0.125 + 0) / 3
    h = replace(Hyp(), obj_loss="mse", lambda_noobj=0.5)
    w = weighted_objectness(torch.zeros(3), torch.tensor([1.0, 0.0, 0.0]), torch.tensor([True, False, False]),
                            torch.tensor([True, False, True]), h)
    assert w.item() == pytest.approx(0.375 / 3)
    # BCE at logit 0 is log 2 for either target; lambda_noobj 1 and no mask give the plain mean
    w = weighted_objectness(torch.zeros(2), torch.tensor([1.0, 0.0]), torch.tensor([True, False]),
                            torch.tensor([False, False]), Hyp())
    assert w.item() == pytest.approx(math.log(2))


def test_variant_keys_checked_and_defaults_unchanged():
    with pytest.raises(ConfigError, match="assigner"):
        hyp_from_dict({"assigner": "nearest"}, "h.yaml")
    with pytest.raises(ConfigError, match="obj_ignore_iou"):
        hyp_from_dict({"obj_ignore_iou": 1.5}, "h.yaml")
    torch.manual_seed(0)
    model = TinyNet(decode="scaled")
    preds = model(torch.rand(2, 3, IMG, IMG))
    base, _ = build_criterion(model, Hyp())(preds, targets())
    # the variant path with neutral settings (a mask threshold no IoU exceeds) equals the default path
    same, _ = build_criterion(model, replace(Hyp(), obj_ignore_iou=0.999999))(preds, targets())
    assert same.item() == pytest.approx(base.item(), rel=1e-6)
    coord, items = build_criterion(model, replace(Hyp(), lambda_coord=2.0))(preds, targets())
    _, base_items = build_criterion(model, Hyp())(preds, targets())
    assert items["box"].item() == pytest.approx(2 * base_items["box"].item(), rel=1e-6)


@pytest.mark.parametrize("name", ["hyp.yolov2.yaml", "hyp.yolov3.yaml"])
def test_seed_hyp_files_load(name):
    h = load_hyp(f"configs/{name}")
    assert h.assigner == "best_anchor" and h.box_loss == "mse" and h.obj_ignore_iou > 0


@pytest.mark.parametrize("changes", [
    {"assigner": "best_anchor"}, {"obj_ignore_iou": 0.5}, {"lambda_noobj": 0.5}, {"lambda_coord": 5.0},
    {"obj_loss": "mse"}, {"obj_target": "one"}, {"cls_loss": "softmax"},
    {"assigner": "best_anchor", "obj_ignore_iou": 0.6, "obj_loss": "mse", "cls_loss": "softmax", "box_loss": "mse"},
    {"assigner": "best_anchor", "obj_ignore_iou": 0.5, "obj_target": "one", "box_loss": "mse"}])
def test_every_variant_lowers_the_loss(changes):
    torch.manual_seed(0)
    model = TinyNet(decode="region" if changes.get("cls_loss") == "softmax" else "exp")
    crit = build_criterion(model, replace(Hyp(), **changes))
    history = [items["total"] for items in fit_steps(model, crit, 15)]
    assert all(math.isfinite(h) for h in history)
    assert history[-1] < 0.75 * history[0]
