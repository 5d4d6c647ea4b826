"""utils/train/dist.py in one process: the torchrun environment read, init/cleanup of a 1-rank gloo group."""
import torch
import torch.distributed as tdist

from utils.train import dist


def test_world_without_torchrun(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert dist.world() == (-1, -1, 1)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert dist.world() == (3, 1, 4)


def test_init_then_cleanup_leaves_the_group(monkeypatch):
    """train.py calls cleanup() after every detection run: the group is gone afterwards, and a second
    cleanup (or one without a group) is a no-op."""
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29541")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    dist.init(torch.device("cpu"))
    try:
        assert tdist.is_initialized() and tdist.get_backend() == "gloo" and dist.is_main()
        assert dist.broadcast_object({"stop": True}) == {"stop": True}
    finally:
        dist.cleanup()
    assert not tdist.is_initialized()
    dist.cleanup()
    assert dist.is_main() and dist.broadcast_object(7) == 7
