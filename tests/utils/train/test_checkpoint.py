"""Checkpoints: plain data that loads with weights_only=True, atomic writes, foreign files refused
(utils/train/checkpoint.py)."""
from __future__ import annotations

import pytest
import torch

from utils.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_checkpoint_roundtrip_weights_only(tmp_path):
    path = tmp_path / "w" / "last.pt"
    save_checkpoint({"epoch": 3, "model": {"w": torch.ones(2)}, "opt": {"lr": 0.1}, "names": ["a"]}, path)
    raw = torch.load(path, weights_only=True)
    assert raw["kind"] == "yolo-checkpoint" and raw["epoch"] == 3
    assert load_checkpoint(path)["model"]["w"].tolist() == [1.0, 1.0]


def test_crash_while_saving_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1}, path)

    def crash(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]   # no temp file left


def test_foreign_files_are_refused(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match="not a checkpoint of this framework"):
        load_checkpoint(tmp_path / "t.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
