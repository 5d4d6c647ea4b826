"""COCO mAP: toy cases with hand-computed answers, equality with pycocotools (synthetic data and
coco-mini val), the yolov5-style summary, the confusion matrix and the plots."""
import contextlib
import copy
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from utils.eval.metrics import (ImageDet, ImageGT, coco_evaluate, confusion_matrix,
                           detection_metrics)

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "datasets"


def gt(boxes, classes, iscrowd=None, area=None):
    return ImageGT(np.array(boxes, float).reshape(-1, 4), np.array(classes, int),
                   None if iscrowd is None else np.array(iscrowd, bool),
                   None if area is None else np.array(area, float))


def det(boxes, scores, classes):
    return ImageDet(np.array(boxes, float).reshape(-1, 4), np.array(scores, float), np.array(classes, int))


# ------------------------------------------------------------------------------------ toy cases

def test_one_perfect_detection():
    # one 50x50 GT (area 2500: medium) and the same box detected -> every IoU threshold matches
    e = coco_evaluate([gt([[10, 10, 60, 60]], [0])], [det([[10, 10, 60, 60]], [0.9], [0])], 1)
    assert e.stats.tolist() == pytest.approx([1, 1, 1, -1, 1, -1, 1, 1, 1, -1, 1, -1])
    assert e.per_class_ap.tolist() == pytest.approx([1.0])


def test_tp_fp_tp_hand_computed_ap():
    # 2 GTs; detections by score: TP (0.9), FP (0.8, no overlap), TP (0.7).
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> made monotone from the right: 1, 2/3, 2/3.
    # recall points 0.00..0.50 (51 of them) read precision 1, points 0.51..1.00 (50) read 2/3:
    # AP = (51 * 1 + 50 * 2/3) / 101 = 0.834983..., the same at every IoU threshold (exact boxes).
    g = gt([[0, 0, 50, 50], [100, 100, 150, 150]], [0, 0])
    d = det([[0, 0, 50, 50], [200, 200, 250, 250], [100, 100, 150, 150]], [0.9, 0.8, 0.7], [0, 0, 0])
    e = coco_evaluate([g], [d], 1)
    ap = (51 + 50 * 2 / 3) / 101
    assert e.stats[0] == pytest.approx(ap, abs=1e-12)
    assert e.stats[1] == pytest.approx(ap, abs=1e-12)
    assert e.stats[6] == pytest.approx(0.5)  # AR@1: the top detection finds 1 of 2 GTs
    assert e.stats[7] == pytest.approx(1.0)  # AR@10


def test_iou_tie_goes_to_the_later_gt():
    # GT1 = (0,0,10,10), GT2 = (2,0,12,10); det1 = (1,0,11,10) (0.9) has IoU 90/110 = 0.818 with
    # both; det2 = GT1 exactly (0.8) has IoU 1 with GT1 and 80/120 = 0.667 with GT2.
    # pycocotools gives a tie to the later GT: det1 -> GT2, det2 -> GT1, 2 TPs (AP 1) for the 7
    # thresholds 0.50..0.80. At 0.85..0.95 det1 misses (FP first) and det2 -> GT1: precision
    # 0, 1/2 at recall 0, 1/2 -> AP 51 * 0.5 / 101. AP@[.5:.95] = (7 + 3 * 51 * 0.5 / 101) / 10.
    # (Ties to the first GT would give det1 -> GT1 and leave det2 only the 0.667 match.)
    g = gt([[0, 0, 10, 10], [2, 0, 12, 10]], [0, 0])
    d = det([[1, 0, 11, 10], [0, 0, 10, 10]], [0.9, 0.8], [0, 0])
    e = coco_evaluate([g], [d], 1)
    assert e.stats[0] == pytest.approx((7 + 3 * 51 * 0.5 / 101) / 10, abs=1e-12)
    coco_gt = {"images": [{"id": 1}], "categories": [{"id": 1}],
               "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100,
                                "iscrowd": 0},
                               {"id": 2, "image_id": 1, "category_id": 1, "bbox": [2, 0, 10, 10], "area": 100,
                                "iscrowd": 0}]}
    assert pycocotools_eval(coco_gt, [(1, 1, 1, 0, 10, 10, 0.9), (1, 1, 0, 0, 10, 10, 0.8)]).stats[0] == \
        pytest.approx(e.stats[0], abs=1e-12)


def test_wrong_class_gives_zero():
    # the only GT is class 0; the detections are class 1 (which has no GT: excluded from the mean)
    e = coco_evaluate([gt([[0, 0, 50, 50]], [0])], [det([[0, 0, 50, 50]], [0.9], [1])], 2)
    assert e.stats[0] == 0.0 and e.stats[1] == 0.0
    assert e.per_class_ap[0] == 0.0 and math.isnan(e.per_class_ap[1])


def test_detection_on_crowd_region_is_ignored():
    # GT 0 regular, GT 1 a crowd region; the highest-scored detection lies inside the crowd region
    # (IoU with a crowd = intersection / detection area = 1). Ignored -> AP 1.
    # Without the crowd flag it is a FP ranked first and GT 1 is a missed object: precision 0, 1/2
    # at recall 0, 1/2 -> monotone 1/2, 1/2 -> recall points 0.00..0.50 (51) read 1/2, AP50 0.2525.
    boxes = [[0, 0, 50, 50], [100, 100, 300, 300]]
    dets = det([[120, 120, 160, 160], [0, 0, 50, 50]], [0.95, 0.9], [0, 0])
    crowd = coco_evaluate([gt(boxes, [0, 0], iscrowd=[False, True])], [dets], 1)
    assert crowd.stats[0] == pytest.approx(1.0)
    plain = coco_evaluate([gt(boxes, [0, 0])], [dets], 1)
    assert plain.stats[1] == pytest.approx(51 * 0.5 / 101)


def test_area_field_decides_the_size_range():
    # a 50x50 box (box area 2500: medium) whose annotation area is 500 (small)
    e = coco_evaluate([gt([[0, 0, 50, 50]], [0], area=[500])], [det([[0, 0, 50, 50]], [0.9], [0])], 1)
    assert e.stats[3] == pytest.approx(1.0) and e.stats[4] == -1


def test_empty_inputs_and_bad_input():
    e = coco_evaluate([gt([], []), gt([], [])], [det([], [], []), det([], [], [])], 3)
    assert (e.stats == -1).all()
    with pytest.raises(ValueError, match="class 5 outside"):
        coco_evaluate([gt([[0, 0, 1, 1]], [5])], [det([], [], [])], 3)
    with pytest.raises(ValueError, match="2 ground-truth images but 1"):
        coco_evaluate([gt([], []), gt([], [])], [det([], [], [])], 3)


# ------------------------------------------------------------------------ pycocotools equality

def synthetic_coco(n_images, seed, n_classes, crowd_p=0.1, objects=7.0, extra_fp=3.0):
    """COCO GT dict + detection rows (image_id, category_id, x, y, w, h, score): GT jittered by
    ~10 % (85 % found, 5 % of those with a wrong class), Poisson false positives, crowd regions
    with detections on them, empty images, some duplicated GT (IoU ties) and rounded scores (ties)."""
    rng = np.random.default_rng(seed)
    W, H = 640, 480
    images, anns, dets = [], [], []
    for img_id in range(1, n_images + 1):
        images.append({"id": img_id, "width": W, "height": H})
        n_obj = 0 if rng.random() < 0.1 else rng.poisson(objects)
        for _ in range(n_obj):
            w, h = np.exp(rng.uniform(math.log(8), math.log(320), 2))
            x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
            c = int(rng.integers(1, n_classes + 1))
            crowd = int(rng.random() < crowd_p)
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": c, "bbox": [x, y, w, h],
                         "area": w * h * rng.uniform(0.4, 1.0), "iscrowd": crowd})
            if rng.random() < 0.05:
                anns.append(dict(anns[-1], id=len(anns) + 1))
            for _ in range(1 + 2 * crowd):
                if rng.random() < 0.85:
                    j = rng.normal(0, 0.1, 4)
                    dc = c if rng.random() < 0.95 else int(rng.integers(1, n_classes + 1))
                    score = float(np.clip(1 - np.abs(j).sum() + rng.normal(0, 0.1), 0.01, 1))
                    score = round(score, 1) if rng.random() < 0.2 else score
                    dets.append((img_id, dc, x + j[0] * w, y + j[1] * h, w * math.exp(j[2]),
                                 h * math.exp(j[3]), score))
        for _ in range(rng.poisson(extra_fp)):
            w, h = np.exp(rng.uniform(math.log(8), math.log(320), 2))
            c = int(rng.integers(1, n_classes + 1))
            dets.append((img_id, c, rng.uniform(0, W - w), rng.uniform(0, H - h), w, h,
                         float(rng.uniform(0.01, 0.6))))
    cats = [{"id": i, "name": f"c{i}"} for i in range(1, n_classes + 1)]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def to_ours(coco_gt, rows):
    """COCO dict + detection rows -> ImageGT/ImageDet lists in sorted image-id order."""
    img_ids = sorted(im["id"] for im in coco_gt["images"])
    pos = {i: k for k, i in enumerate(img_ids)}
    cmap = {c: k for k, c in enumerate(sorted(c["id"] for c in coco_gt["categories"]))}
    anns, found = [[] for _ in img_ids], [[] for _ in img_ids]
    for a in coco_gt["annotations"]:
        anns[pos[a["image_id"]]].append(a)
    for r in rows:
        found[pos[r[0]]].append(r)
    gts, dets = [], []
    for a_img, d_img in zip(anns, found):
        b = np.array([a["bbox"] for a in a_img], float).reshape(-1, 4)
        gts.append(gt(np.c_[b[:, :2], b[:, :2] + b[:, 2:]], [cmap[a["category_id"]] for a in a_img],
                      [bool(a["iscrowd"]) for a in a_img], [a["area"] for a in a_img]))
        r = np.array([x[2:7] for x in d_img], float).reshape(-1, 5)
        dets.append(det(np.c_[r[:, :2], r[:, :2] + r[:, 2:4]], r[:, 4], [cmap[x[1]] for x in d_img]))
    return gts, dets, len(cmap)


def pycocotools_eval(coco_gt, rows):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        g = COCO()
        g.dataset = copy.deepcopy(coco_gt)
        g.createIndex()
        d = g.loadRes([{"image_id": r[0], "category_id": r[1], "bbox": list(r[2:6]), "score": r[6]}
                       for r in rows])
        e = COCOeval(g, d, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


def assert_same_as_pycocotools(coco_gt, rows):
    ref = pycocotools_eval(coco_gt, rows)
    ours = coco_evaluate(*to_ours(coco_gt, rows))
    np.testing.assert_allclose(ours.stats, ref.stats, atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours.precision, ref.eval["precision"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours.recall, ref.eval["recall"], atol=1e-4, rtol=0)
    return ours


@pytest.mark.parametrize("n_images,seed,n_classes,objects",
                         [(150, 0, 6, 7.0), (120, 1, 20, 4.0), (15, 2, 2, 70.0)])
def test_equals_pycocotools_synthetic(n_images, seed, n_classes, objects):
    coco_gt, rows = synthetic_coco(n_images, seed, n_classes, objects=objects, extra_fp=objects)
    assert sum(a["iscrowd"] for a in coco_gt["annotations"]) > 0
    ours = assert_same_as_pycocotools(coco_gt, rows)
    assert 0.1 < ours.stats[0] < 0.9  # a non-trivial case


def test_equals_pycocotools_coco_mini():
    path = DATA / "coco-mini" / "annotations" / "instances_val2017.json"
    if not path.exists():
        pytest.skip(f"shared dataset not found: {path}")
    coco_gt = json.loads(path.read_text())
    rng = np.random.default_rng(0)
    cats = [c["id"] for c in coco_gt["categories"]]
    crowds = [a for a in coco_gt["annotations"] if a["iscrowd"]]
    if not crowds:  # make sure crowd regions are exercised
        for a in coco_gt["annotations"][::25]:
            a["iscrowd"] = 1
        crowds = [a for a in coco_gt["annotations"] if a["iscrowd"]]
    rows = []
    for a in coco_gt["annotations"]:
        x, y, w, h = a["bbox"]
        for _ in range(3 if a["iscrowd"] else 1):
            if rng.random() < 0.8:  # the rest are missed objects
                j = rng.normal(0, 0.08, 4) * (3 if a["iscrowd"] else 1)
                c = a["category_id"] if rng.random() < 0.9 else int(rng.choice(cats))
                rows.append((a["image_id"], c, x + j[0] * w, y + j[1] * h, w * math.exp(j[2]),
                             h * math.exp(j[3]), float(rng.uniform(0.05, 1))))
    for im in coco_gt["images"]:
        for _ in range(rng.poisson(4)):  # false positives
            w, h = rng.uniform(4, 300, 2)
            rows.append((im["id"], int(rng.choice(cats)), rng.uniform(0, im["width"] - w),
                         rng.uniform(0, im["height"] - h), w, h, float(rng.uniform(0, 0.7))))
    assert crowds
    ours = assert_same_as_pycocotools(coco_gt, rows)
    assert 0.1 < ours.stats[0] < 0.9


# --------------------------------------------------------------------- summary, matrix, plots

def test_detection_metrics_hand_computed():
    # the TP/FP/TP case: at conf <= 0.7 P = 2/3, R = 1 (F1 0.8, the best); 0.7 < conf <= 0.8:
    # P = R = 1/2 (F1 0.5); 0.8 < conf <= 0.9: P = 1, R = 1/2 (F1 2/3)
    g = gt([[0, 0, 50, 50], [100, 100, 150, 150]], [0, 0])
    d = det([[0, 0, 50, 50], [200, 200, 250, 250], [100, 100, 150, 150]], [0.9, 0.8, 0.7], [0, 0, 0])
    m = detection_metrics([g, gt([], [])], [d, det([], [], [])], 2, ["a", "b"])
    assert m.precision[0] == pytest.approx(2 / 3) and m.recall[0] == pytest.approx(1.0)
    assert m.best_conf <= 0.7 and math.isnan(m.precision[1])
    assert m.f1_curve[0, np.searchsorted(m.conf_grid, 0.75)] == pytest.approx(0.5)
    assert m.f1_curve[0, np.searchsorted(m.conf_grid, 0.85)] == pytest.approx(2 / 3)
    assert m.instances.tolist() == [2, 0] and m.images.tolist() == [1, 0] and m.n_images == 2
    assert m.map == pytest.approx((51 + 50 * 2 / 3) / 101) and m.map == m.coco.stats[0]
    assert m.fitness == pytest.approx(0.1 * m.map50 + 0.9 * m.map)
    assert m.rows()[0][:3] == ("all", 2, 2)


def test_detection_metrics_maps_equal_coco():
    coco_gt, rows = synthetic_coco(60, 5, 4)
    gts, dets, k = to_ours(coco_gt, rows)
    m = detection_metrics(gts, dets, k, [f"c{i}" for i in range(k)])
    ref = pycocotools_eval(coco_gt, rows)
    assert m.map == pytest.approx(ref.stats[0], abs=1e-4) and m.map50 == pytest.approx(ref.stats[1], abs=1e-4)
    assert np.nanmean(m.ap) == pytest.approx(m.map)


def test_confusion_matrix_hand_made():
    # GT: class 0 at A, class 1 at B, class 1 at C (missed). Detections: class 0 on A (correct),
    # class 0 on B (confused), class 1 at D (background FP), class 1 on C with score 0.1 (< conf).
    A, B, C, D = [0, 0, 50, 50], [100, 0, 150, 50], [200, 0, 250, 50], [300, 0, 350, 50]
    g = gt([A, B, C], [0, 1, 1])
    d = det([A, B, D, C], [0.9, 0.8, 0.7, 0.1], [0, 0, 1, 1])
    cm = confusion_matrix([g], [d], 2, conf=0.25, iou_thres=0.45)
    assert cm.tolist() == [[1, 1, 0],
                           [0, 0, 1],
                           [0, 1, 0]]


def test_plots_written(tmp_path):
    from utils.eval.plots_metrics import plot_detection_metrics
    coco_gt, rows = synthetic_coco(20, 6, 3)
    gts, dets, k = to_ours(coco_gt, rows)
    m = detection_metrics(gts, dets, k, ["a", "b", "c"])
    paths = plot_detection_metrics(m, tmp_path, confusion_matrix(gts, dets, k))
    assert sorted(p.name for p in paths) == ["F1_curve.png", "PR_curve.png", "P_curve.png", "R_curve.png",
                                             "confusion_matrix.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
