"""Our training augmentation against yolov5's, sample by sample and in distribution (the figures of
RESULTS.md, "the two dataloaders swapped"). Run with the PEER venv's python and this project on
PYTHONPATH (yolov5 stays out of this project's dependencies):

    PYTHONPATH=. $HOME/.cache/peer-venv/bin/python benchmarks/cross_augment.py mosaic --data D.yaml --trials 400
    PYTHONPATH=. $HOME/.cache/peer-venv/bin/python benchmarks/cross_augment.py hsv --data D.yaml
    PYTHONPATH=. $HOME/.cache/peer-venv/bin/python benchmarks/cross_augment.py stats --data D.yaml --epochs 30

* ``mosaic``: the same four files and the same random draws (mosaic centre, scale, translation; the
  rotation, shear and perspective draws at their mid-point, i.e. 0) through yolov5's ``load_mosaic`` +
  ``random_perspective`` and through our ``mosaic_plan`` + ``mosaic_compose``: box counts, the largest
  box difference where the counts agree, the mean pixel difference.
* ``hsv``: yolov5's ``augment_hsv`` and ours on the same images with the same gains.
* ``stats``: label and image statistics of ``--epochs`` passes of each training loader (hyp: ours
  ``configs/hyp.scratch.yaml``, yolov5's ``hyp.scratch-low.yaml``, equal values).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZE = 160


class Draws:
    """A stand-in for ``random`` / a numpy Generator that hands out prepared uniform draws (as
    fractions of each range), fixed extra mosaic picks, no shuffle."""

    def __init__(self, fractions: list[float], picks: list[int] | None = None):
        self.fractions, self.picks = list(fractions), picks

    def uniform(self, low=0.0, high=1.0, size=None):
        if size is not None:
            return np.array([self.uniform(low, high) for _ in range(int(np.prod(size)))])
        return low + (high - low) * self.fractions.pop(0)

    def choices(self, population, k):
        return self.picks

    def shuffle(self, x):
        pass


def _ours(data: str):
    from utils.config import load_hyp
    from utils.data.config import load_data_config
    from utils.data.datasets import load_split
    from utils.data.loader import DetectionDataset
    info = load_split(load_data_config(data), "train")
    return DetectionDataset(info, SIZE, load_hyp(ROOT / "configs" / "hyp.scratch.yaml"), augment=True)


def _peer_hyp() -> dict:
    import yaml
    import yolov5
    return yaml.safe_load((Path(yolov5.__file__).parent / "data" / "hyps" / "hyp.scratch-low.yaml").read_text())


def _train_dir(data: str) -> str:
    from utils.data.config import load_data_config
    return str(load_data_config(data).splits["train"][0])


def compare_mosaics(data: str, trials: int, seed: int = 1) -> dict:
    import yolov5.utils.augmentations as peer_aug
    import yolov5.utils.dataloaders as peer_dl
    from utils.data.augment import mosaic_compose, mosaic_plan
    from utils.data.loader import resized_shape
    peer = peer_dl.LoadImagesAndLabels(_train_dir(data), SIZE, 16, augment=True, hyp=_peer_hyp())
    ours = _ours(data)
    by_file = {str(Path(r.path).resolve()): i for i, r in enumerate(ours.records)}
    rng = np.random.default_rng(seed)
    counts, box_diffs, pixel_diffs = [], [], []
    for _ in range(trials):
        cy, cx, scale, tx, ty = rng.random(5).tolist()
        picks = rng.integers(0, len(peer.im_files), 4).tolist()
        # yolov5 draws: yc, xc, then perspective x2, angle, scale, shear x2, translation x2
        draws = Draws([cy, cx, 0.5, 0.5, 0.5, scale, 0.5, 0.5, tx, ty], picks[1:])
        peer_dl.random = peer_aug.random = draws
        img5, lab5 = peer.load_mosaic(picks[0])
        mine = [by_file[str(Path(peer.im_files[i]).resolve())] for i in picks]
        shapes = [resized_shape(ours.records[i].width, ours.records[i].height, SIZE) for i in mine]
        # our draws: centre x, centre y, then the same affine order
        plan = mosaic_plan(shapes, SIZE, ours.hyp, Draws([cx, cy, 0.5, 0.5, 0.5, scale, 0.5, 0.5, tx, ty]))
        loaded = [ours.load(i) for i in mine]
        img, boxes, _ = mosaic_compose(plan, [x[0] for x in loaded], [x[1] for x in loaded],
                                       [np.asarray(x[2], np.int64) for x in loaded])
        counts.append((len(boxes), len(lab5)))
        pixel_diffs.append(float(np.abs(img.astype(int) - img5[:, :, ::-1].astype(int)).mean()))
        if len(boxes) == len(lab5) and len(boxes):
            a, b = boxes[np.lexsort(boxes.T[::-1])], lab5[:, 1:5][np.lexsort(lab5[:, 1:5].T[::-1])]
            box_diffs.append(float(np.abs(a - b).max()))
    c = np.array(counts)
    diffs = np.array(box_diffs)
    return {"trials": trials, "boxes_ours": int(c[:, 0].sum()), "boxes_yolov5": int(c[:, 1].sum()),
            "count_mismatches": int((c[:, 0] != c[:, 1]).sum()),
            "box_diff_px_median": float(np.median(diffs)), "box_diff_px_p95": float(np.percentile(diffs, 95)),
            "pixel_diff_mean": float(np.mean(pixel_diffs))}


def compare_hsv(data: str, n: int = 40, seed: int = 0) -> dict:
    import cv2
    import yolov5.utils.augmentations as peer_aug
    from utils.data.augment import augment_hsv
    files = sorted(Path(_train_dir(data)).glob("*"))[:n]
    rng, worst = np.random.default_rng(seed), 0
    saved = np.random.uniform
    try:
        for f in files:
            bgr = cv2.imread(str(f))
            gains = rng.uniform(-1, 1, 3)
            ours = augment_hsv(np.ascontiguousarray(bgr[:, :, ::-1]), Draws(((gains + 1) / 2).tolist()), 0.015, 0.7, 0.4)
            np.random.uniform = lambda low, high, size, g=gains: g
            peer = bgr.copy()
            peer_aug.augment_hsv(peer, 0.015, 0.7, 0.4)
            worst = max(worst, int(np.abs(ours.astype(int) - peer[:, :, ::-1].astype(int)).max()))
    finally:
        np.random.uniform = saved
    return {"images": len(files), "max_abs_diff": worst}


def loader_stats(name: str, batches) -> dict:
    per_image, wh, edge, grad = [], [], [], []
    for imgs, targets, *_ in batches:
        per_image += [int((targets[:, 0] == k).sum()) for k in range(imgs.shape[0])]
        t = targets[:, 2:6].numpy()
        wh.append(t[:, 2:])
        edge.append((t[:, 0] - t[:, 2] / 2 < 0.01) | (t[:, 0] + t[:, 2] / 2 > 0.99)
                    | (t[:, 1] - t[:, 3] / 2 < 0.01) | (t[:, 1] + t[:, 3] / 2 > 0.99))
        grey = imgs.float().mean(1)
        grad.append(float((grey[:, 1:] - grey[:, :-1]).abs().mean()))   # mean |dy| of the grey image: sharpness
    wh = np.concatenate(wh)
    return {"loader": name, "images": len(per_image), "boxes_per_image": float(np.mean(per_image)),
            "w_mean": float(wh[:, 0].mean()), "h_mean": float(wh[:, 1].mean()),
            "under_8px": float(np.mean((wh * SIZE).min(1) < 8)), "touching_border": float(np.concatenate(edge).mean()),
            "mean_gradient": float(np.mean(grad))}


def compare_stats(data: str, epochs: int, seed: int = 0) -> list[dict]:
    from yolov5.utils.dataloaders import create_dataloader
    from utils.config import load_hyp
    from utils.data.config import load_data_config
    from utils.data.datasets import load_split
    from utils.data.loader import LoaderSettings, build_dataloader
    info = load_split(load_data_config(data), "train")
    ours = build_dataloader(info, LoaderSettings(SIZE, 16, augment=True, shuffle=True, stride=32, workers=0, seed=seed),
                            load_hyp(ROOT / "configs" / "hyp.scratch.yaml"))

    def our_batches():
        for e in range(epochs):
            ours.sampler.set_epoch(e)
            yield from ours

    peer, _ = create_dataloader(_train_dir(data), SIZE, 16, 32, hyp=_peer_hyp(), augment=True, workers=0,
                                shuffle=True, seed=seed)
    return [loader_stats("ours", our_batches()),
            loader_stats("yolov5", (b for _ in range(epochs) for b in peer))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("mosaic", "hsv", "stats"))
    ap.add_argument("--data", required=True, help="dataset YAML (YOLO txt), e.g. bench_learning's shapes.yaml")
    ap.add_argument("--trials", type=int, default=400)
    ap.add_argument("--epochs", type=int, default=30)
    a = ap.parse_args(argv)
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    import json
    if a.what == "mosaic":
        out = compare_mosaics(a.data, a.trials)
    elif a.what == "hsv":
        out = compare_hsv(a.data)
    else:
        out = compare_stats(a.data, a.epochs)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
