"""k-means anchors (IoU distance) and best possible recall."""
import numpy as np
import pytest
import torch

from data.scripts.make_shapes import make_shapes
from utils.ops.anchors import (anchors_per_target, best_possible_recall, check_anchors, kmeans_anchors, label_wh,
                               main, ratio_metric)
from utils.ops.boxes import wh_iou
from utils.data.records import DatasetInfo, make_record


def test_wh_iou_and_ratio_by_hand():
    # 10x20 vs 20x10 aligned at the centre: intersection 10x10 = 100, union 200 + 200 - 100 = 300
    assert wh_iou(np.array([[10.0, 20.0]]), np.array([[20.0, 10.0]]))[0, 0] == pytest.approx(1 / 3)
    # label 10x40 vs anchor 20x20: r = (0.5, 2) -> min(r, 1/r) = (0.5, 0.5) -> 0.5
    assert ratio_metric(np.array([[10.0, 40.0]]), np.array([[20.0, 20.0]]))[0, 0] == pytest.approx(0.5)


def test_bpr_hand_case():
    anchors = np.array([[10.0, 10.0], [100.0, 100.0]])
    wh = np.array([[10, 10], [30, 30], [45, 45], [2, 2], [200, 100], [500, 500]], float)
    # worst-side ratios to the best anchor: 1, 1/3, 0.45 (to 100), 0.2, 0.5, 0.2 -> above 1/4: 4 of 6
    assert best_possible_recall(wh, anchors, 4.0) == pytest.approx(4 / 6)
    # anchors within 1/4 per label: [1, 0], [1, 1] (0.33, 0.3), [0, 1], [0, 0], [0, 1], [0, 0] -> 5 / 6
    assert anchors_per_target(wh, anchors, 4.0) == pytest.approx(5 / 6)
    assert best_possible_recall(wh, anchors, 10.0) == 1.0


def test_kmeans_recovers_known_centres():
    centres = np.array([[12, 16], [30, 60], [64, 40], [120, 110], [220, 300], [400, 200]], float)
    rng = np.random.default_rng(0)
    wh = np.concatenate([c * np.exp(rng.normal(0, 0.08, (300, 2))) for c in centres])
    got = kmeans_anchors(wh, 6, seed=0)
    order = np.argsort(centres.prod(1))
    np.testing.assert_allclose(got, centres[order], rtol=0.05)
    assert got.dtype == np.float32 and (np.diff(got.prod(1)) > 0).all()


def _info(boxes_per_image):
    recs = [make_record(f"{i}.jpg", i, 200, 100, b, np.zeros(len(b))) for i, b in enumerate(boxes_per_image)]
    return DatasetInfo("train", "yolo", None, recs, ["a"], [1])


def test_label_wh_scales_to_img_size():
    info = _info([[[0, 0, 50, 20], [10, 10, 11, 11]]])  # 200x100 image at 400 px -> x2
    np.testing.assert_allclose(label_wh(info, 400), [[100, 40], [2, 2]])
    assert len(label_wh(info, 100)) == 1  # the 1 px box becomes 0.5 px: left out


def test_check_anchors_keeps_good_and_replaces_bad():
    rng = np.random.default_rng(1)
    boxes = []
    for _ in range(60):
        w, h = rng.choice([[10, 10], [40, 20], [120, 90]]) * rng.uniform(0.9, 1.1, 2)
        boxes.append([[0, 0, w, h]])
    info = _info(boxes)  # img 200 wide -> label sizes at 200 px are as drawn
    good = torch.tensor([[[10.0, 10], [12, 12], [40, 20]], [[45, 25], [110, 90], [120, 80]]])
    bpr, new = check_anchors(info, good, 4.0, 200)
    assert bpr == 1.0 and new is None
    bad = torch.full((2, 3, 2), 500.0)
    bpr, new = check_anchors(info, bad, 4.0, 200)
    assert bpr == pytest.approx(0.0) and new.shape == (2, 3, 2)
    assert best_possible_recall(label_wh(info, 200), new.reshape(-1, 2), 4.0) == 1.0


def test_cli_prints_yaml_rows(tmp_path, capsys):
    root = make_shapes(tmp_path / "shapes", n_train=10, n_val=2, seed=0)
    y = tmp_path / "s.yaml"
    y.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames: [circle, square, triangle, star]\n")
    main(["--data", str(y), "--img-size", "160", "-n", "6", "--levels", "2"])
    out = capsys.readouterr().out
    assert "best possible recall" in out and "anchors:" in out
    rows = [line for line in out.splitlines() if line.startswith("  - [")]
    assert len(rows) == 2 and rows[0].endswith("# P3/8") and rows[1].endswith("# P4/16")
    assert all(len(r.split("]")[0].split(",")) == 6 for r in rows)  # 3 w,h pairs per row
