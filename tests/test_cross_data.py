"""benchmarks/cross_data.py's loader adapters (the parts that run without the yolov5 package): our
loader in the 4-tuple shape yolov5's train loop reads, with a new sample order every pass (yolov5
calls ``set_epoch`` only under DDP), and a yolov5-shaped loader in the 5-tuple shape our loop reads."""
import cv2
import numpy as np
import pytest
import torch
import yaml

import bench_learning
import cross_data
from utils.config import Hyp
from utils.data.config import load_data_config
from utils.data.datasets import load_split
from utils.data.loader import LoaderSettings, build_dataloader


def _loader(tmp_path):
    root = tmp_path / "ds"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for k in range(8):
            cv2.imwrite(str(root / "images" / split / f"{k:05d}.jpg"), np.full((64, 64, 3), 20 * k, np.uint8))
            (root / "labels" / split / f"{k:05d}.txt").write_text(f"{k % 2} 0.5 0.5 0.25 0.25\n")
    data = root / "d.yaml"
    data.write_text(yaml.safe_dump({"path": str(root), "format": "yolo", "train": "images/train",
                                    "val": "images/val", "names": ["a", "b"]}))
    info = load_split(load_data_config(data), "train")
    return build_dataloader(info, LoaderSettings(64, 4, augment=False, shuffle=True, stride=32, workers=0, seed=0),
                            Hyp())


def test_our_batches_give_yolov5_tuples_and_a_new_order_each_pass(tmp_path):
    ours = cross_data.OurBatches(_loader(tmp_path))
    assert len(ours) == 2
    passes = []
    for _ in range(3):
        batches = list(ours)
        assert all(len(b) == 4 for b in batches)
        imgs, targets, paths, shapes = batches[0]
        assert imgs.shape == (4, 3, 64, 64) and imgs.dtype == torch.uint8 and targets.shape == (4, 6)
        passes.append([p for b in batches for p in b[2]])
    assert ours.epoch == 3
    assert all(sorted(p) == sorted(passes[0]) for p in passes)      # every image once per pass
    assert len({tuple(p) for p in passes}) == 3                      # in a new order each pass


def test_peer_batches_give_our_tuples():
    imgs, targets = torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.tensor([[0, 1, 0.5, 0.5, 0.2, 0.2]])
    peer = cross_data.PeerBatches([(imgs, targets, ("a.jpg", "b.jpg"), (None, None))] * 3)
    assert len(peer) == 3 and peer.sampler is peer
    peer.set_epoch(5)   # yolov5's generator carries its own order on; nothing to do
    out = list(peer)
    assert len(out) == 3 and all(len(b) == 5 for b in out)
    assert out[0][2] == ["a.jpg", "b.jpg"] and out[0][1] is targets


def test_peer_batches_take_the_trainers_close_mosaic_switch():
    """Trainer.fit calls ``set_mosaic`` on the training sampler every epoch; on yolov5's loader it sets the
    dataset's own flag, and never turns on a mosaic yolov5 had off (rect or no augmentation)."""
    class Loader(list):
        pass

    for initially in (True, False):
        loader = Loader()
        loader.dataset = type("D", (), {"mosaic": initially})()
        peer = cross_data.PeerBatches(loader)
        seen = []
        for on in (True, False, True):
            peer.sampler.set_mosaic(on)
            seen.append(loader.dataset.mosaic)
        assert seen == ([True, False, True] if initially else [False, False, False])


@pytest.mark.parametrize("who", ["ours-yolov5n_layout@nowhere", "yolov5-yolov5n@nowhere"])
def test_an_unknown_data_path_in_who_is_refused(tmp_path, who):
    a = type("A", (), {"work": tmp_path, "epochs": 1, "size": 64, "batch": 4})()
    with pytest.raises(ValueError, match="unknown data path 'nowhere'"):
        if who.startswith("ours"):
            bench_learning.run_ours(tmp_path, tmp_path / "d.yaml", who.split("-", 1)[1], tmp_path / "h.yaml", a, 0,
                                    tmp_path / "log.txt")
        else:
            bench_learning.run_peer(tmp_path, tmp_path / "d.yaml", "same", a, 0, tmp_path / "log.txt", "nowhere")


def test_prepared_draws_and_loader_stats_of_a_known_batch():
    import cross_augment
    d = cross_augment.Draws([0.0, 0.5, 1.0, 0.25], picks=[3, 1, 2])
    assert d.uniform(0.5, 1.5) == 0.5 and d.uniform(-2, 2) == 0.0
    assert d.uniform(-1, 1, 2).tolist() == [1.0, -0.5]
    assert d.choices(range(9), k=3) == [3, 1, 2]
    x = [1, 2]
    d.shuffle(x)
    assert x == [1, 2]
    imgs = torch.zeros(2, 3, 160, 160, dtype=torch.uint8)
    imgs[:, :, 80:, :] = 100          # one horizontal edge: mean |dy| over the 159 row pairs = 100 / 159
    targets = torch.tensor([[0, 0, 0.5, 0.5, 0.2, 0.4],      # inside
                            [0, 1, 0.05, 0.5, 0.1, 0.1],     # touches the left border
                            [1, 2, 0.5, 0.5, 0.04, 0.5]])    # 6.4 px wide: under 8 px
    s = cross_augment.loader_stats("x", [(imgs, targets)])
    assert s["images"] == 2 and s["boxes_per_image"] == 1.5
    assert s["w_mean"] == pytest.approx((0.2 + 0.1 + 0.04) / 3) and s["h_mean"] == pytest.approx(1.0 / 3)
    assert s["under_8px"] == pytest.approx(1 / 3) and s["touching_border"] == pytest.approx(1 / 3)
    assert s["mean_gradient"] == pytest.approx(100 / 159, rel=1e-4)
