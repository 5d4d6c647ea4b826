"""The one atomic writer (utils/atomic.py) behind checkpoints and dataset caches: fsync before the
rename, no temporary left behind, the old file kept when a write fails."""
import os

import numpy as np
import pytest
import torch

from utils.atomic import write_atomic
from utils.data.records import make_record
from utils.data.verify import VerifyReport, load_cache, save_cache
from utils.train.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture
def fsyncs(monkeypatch):
    """The file descriptors passed to os.fsync, in order."""
    seen = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (seen.append(fd), real(fd))[1])
    return seen


def test_write_atomic_replaces_and_leaves_only_the_target(tmp_path, fsyncs):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    write_atomic(target, lambda f: f.write(b"new bytes"))
    assert target.read_bytes() == b"new bytes" and len(fsyncs) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def half_then_fail(f):
        f.write(b"half")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        write_atomic(target, half_then_fail)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_checkpoint_and_dataset_cache_are_fsynced(tmp_path, fsyncs):
    save_checkpoint({"epoch": 4, "model": {"w": torch.arange(3.0)}}, tmp_path / "last.pt")
    assert len(fsyncs) == 1 and load_checkpoint(tmp_path / "last.pt")["epoch"] == 4
    rec = make_record(str(tmp_path / "x.jpg"), 7, 64, 48, np.array([[1, 2, 30, 40]], np.float32), np.array([2]))
    assert save_cache(tmp_path / "val.cache.npz", "key-1", [rec], VerifyReport("val", n_found=1), {"m": 1})
    assert len(fsyncs) == 2
    records, _, meta = load_cache(tmp_path / "val.cache.npz", "key-1")
    assert meta == {"m": 1} and records[0].image_id == 7 and records[0].boxes_xyxy.tolist() == [[1, 2, 30, 40]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "val.cache.npz"]
