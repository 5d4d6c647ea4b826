"""Split the identical-recipe learning gap into "data path" and "optimisation" by swapping the
training dataloaders of the two frameworks:

* ``ours``: THIS project's Trainer (model, loss, assignment, optimiser, schedule, EMA, validation and
  checkpoints: train.py's, unchanged) on the batches of yolov5's own training dataloader (its mosaic,
  affine, HSV, flips, label filtering and sample order);
* ``peer``: yolov5's train.py (unchanged, via benchmarks/peer_yolov5.py's offline setup) on the
  batches of OUR training dataloader (utils/data/loader.py with the hyp's augmentation).

If our Trainer on yolov5's batches learns what yolov5 learns, the gap is in our data path; if it
learns what our own run learns, it is in the optimisation (and ``peer`` says the same from the other
side). A diagnostic, run by bench_learning.py (who ``ours-<model>@yolov5-data`` and
``yolov5-yolov5n@ours-data``) with the PEER venv's python and this project on PYTHONPATH -- yolov5
stays out of this project's dependencies:

    PYTHONPATH=. $HOME/.cache/peer-venv/bin/python benchmarks/cross_data.py ours --data D.yaml \
        --cfg configs/yolov5n_layout.yaml --hyp configs/hyp.scratch.yaml --peer-hyp hyp.scratch-low.yaml \
        --epochs 30 --img-size 160 --batch-size 16 --seed 0 --project CELL --name train
    PYTHONPATH=. $HOME/.cache/peer-venv/bin/python benchmarks/cross_data.py peer --data D.yaml \
        --cfg yolov5n.yaml --hyp configs/hyp.scratch.yaml --peer-hyp hyp.scratch-low.yaml ... (same flags)

Both loaders give ``(uint8 images [B, 3, H, W], targets [M, 6] = image, class, normalised xywh, paths,
shapes)``; ours adds the sample indices, which the training loop does not use.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


class PeerBatches:
    """yolov5's training loader in the shape the Trainer's loop reads (its own sampler is a seeded
    generator that continues from epoch to epoch, so ``set_epoch`` has nothing to do)."""

    def __init__(self, loader):
        self.loader, self.sampler = loader, self
        self._dataset = getattr(loader, "dataset", None)   # yolov5's dataset, not ours: kept private
        self._mosaic = bool(getattr(self._dataset, "mosaic", False))   # yolov5's own choice (off for rect / no augment)

    def set_epoch(self, epoch: int) -> None:
        pass

    def set_mosaic(self, on: bool) -> None:
        """The Trainer's close_mosaic switch, passed to yolov5's dataset (its ``mosaic`` flag, read per sample
        in this process: the cross runs use no loader workers); off stays off where yolov5 had it off."""
        if hasattr(self._dataset, "mosaic"):
            self._dataset.mosaic = self._mosaic and bool(on)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for imgs, targets, paths, shapes in self.loader:
            yield imgs, targets, list(paths), list(shapes), None


class OurBatches:
    """Our training loader in the shape yolov5's train loop reads (4-tuples); it calls our sampler's
    ``set_epoch`` itself, as our Trainer does (yolov5 calls it only under DDP)."""

    def __init__(self, loader):
        self.loader, self.epoch = loader, 0
        self.num_workers = loader.num_workers   # train.py logs it

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        self.loader.sampler.set_epoch(self.epoch)
        self.epoch += 1
        for imgs, targets, paths, shapes, _ in self.loader:
            yield imgs, targets, paths, shapes


def train_peer_on_ours(a) -> None:
    """yolov5's train.run with its training loader (the first create_dataloader call, augment=True)
    replaced by ours; its dataset object stays for what train.py reads from it (labels, shapes)."""
    from peer_yolov5 import _offline_setup
    _offline_setup()
    from yolov5 import train
    from utils.config import load_hyp
    from utils.data.config import load_data_config
    from utils.data.datasets import load_split
    from utils.data.loader import LoaderSettings, build_dataloader

    original = train.create_dataloader

    def swapped(path, imgsz, batch_size, stride, *args, augment=False, **kw):
        loader, dataset = original(path, imgsz, batch_size, stride, *args, augment=augment, **kw)
        if not augment:
            return loader, dataset
        info = load_split(load_data_config(a.data), "train")
        ours = build_dataloader(info, LoaderSettings(imgsz, batch_size, augment=True, shuffle=True, stride=stride,
                                                     workers=0, seed=a.seed), load_hyp(a.hyp))
        return OurBatches(ours), dataset

    train.create_dataloader = swapped
    out = Path(a.project) / a.name
    train.run(data=a.data, cfg=a.cfg, weights="", hyp=a.peer_hyp, epochs=a.epochs, batch_size=a.batch_size,
              imgsz=a.img_size, seed=a.seed, workers=0, device="cpu", project=str(out.parent), name=out.name,
              exist_ok=True, noplots=True)


def use_our_mosaic(peer_dataset, our_dataset) -> None:
    """Make yolov5's dataset build each mosaic (4 images + the random affine) with OUR code, from the
    same file; the rest of its pipeline (sample order, HSV, flips, labels, collate) stays its own.
    Our mosaic draws from a generator seeded by yolov5's global ``random`` (which train.py seeds)."""
    import random
    import numpy as np
    by_file = {str(Path(r.path).resolve()): i for i, r in enumerate(our_dataset.records)}

    def load_mosaic(index):
        ours = by_file[str(Path(peer_dataset.im_files[index]).resolve())]
        img, boxes, cls = our_dataset._mosaic(ours, np.random.default_rng(random.getrandbits(63)))
        labels = np.concatenate([np.asarray(cls, np.float32)[:, None], boxes.astype(np.float32)], 1)
        return np.ascontiguousarray(img[:, :, ::-1]), labels.reshape(-1, 5)   # yolov5 works in BGR

    peer_dataset.load_mosaic = load_mosaic


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("ours", "peer"), help="whose training on whose batches (see above)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--cfg", required=True)
    ap.add_argument("--hyp", required=True, help="this project's hyp YAML (ours: the whole recipe; peer: our "
                                                 "loader's augmentation)")
    ap.add_argument("--peer-hyp", required=True, help="yolov5's hyp YAML (ours: its loader's augmentation; peer: "
                                                      "its whole recipe)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--img-size", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--project", required=True)
    ap.add_argument("--name", default="train")
    ap.add_argument("--loader", choices=("yolov5", "ours", "yolov5+our-mosaic"), default="yolov5",
                    help="ours mode: whose training loader (ours = the control: train.py's own run, inside the "
                         "peer venv with yolov5's seeding, to see that the venv itself changes nothing; "
                         "yolov5+our-mosaic: yolov5's loader with our mosaic + affine in place of its own)")
    a = ap.parse_args(argv)
    if a.mode == "peer":
        train_peer_on_ours(a)
        return 0
    import yaml
    from yolov5.utils.dataloaders import create_dataloader
    from yolov5.utils.general import init_seeds

    from utils.data.config import load_data_config
    from utils.train.options import TrainOptions
    from utils.train.trainer import Trainer

    opt = TrainOptions(cfg=a.cfg, data=a.data, hyp=a.hyp, epochs=a.epochs, batch_size=a.batch_size,
                       img_size=a.img_size, seed=a.seed, device="cpu", workers=0, project=a.project, name=a.name,
                       exist_ok=True, quiet=True, val_interval=1)  # every epoch, as yolov5
    trainer = Trainer(opt)
    train_dirs = load_data_config(a.data).splits["train"]   # the image folder(s) our loader reads
    train_dir = [str(d) for d in train_dirs] if len(train_dirs) > 1 else str(train_dirs[0])
    peer_hyp = yaml.safe_load(Path(a.peer_hyp).read_text())
    init_seeds(a.seed + 1, deterministic=True)   # as yolov5's train.py seeds before building its loader
    if a.loader == "ours":
        print(f"done: {trainer.fit()}")
        return 0
    loader, dataset = create_dataloader(train_dir, a.img_size, a.batch_size, int(trainer.model.stride.max()),
                                        hyp=peer_hyp, augment=True, workers=0, shuffle=True, seed=a.seed,
                                        prefix="yolov5 train: ")
    if a.loader == "yolov5+our-mosaic":
        use_our_mosaic(dataset, trainer.train_loader.dataset)
    if len(loader) != len(trainer.train_loader):
        print(f"error: yolov5's loader has {len(loader)} batches, ours {len(trainer.train_loader)}", file=sys.stderr)
        return 2
    trainer.train_loader = PeerBatches(loader)
    summary = trainer.fit()
    print(f"done: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
