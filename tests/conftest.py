"""Test-wide settings: one torch thread (2-core CI; parallel subprocesses and loader workers
otherwise oversubscribe the cores and OpenMP spin-waiting makes everything many times slower)."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

VEHICLE_NAMES = ["motorcycle", "car", "bus", "truck"]
VEHICLE_CATEGORY_IDS = [4, 3, 6, 8]  # COCO category ids of the four vehicle classes


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A loadable checkpoint of a ~0.6 M-parameter YOLOv4-S variant (width 0.25, depth 0.33, nc=4,
    random weights, seed 0) with the vehicle names and COCO category ids."""
    from models.yolo import Model, load_model_cfg
    from utils.checkpoint import save_checkpoint
    cfg = load_model_cfg(Path(__file__).resolve().parents[1] / "configs" / "yolov4_s.yaml")
    cfg.update(width_multiple=0.25, depth_multiple=0.33, nc=4)
    torch.manual_seed(0)
    model = Model(cfg)
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_checkpoint({"epoch": 0, "model_cfg": model.yaml, "names": VEHICLE_NAMES,
                     "category_ids": VEHICLE_CATEGORY_IDS, "model": model.state_dict(), "ema": None}, path)
    return path
