"""Loader batches: shapes, dtypes, target layout, shapes mapping, seeded determinism, multi-scale."""
import dataclasses

import numpy as np
import pytest
import torch

from data.scripts.make_shapes import make_shapes
from utils.config import Hyp
from utils.data.config import data_config_from_dict
from utils.data.datasets import load_split
from utils.data.loader import LoaderSettings, MultiScale, build_dataloader, collate, multi_scale_sizes, rect_batch_shapes, resize_batch


@pytest.fixture(scope="module")
def shapes_info(tmp_path_factory):
    root = make_shapes(tmp_path_factory.mktemp("shapes") / "shapes", n_train=12, n_val=5, seed=3)
    cfg = data_config_from_dict({"path": str(root), "train": "images/train", "val": "images/val",
                                 "names": ["circle", "square", "triangle", "star"]}, root / "shapes.yaml")
    return load_split(cfg, "train", cache=False), load_split(cfg, "val", cache=False)


def batches(loader, n=None):
    out = []
    for i, b in enumerate(loader):
        if n is not None and i >= n:
            break
        out.append(b)
    return out


def test_train_batch_layout(shapes_info):
    train, _ = shapes_info
    loader = build_dataloader(train, LoaderSettings(96, 4, augment=True, shuffle=True, workers=0, seed=0), Hyp())
    assert len(loader) == 3
    seen = []
    for imgs, targets, paths, shapes, indices in loader:
        assert imgs.dtype == torch.uint8 and imgs.shape == (4, 3, 96, 96)
        assert targets.dtype == torch.float32 and targets.shape[1] == 6
        assert set(targets[:, 0].long().tolist()) <= set(range(4))
        assert (targets[:, 2:] >= 0).all() and (targets[:, 2:] <= 1).all()
        assert (targets[:, 1] >= 0).all() and (targets[:, 1] < 4).all() and (targets[:, 4:] > 0).all()
        assert len(paths) == len(shapes) == len(indices) == 4
        assert all(train.records[i].path == p for i, p in zip(indices, paths))
        seen += indices
    assert sorted(seen) == list(range(12))  # one epoch = every record once


def test_val_batch_is_letterbox_only_and_shapes_map_back(shapes_info):
    _, val = shapes_info
    loader = build_dataloader(val, LoaderSettings(128, 5, augment=False, shuffle=False, workers=0))
    imgs, targets, paths, shapes, indices = next(iter(loader))
    assert imgs.shape == (5, 3, 128, 128) and indices == [0, 1, 2, 3, 4]
    for k, (rec, ((h0, w0), ((rh, rw), (pw, ph)))) in enumerate(zip(val.records, shapes)):
        assert (h0, w0) == (rec.height, rec.width)
        t = targets[targets[:, 0] == k]
        assert len(t) == len(rec)
        # original xyxy -> letterboxed pixels via the shapes entry == the targets (cxcywh * 128)
        b = rec.boxes_xyxy
        mapped = np.stack([b[:, 0] * rw + pw, b[:, 1] * rh + ph, b[:, 2] * rw + pw, b[:, 3] * rh + ph], 1)
        cx, cy, w, h = (t[:, 2:] * 128).numpy().T
        np.testing.assert_allclose(mapped, np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1), atol=1e-3)
        assert max(rh * rec.height, rw * rec.width) == pytest.approx(128, abs=0.5)


def test_same_seed_same_batches_any_worker_count(shapes_info):
    train, _ = shapes_info
    hyp = dataclasses.replace(Hyp(), mixup=0.5, degrees=5.0, flipud=0.5)
    runs = [batches(build_dataloader(train, LoaderSettings(64, 4, augment=True, shuffle=True, workers=w, seed=s), hyp))
            for w, s in [(0, 7), (0, 7), (2, 7), (0, 8)]]
    for other in runs[1:3]:
        for (i1, t1, *_, x1), (i2, t2, *_, x2) in zip(runs[0], other):
            assert x1 == x2 and torch.equal(i1, i2) and torch.equal(t1, t2)
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(runs[0], runs[3]))


def test_epochs_differ_and_set_epoch_repeats(shapes_info):
    train, _ = shapes_info
    loader = build_dataloader(train, LoaderSettings(64, 12, augment=True, shuffle=True, seed=1), Hyp())
    e0, e1 = next(iter(loader)), next(iter(loader))
    assert e0[4] != e1[4]  # a new order each pass without set_epoch
    loader.sampler.set_epoch(5)
    a = next(iter(loader))
    loader.sampler.set_epoch(5)
    b = next(iter(loader))
    assert a[4] == b[4] and torch.equal(a[0], b[0])


def test_distributed_shards_cover_the_split(shapes_info):
    train, _ = shapes_info
    parts = [build_dataloader(train, LoaderSettings(64, 2, augment=False, shuffle=True, seed=0, rank=r, world_size=3))
             for r in range(3)]
    indices = [i for p in parts for b in p for i in b[4]]
    assert len(indices) == 12 and sorted(indices) == list(range(12))


def test_rect_batches_and_collate_padding(shapes_info):
    _, val = shapes_info
    sizes = np.array([[r.height, r.width] for r in val.records], float)
    order = np.argsort(sizes[:, 0] / sizes[:, 1], kind="stable")
    expect = rect_batch_shapes(sizes[order], 128, 2, 32)
    loader = build_dataloader(val, LoaderSettings(128, 2, augment=False, rect=True, workers=0))
    got = [tuple(b[0].shape[2:]) for b in loader]
    assert got == [tuple(s) for s in expect]
    assert [i for b in loader for i in b[4]] == order.tolist()
    # hand case: aspect h/w 0.5 -> [0.5, 1] * 128 / 32 + 0.5 -> ceil(2.5, 4.5) * 32 = (96, 160)
    assert rect_batch_shapes(np.array([[50.0, 100.0]]), 128, 1, 32).tolist() == [[96, 160]]
    # collate pads a smaller image bottom/right and rescales its normalised targets
    small = (torch.zeros(3, 32, 64, dtype=torch.uint8), torch.tensor([[0, 1, 0.5, 0.5, 0.5, 0.5]]), "a", None, 0)
    big = (torch.zeros(3, 64, 64, dtype=torch.uint8), torch.tensor([[0, 2, 0.5, 0.5, 0.2, 0.2]]), "b", None, 1)
    imgs, targets, *_ = collate([small, big])
    assert imgs.shape == (2, 3, 64, 64) and (imgs[0, :, 32:] == 114).all()
    np.testing.assert_allclose(targets.numpy(), [[0, 1, 0.5, 0.25, 0.5, 0.25], [1, 2, 0.5, 0.5, 0.2, 0.2]])


def test_multi_scale_sizes_and_resize():
    assert multi_scale_sizes(416, (320 / 416, 608 / 416), 32) == list(range(320, 609, 32))  # seed 004
    assert multi_scale_sizes(640, (0.5, 1.5), 32) == list(range(320, 961, 32))
    ms = MultiScale(160, stride=32, bounds=(0.5, 1.5), every=10, seed=0)
    sizes = [ms.size_at(s) for s in range(200)]
    assert all(sizes[s] == sizes[s - s % 10] for s in range(200))  # constant within each 10 batches
    assert set(sizes) <= set(range(96, 241, 32)) and len(set(sizes)) > 2
    assert sizes == [MultiScale(160, 32, (0.5, 1.5), 10, 0).size_at(s) for s in range(200)]  # same on every rank
    imgs = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)
    imgs[:, :, 16:48, 8:24] = 255  # a block at normalised x 0.125..0.375, y 0.25..0.75
    out = resize_batch(imgs, 128)
    assert out.shape == (2, 3, 128, 128) and out.dtype == torch.uint8
    ys, xs = torch.nonzero(out[0, 0] > 127, as_tuple=True)
    assert (xs.min().item(), xs.max().item() + 1, ys.min().item(), ys.max().item() + 1) == (16, 48, 32, 96)
    assert resize_batch(torch.zeros(1, 3, 64, 96), 160).shape[2:] == (128, 160)  # ceil(106.7/32)*32


@pytest.mark.parametrize("workers", [0, 2])
def test_a_closed_mosaic_epoch_is_a_mosaic_free_epoch(shapes_info, workers):
    """hyp close_mosaic: the sampler's switch reaches every sample, also in persistent worker processes
    built while it was on, and a closed epoch is the very epoch a ``mosaic: 0`` hyp gives (same images,
    boxes and letterbox shapes); switched back on, the samples are mosaics again."""
    train, _ = shapes_info
    s = LoaderSettings(64, 4, augment=True, shuffle=True, workers=workers, seed=2)
    loader = build_dataloader(train, s, dataclasses.replace(Hyp(), mosaic=1.0))
    assert all(shape is None for b in batches(loader) for shape in b[3])   # a mosaic has no single shape
    loader.sampler.set_epoch(3)
    loader.sampler.set_mosaic(False)
    closed = batches(loader)
    plain = build_dataloader(train, dataclasses.replace(s, workers=0), dataclasses.replace(Hyp(), mosaic=0.0))
    plain.sampler.set_epoch(3)
    reference = batches(plain)
    assert len(closed) == len(reference) == 3
    for (i1, t1, _, s1, x1), (i2, t2, _, s2, x2) in zip(closed, reference):
        assert x1 == x2 and s1 == s2 and None not in s1
        assert torch.equal(i1, i2) and torch.equal(t1, t2)
    loader.sampler.set_mosaic(True)
    assert all(shape is None for b in batches(loader) for shape in b[3])
