"""The models ``benchmarks/bench_learning.py --who ours-<model>`` trains: a YAML of configs/, a whole trial layout
of benchmarks/configs/ (the eighteenth session's block ablation), or a VARIANTS entry -- a configs/ model with some
top-level keys replaced (anchors, BatchNorm eps), written into the cell so that RESULTS.md's rows run again as named.
"""
from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

V4_ANCHORS = [[10, 10, 16, 12, 12, 16], [20, 20, 30, 24, 24, 30], [40, 40, 56, 56, 80, 80]]
V5_COCO_ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
VARIANTS = {
    "yolov4_n_eps3": ("yolov4_n", {"bn_eps": 0.001}),
    "yolov4_n_v5anchors": ("yolov4_n", {"anchors": V5_COCO_ANCHORS}),
    "yolov5n_layout_v4anchors": ("yolov5n_layout", {"anchors": V4_ANCHORS}),
    # vehicles-fit at 320 px: this project's IoU k-means autoanchor, and yolov5's for its seed 0
    "arm_iou": ("yolov5n_layout", {"anchors": [[5, 5, 10, 4, 11, 7], [18, 11, 31, 14, 40, 32],
                                               [73, 28, 90, 79, 222, 135]]}),
    "arm_v5ga": ("yolov5n_layout", {"anchors": [[6, 5, 18, 10, 39, 27], [76, 25, 65, 73, 116, 68],
                                                [137, 133, 217, 112, 290, 211]]}),
}


def model_file(model: str) -> Path | None:
    """configs/<model>.yaml, else benchmarks/configs/<model>.yaml, else None."""
    for folder in (ROOT / "configs", ROOT / "benchmarks" / "configs"):
        if (folder / f"{model}.yaml").is_file():
            return folder / f"{model}.yaml"
    return None


def model_cfg(model: str, cell: Path) -> Path:
    """The model YAML of ``--who ours-<model>``: a file (``model_file``), or its VARIANTS entry written into
    ``cell``."""
    path = model_file(model)
    if path is not None:
        return path
    base, keys = VARIANTS[model]
    cfg = {**yaml.safe_load((ROOT / "configs" / f"{base}.yaml").read_text()), **keys}
    out = cell / f"{model}.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out
