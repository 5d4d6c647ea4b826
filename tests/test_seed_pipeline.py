"""Seed 004's pipeline through the command line, at toy size: train.py --task classify, then
train.py --cfg yolov2_n.yaml --hyp hyp.yolov2.yaml --weights <classifier best.pt> (backbone
transferred, YOLOv2 loss, multi-scale), then test.py on the detector."""
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_classify_transfer_detect(tmp_path, caplog):
    import test as test_cli
    import train
    cls_root = tmp_path / "cls"
    subprocess.run([sys.executable, str(ROOT / "data/scripts/make_shapes_cls.py"), "--out", str(cls_root),
                    "--train", "6", "--val", "3"], check=True, stdout=subprocess.DEVNULL)
    cls_yaml = tmp_path / "cls.yaml"
    cls_yaml.write_text(f"path: {cls_root}\nformat: imagefolder\ntrain: train\nval: val\n"
                        "names: [circle, square, triangle, star]\n")
    assert train.main(["--task", "classify", "--data", str(cls_yaml), "--epochs", "1", "--img-size", "32",
                       "--project", str(tmp_path / "c"), "--quiet"]) == 0
    best = tmp_path / "c" / "exp" / "weights" / "best.pt"

    from make_shapes import make_shapes
    make_shapes(tmp_path / "shapes", n_train=8, n_val=4, seed=2)
    det_yaml = tmp_path / "shapes.yaml"
    det_yaml.write_text(yaml.safe_dump({"path": str(tmp_path / "shapes"), "format": "yolo", "train": "images/train",
                                        "val": "images/val", "names": ["circle", "square", "triangle", "star"]}))
    with caplog.at_level("INFO"):
        rc = train.main(["--cfg", "configs/yolov2_n.yaml", "--hyp", "configs/hyp.yolov2.yaml", "--weights", str(best),
                         "--data", str(det_yaml), "--epochs", "1", "--batch-size", "4", "--img-size", "64",
                         "--multi-scale", "--workers", "0", "--device", "cpu", "--project", str(tmp_path / "d"),
                         "--quiet", "--noautoanchor"])
    assert rc == 0
    # darknet19_cls_n's 110 tensors minus the Classify conv's weight and bias land in yolov2_n's rows 0-5
    assert "transferred 108/140 tensors (rows 0-5)" in caplog.text
    run = tmp_path / "d" / "exp"
    assert len((run / "results.csv").read_text().splitlines()) == 2
    assert test_cli.main(["--weights", str(run / "weights" / "last.pt"), "--data", str(det_yaml), "--img-size", "64",
                          "--no-plots", "--project", str(tmp_path / "t")]) == 0
