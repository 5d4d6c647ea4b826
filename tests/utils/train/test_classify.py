"""Classification (seed 004): Darknet-19 / Darknet-53 classifiers, image-folder data and its
augmentation, top-k, backbone transfer into yolov2 / yolov3, and the train.py / test.py commands."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml as yamllib

from models.classifier import ClassifierModel
from models.yolo import Model
from utils.train.checkpoint import save_checkpoint
from utils.train.classify import topk_correct
from utils.data.imagefolder import (ClassifyDataset, augment_image, centre_crop_box, load_classify_config,
                                 load_classify_split, rotate)
from utils.config import ConfigError, Hyp
from utils.train.transfer import transfer_weights

ROOT = Path(__file__).resolve().parents[3]


def test_topk_hand_values():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 2, 0])
    # row 0: top-1 hit; row 1: label 2 is 2nd; row 2: label 0 is last (3rd of 3)
    assert topk_correct(logits, labels, (1, 2, 3, 5)) == [1, 2, 3, 3]


def _seed_004_darknet19_params(nc: int) -> int:
    """Seed 004's Darknet19 cfg: convs (no bias) + BN (2 per channel), kernels alternating 3, 1, 3
    inside a layer, then the 1x1 conv to nc with a bias."""
    cfg = [[32], ["M", 64], ["M", 128, 64, 128], ["M", 256, 128, 256], ["M", 512, 256, 512, 256, 512],
           ["M", 1024, 512, 1024, 512, 1024]]
    total, c_in = 0, 3
    for layer in cfg:
        k = 3
        for v in layer:
            if v == "M":
                continue
            total += c_in * v * k * k + 2 * v
            k, c_in = (1 if k == 3 else 3), v
    return total + c_in * nc + nc


def test_darknet19_classifier_matches_seed_004():
    model = ClassifierModel(ROOT / "configs/darknet19_cls.yaml")
    assert sum(p.numel() for p in model.parameters()) == _seed_004_darknet19_params(1000) == 20_842_376
    out = model(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 1000)  # logits; 5 max-pools: 64 px -> 2x2 maps, averaged


@pytest.mark.parametrize("cls_cfg,det_cfg,rows", [("darknet19_cls.yaml", "yolov2.yaml", 6),
                                                   ("darknet53_cls.yaml", "yolov3.yaml", 11)])
def test_classifier_backbone_lines_up_with_the_detector(cls_cfg, det_cfg, rows):
    from models.yolo import load_model_cfg, parse_model
    with torch.device("meta"):  # layers only (Model's stride-finding forward needs real tensors)
        cls_sd = ClassifierModel(ROOT / "configs" / cls_cfg, nc=10).state_dict()
        layers, _, _ = parse_model({**load_model_cfg(ROOT / "configs" / det_cfg), "nc": 4})
        det_sd = {f"model.{k}": v for k, v in layers.state_dict().items()}
    backbone = {k: v.shape for k, v in cls_sd.items() if int(k.split(".")[1]) < rows}
    assert len(backbone) == len(cls_sd) - 2  # all but the Classify conv's weight and bias
    assert all(k in det_sd and det_sd[k].shape == s for k, s in backbone.items())


def test_transfer_counts_and_copies_the_backbone(tmp_path, caplog):
    torch.manual_seed(0)
    cls = ClassifierModel(ROOT / "configs/darknet19_cls_n.yaml", nc=4)
    sd = cls.state_dict()
    save_checkpoint({"model": sd, "ema": None, "task": "classify"}, tmp_path / "best.pt")
    det = Model(ROOT / "configs/yolov2_n.yaml", nc=4)
    with caplog.at_level("INFO"):
        info = transfer_weights(det, tmp_path / "best.pt")
    assert info == {"transferred": len(sd) - 2, "model_tensors": len(det.state_dict()), "source_tensors": len(sd)}
    assert "(rows 0-5)" in caplog.text
    dsd = det.state_dict()
    assert all(torch.equal(dsd[k], v) for k, v in sd.items() if not k.startswith("model.6."))


def _folder(tmp_path, classes=("a", "b"), n=3, extra=None):
    for split in ("train", "val"):
        for c, name in enumerate(list(classes) + ([extra] if extra else [])):
            d = tmp_path / split / name
            d.mkdir(parents=True)
            for i in range(n):
                cv2.imwrite(str(d / f"{i}.png"), np.full((20, 30, 3), 40 * (c + 1) + i, np.uint8))
    (tmp_path / "d.yaml").write_text(f"path: {tmp_path}\nformat: imagefolder\ntrain: train\nval: val\n")
    return tmp_path / "d.yaml"


def test_image_folder_split(tmp_path):
    cfg = load_classify_config(_folder(tmp_path, ("b", "a")))
    split = load_classify_split(cfg, "train")
    assert split.names == ("a", "b") and split.counts() == [3, 3] and split.labels == (0, 0, 0, 1, 1, 1)
    img, label = ClassifyDataset(split, 16)[4]
    assert img.shape == (3, 16, 16) and img.dtype == torch.uint8 and label == 1
    assert int(img[0, 8, 8]) == 40 * 1 + 1  # b/1.png (b was written first: value 40 + i), constant after resizing
    with pytest.raises(ConfigError, match="is not one of the class names"):
        load_classify_split(cfg, "val", ("a",))


def test_detection_refuses_an_image_folder(tmp_path):
    from utils.data.config import load_data_config
    from utils.data.datasets import load_split
    with pytest.raises(ConfigError, match="--task classify"):
        load_split(load_data_config(_folder(tmp_path)), "train")


def test_augmentation_neutral_equals_validation_and_rotation():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
    neutral = Hyp(scale=0.0, degrees=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, fliplr=0.0, flipud=0.0)
    x, y, side = centre_crop_box(24, 24)
    expected = cv2.resize(img[y:y + side, x:x + side], (12, 12), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(augment_image(img, 12, neutral, rng), expected)
    assert np.array_equal(rotate(img, 90.0), np.rot90(img))  # 90 degrees counter-clockwise, exactly
    flipped = augment_image(img, 24, Hyp(scale=0.0, degrees=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, fliplr=1.0,
                                         flipud=0.0), rng)
    assert np.array_equal(flipped, img[:, ::-1])


def test_train_classify_then_test_py(tmp_path):
    """train.py --task classify on a tiny generated shapes_cls set, then test.py on its best.pt."""
    data = tmp_path / "cls"
    subprocess.run([sys.executable, str(ROOT / "data/scripts/make_shapes_cls.py"), "--out", str(data), "--train", "6",
                    "--val", "3"], check=True, stdout=subprocess.DEVNULL)
    counts = {p.name: len(list(p.glob("*.jpg"))) for p in (data / "train").iterdir()}
    assert sorted(counts) == ["circle", "square", "star", "triangle"] and sum(counts.values()) >= 6
    yaml = tmp_path / "cls.yaml"
    yaml.write_text(f"path: {data}\nformat: imagefolder\ntrain: train\nval: val\n"
                    "names: [circle, square, triangle, star]\n")
    import test as test_cli
    import train
    assert train.main(["--task", "classify", "--data", str(yaml), "--epochs", "2", "--img-size", "32",
                       "--batch-size", "8", "--project", str(tmp_path / "runs"), "--quiet",
                       "--optimizer", "SGD", "--cos-lr"]) == 0
    run = tmp_path / "runs" / "exp"
    hyp = yamllib.safe_load((run / "hyp.yaml").read_text())   # the flags override the hyp YAML, as for detection
    assert (hyp["optimizer"], hyp["lr_schedule"]) == ("SGD", "cosine")  # the YAML says Adam, poly
    rows = (run / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and "metrics/top1" in rows[0]
    assert test_cli.main(["--weights", str(run / "weights/best.pt"), "--data", str(yaml),
                          "--project", str(tmp_path / "test")]) == 0
    m = json.loads((tmp_path / "test" / "exp" / "metrics.json").read_text())
    assert m["img_size"] == 32 and m["top5"] == 1.0 and 0 <= m["top1"] <= 1  # 4 classes: top-5 always hits
    assert m["images"] == sum(len(list(p.glob("*.jpg"))) for p in (data / "val").iterdir())


def test_shapes_cls_crops_skip_covered_objects():
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_shapes_cls", ROOT / "data/scripts/make_shapes_cls.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    img = np.zeros((100, 200, 3), np.uint8)
    # object 0: a 20x20 px box at (50, 50) -> crop x, y 37..63 (15 % margin = 3 px each side): 26x26 = 676 px^2
    # object 1: box 60..80 x 50..70 covers 3 x 13 = 39 px^2 of it (5.8 %), and object 0 as much of its crop: kept
    # object 2: a 12x12 box at (180, 50) -> crop 172..188: 16x16, nothing near
    lines = ["0 0.25 0.5 0.1 0.2", "1 0.35 0.6 0.1 0.2", "2 0.9 0.5 0.06 0.12"]
    got = [(k, c, crop.shape[:2]) for k, c, crop in mod.crop_boxes(img, lines)]
    assert got == [(0, 0, (26, 26)), (1, 1, (26, 26)), (2, 2, (16, 16))]
    # move object 1 onto object 0: its box covers 20x20 = 400 of 676 px^2 (59 %): both crops dropped
    got = [k for k, _, _ in mod.crop_boxes(img, ["0 0.25 0.5 0.1 0.2", "1 0.26 0.52 0.1 0.2", lines[2]])]
    assert got == [2]


def test_classify_refuses_detection_only_flags(capsys):
    import train
    assert train.main(["--task", "classify", "--multi-scale", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: --multi-scale is not supported with --task classify (detection only, for now)"
