"""Train and validate the yolov5 pip package (7.0.x) offline; run by bench_learning.py with the
PEER venv's python (never this project's: yolov5 is not a dependency). Imports nothing of this project.

    $HOME/.cache/peer-venv/bin/python benchmarks/peer_yolov5.py train --data D.yaml --cfg yolov5n.yaml \
        --hyp H.yaml --epochs 30 --img 160 --batch 16 --seed 0 --out DIR [--optimizer Adam] [--cos-lr]
    $HOME/.cache/peer-venv/bin/python benchmarks/peer_yolov5.py val --data D.yaml --weights W.pt --img 160 --out DIR
    $HOME/.cache/peer-venv/bin/python benchmarks/peer_yolov5.py state --weights W.pt --out state.pt   # EMA tensors only

Offline needs handled here: a font for its plots (any TTF copied to ~/.config/Ultralytics/Arial.ttf,
matplotlib's DejaVuSans), ``np.trapz`` (removed in numpy 2: aliased to ``np.trapezoid``) and
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (its checkpoints are pickled models). ``val`` writes
``<out>/<weights stem>_predictions.json`` (COCO results: image_id = numeric file stem, category_id =
class index), which bench_learning.py scores with this project's evaluator.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


def _offline_setup() -> None:
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    os.environ.setdefault("YOLOv5_VERBOSE", "True")
    import numpy as np
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid
    font = Path.home() / ".config" / "Ultralytics" / "Arial.ttf"
    if not font.exists():
        import matplotlib
        src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        font.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, font)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("train", "val", "state"))
    ap.add_argument("--data", default="")
    ap.add_argument("--cfg", default="yolov5n.yaml")
    ap.add_argument("--hyp", default="")
    ap.add_argument("--weights", default="")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--img", type=int, default=160)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--optimizer", default="SGD")
    ap.add_argument("--cos-lr", action="store_true")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    _offline_setup()
    out = Path(a.out)
    if a.mode == "train":
        from yolov5 import train
        train.run(data=a.data, cfg=a.cfg, weights="", hyp=a.hyp, epochs=a.epochs, batch_size=a.batch, imgsz=a.img,
                  seed=a.seed, optimizer=a.optimizer, cos_lr=a.cos_lr, workers=0, device="cpu",
                  project=str(out.parent), name=out.name, exist_ok=True, noplots=True,
                  patience=0)   # 0 = never stop early (as this project's --patience 0): every cell runs its epochs
    elif a.mode == "state":  # the checkpoint's (EMA) weights as plain tensors, for benchmarks/peer_weights.py
        import torch
        ckpt = torch.load(a.weights, map_location="cpu", weights_only=False)
        model = (ckpt.get("ema") or ckpt["model"]).float()
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, out)
    else:
        from yolov5 import val
        val.run(data=a.data, weights=a.weights, imgsz=a.img, batch_size=32, conf_thres=0.001, iou_thres=0.6,
                task="val", device="cpu", workers=0, save_json=True, project=str(out.parent), name=out.name,
                exist_ok=True, plots=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
