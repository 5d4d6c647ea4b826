"""Test-wide settings: one torch thread (2-core CI; parallel subprocesses and loader workers
otherwise oversubscribe the cores and OpenMP spin-waiting makes everything many times slower)."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

torch.set_num_threads(1)

from pathlib import Path

import pytest

VEHICLE_NAMES = ["motorcycle", "car", "bus", "truck"]
VEHICLE_CATEGORY_IDS = [4, 3, 6, 8]  # COCO category ids of the four vehicle classes


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A loadable checkpoint of a ~0.6 M-parameter YOLOv4-S variant (width 0.25, depth 0.33, nc=4,
    random weights, seed 0) with the vehicle names and COCO category ids."""
    from models.yolo import Model, load_model_cfg
    from utils.train.checkpoint import save_checkpoint
    cfg = load_model_cfg(Path(__file__).resolve().parents[1] / "configs" / "yolov4_s.yaml")
    cfg.update(width_multiple=0.25, depth_multiple=0.33, nc=4)
    torch.manual_seed(0)
    model = Model(cfg)
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_checkpoint({"epoch": 0, "model_cfg": model.yaml, "names": VEHICLE_NAMES,
                     "category_ids": VEHICLE_CATEGORY_IDS, "model": model.state_dict(), "ema": None}, path)
    return path


def shapes_data_yaml(root: Path, n_train: int, n_val: int, seed: int = 1) -> Path:
    """Generate a shapes dataset under ``root`` (data/scripts/make_shapes.py) and write its data YAML."""

    import yaml
    from make_shapes import make_shapes
    make_shapes(root / "shapes", n_train=n_train, n_val=n_val, seed=seed)
    y = root / "shapes.yaml"
    y.write_text(yaml.safe_dump({"path": str(root / "shapes"), "format": "yolo", "train": "images/train",
                                 "val": "images/val", "names": ["circle", "square", "triangle", "star"]}))
    return y


@pytest.fixture(scope="session")
def shapes_yaml(tmp_path_factory) -> Path:
    """A small generated shapes dataset (32 train / 16 val images, seed 1) and its data YAML."""
    return shapes_data_yaml(tmp_path_factory.mktemp("shapes"), 32, 16)


def _train_args(data: Path, project: Path, **kw) -> list[str]:
    """train.py arguments of a tiny CPU run (yolov4_n, 64 px, batch 8, 2 epochs); ``kw`` overrides
    flags (``True`` = a bare flag)."""
    args = {"cfg": "configs/yolov4_n.yaml", "data": str(data), "hyp": "configs/hyp.shapes.yaml", "epochs": 2,
            "batch-size": 8, "img-size": 64, "workers": 0, "device": "cpu", "project": str(project),
            "name": "exp", "seed": 3, **kw}
    out = []
    for k, v in args.items():
        out += [f"--{k}", str(v)] if v is not True else [f"--{k}"]
    return out + ["--quiet", "--noautoanchor"]


@pytest.fixture
def train_args():
    """The function that builds a tiny train.py command line (see ``_train_args``)."""
    return _train_args
