"""--cache auto | ram | off (utils/data/ram_cache.py): the size estimate, the decision, and that cached
batches are the decoded ones bit for bit."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from data.scripts.make_shapes import make_shapes
from utils.config import Hyp
from utils.data.config import data_config_from_dict
from utils.data.datasets import load_split
from utils.data.loader import LoaderSettings, build_dataloader
from utils.data.ram_cache import AUTO_MAX_BYTES, available_memory, cache_bytes, decide_ram_cache

GB = 10 ** 9


def test_cache_bytes_is_the_resized_images():
    records = [SimpleNamespace(width=640, height=480), SimpleNamespace(width=100, height=300)]
    # 640x480 -> 160x120; 100x300 -> long side 160: h 160, w round(53.3) = 53; 3 bytes per pixel
    assert cache_bytes(records, 160) == 160 * 120 * 3 + 160 * 53 * 3


@pytest.mark.parametrize("choice,need,processes,available,cached", [
    ("ram", 50 * GB, 1, 1 * GB, True),              # asked for: always
    ("off", 1000, 1, 100 * GB, False),              # never
    ("auto", 38_400_000, 1, 20 * GB, True),         # the main job: 500 images at 160 px
    ("auto", 38_400_000, 1, 0.3 * GB, False),       # over 10 % of 0.3 GB
    ("auto", 0.6 * GB, 2, 100 * GB, False),         # two processes: 1.2 GB, over 1 GiB
    ("auto", 0.6 * GB, 1, 100 * GB, True),
    ("auto", 1000, 1, None, False),                 # unknown free memory: stay on disk
])
def test_decision(choice, need, processes, available, cached):
    ok, why = decide_ram_cache(choice, int(need), processes, None if available is None else int(available))
    assert ok is cached
    assert why.startswith(f"--cache {choice}") and "\n" not in why


def test_auto_limit_is_one_gib_at_most():
    assert decide_ram_cache("auto", AUTO_MAX_BYTES, 1, 1000 * GB)[0]
    assert not decide_ram_cache("auto", AUTO_MAX_BYTES + 1, 1, 1000 * GB)[0]


def test_available_memory_is_plausible():
    free = available_memory()
    assert free is None or 10 ** 7 < free < 10 ** 15


def test_cached_batches_equal_decoded_ones(tmp_path):
    root = make_shapes(tmp_path / "shapes", n_train=8, n_val=4, seed=2)
    cfg = data_config_from_dict({"path": str(root), "train": "images/train", "val": "images/val",
                                 "names": ["circle", "square", "triangle", "star"]}, root / "shapes.yaml")
    train, val = load_split(cfg, "train", cache=False), load_split(cfg, "val", cache=False)
    for info, kw in ((train, dict(augment=True, shuffle=True, seed=4)), (val, dict(rect=True))):
        runs = [list(build_dataloader(info, LoaderSettings(96, 4, workers=0, cache_ram=c, **kw), Hyp()))
                for c in (False, True)]
        assert len(runs[0]) == len(runs[1]) == len(info.records) // 4
        for (i1, t1, *_), (i2, t2, *_) in zip(*runs):
            assert torch.equal(i1, i2) and torch.equal(t1, t2)
