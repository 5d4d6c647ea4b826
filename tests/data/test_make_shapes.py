"""The synthetic shapes dataset: byte-for-byte reproducible, fast, usable through data/shapes.yaml."""
import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from data.scripts.make_shapes import CLASSES, make_shapes
from utils.config import ConfigError
from utils.data.config import data_config_from_dict, ensure_dataset, load_data_config
from utils.data.datasets import load_split

REPO = Path(__file__).resolve().parents[2]


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_generation_is_byte_for_byte_reproducible(tmp_path):
    a = tree_hashes(make_shapes(tmp_path / "a", n_train=30, n_val=10, seed=5))
    b = tree_hashes(make_shapes(tmp_path / "b", n_train=30, n_val=10, seed=5))
    assert len(a) == 2 * (30 + 10) and a == b
    c = tree_hashes(make_shapes(tmp_path / "c", n_train=30, n_val=10, seed=6))
    assert c != a


def test_download_entry_generates_the_default_dataset(tmp_path, caplog):
    """shapes.yaml's download runs make_shapes (a subprocess): 400 + 100 images in a few seconds, 1-6
    objects each, every object >= 12 px at a 160 px training size."""
    shipped = load_data_config(REPO / "data" / "shapes.yaml")
    cfg = data_config_from_dict({"path": "shapes", "format": "yolo", "train": "images/train", "val": "images/val",
                                 "names": list(shipped.names), "download": shipped.download}, tmp_path / "s.yaml")
    with pytest.raises(ConfigError, match="dataset not found.*'download'"):
        ensure_dataset(cfg)  # never downloads unless asked
    t = time.perf_counter()
    with caplog.at_level(logging.INFO):
        ensure_dataset(cfg, download=True)
    elapsed = time.perf_counter() - t
    assert elapsed < 30, f"generation took {elapsed:.1f} s"
    assert any("running download" in r.getMessage() for r in caplog.records)
    train, val = load_split(cfg, "train", cache=False), load_split(cfg, "val", cache=False)
    assert len(train) == 400 and len(val) == 100 and train.names == list(CLASSES)
    assert not train.report.issues and not val.report.issues
    for info in (train, val):
        counts = np.array([len(r) for r in info.records])
        assert counts.min() >= 1 and counts.max() <= 6
        assert (info.class_counts() > 0.15 * counts.sum()).all()  # all 4 classes well represented
        for r in info.records:
            assert 128 <= r.width <= 256 and 128 <= r.height <= 256
            wh = (r.boxes_xyxy[:, 2:] - r.boxes_xyxy[:, :2]) * 160 / max(r.width, r.height)
            assert wh.min() >= 12
