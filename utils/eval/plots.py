"""Training plots: results.png from results.csv, label statistics, and a batch mosaic with boxes;
``python -m utils.eval.plots compare RUN ...`` draws several runs' curves together (utils/eval/plots_compare.py).

The plotting modules share this module's matplotlib loader :func:`_plt` (Agg, imported on the first
plot: no import-time side effects), its results.csv reader :func:`read_results`, and detect.py's
class colours (:func:`utils.infer.annotate.class_color`)."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import torch

from utils.config import ConfigError
from utils.infer.annotate import class_color


def _plt():
    """matplotlib.pyplot with the non-interactive Agg backend (works without a display)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def read_results(csv_path: Path) -> dict[str, list[float]]:
    """A ``results.csv`` (utils/train/runs.py ``results_row``) as columns of floats; ``{}`` when empty. An
    empty cell (an epoch ``--noval`` did not validate) reads as NaN, a gap in the plot."""
    with Path(csv_path).open() as f:
        rows = list(csv.DictReader(f))
    try:
        return {k: [float(r[k]) if r[k] != "" else math.nan for r in rows] for k in (rows[0] if rows else {})}
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{csv_path}: not a results.csv of numbers ({e})") from None


def plot_results(csv_path: Path, out: Path) -> None:
    """One panel per results.csv column (losses, metrics, learning rates) against epoch."""
    curves = read_results(csv_path)
    if not curves:
        return
    plt = _plt()
    cols = [c for c in curves if c != "epoch"]
    fig, axes = plt.subplots(2, (len(cols) + 1) // 2, figsize=(3 * ((len(cols) + 1) // 2), 6), tight_layout=True)
    for ax, c in zip(axes.ravel(), cols):
        ax.plot(curves["epoch"], curves[c], marker=".")
        ax.set_title(c, fontsize=9)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_labels(records, names: list[str], out: Path) -> None:
    """Instances per class and normalised box width/height scatter of a split."""
    plt = _plt()
    cls = np.concatenate([r.classes[r.train_mask] for r in records] or [np.zeros(0, int)])
    wh = np.concatenate([(r.boxes_xyxy[r.train_mask, 2:] - r.boxes_xyxy[r.train_mask, :2])
                         / np.array([r.width, r.height]) for r in records] or [np.zeros((0, 2))])
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4), tight_layout=True)
    a.bar(range(len(names)), np.bincount(cls, minlength=len(names)))
    a.set_xticks(range(len(names)), names, rotation=90 if len(names) > 10 else 0, fontsize=8)
    a.set_ylabel("instances")
    b.scatter(wh[:, 0], wh[:, 1], s=2, alpha=0.4)
    b.set_xlabel("width")
    b.set_ylabel("height")
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_batch(imgs: torch.Tensor, targets: torch.Tensor, names: list[str], out: Path, max_images: int = 16) -> None:
    """A grid of training images (uint8 [B,3,H,W]) with their normalised cxcywh targets drawn."""
    imgs = imgs[:max_images].cpu().numpy()
    b, _, h, w = imgs.shape
    cols = int(np.ceil(np.sqrt(b)))
    rows = int(np.ceil(b / cols))
    canvas = np.full((rows * h, cols * w, 3), 255, np.uint8)
    t = targets.cpu().numpy()
    for k in range(b):
        y0, x0 = (k // cols) * h, (k % cols) * w
        tile = np.ascontiguousarray(imgs[k].transpose(1, 2, 0))
        for _, c, cx, cy, bw, bh in t[t[:, 0] == k]:
            p1 = (int((cx - bw / 2) * w), int((cy - bh / 2) * h))
            p2 = (int((cx + bw / 2) * w), int((cy + bh / 2) * h))
            color = class_color(int(c))[::-1]   # the tile is RGB, class_color BGR
            cv2.rectangle(tile, p1, p2, color, 1)
            cv2.putText(tile, names[int(c)] if int(c) < len(names) else str(int(c)), (p1[0], max(p1[1] - 2, 8)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.3, color, 1)
        canvas[y0:y0 + h, x0:x0 + w] = tile
    cv2.imwrite(str(out), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))


def main(argv: list[str] | None = None) -> int:
    """``python -m utils.eval.plots compare RUN [RUN ...]``: the comparison charts of utils/eval/plots_compare.py."""
    import sys
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "compare":
        print("error: usage: python -m utils.eval.plots compare RUN [RUN ...] [--out DIR] [--labels NAME ...]",
              file=sys.stderr)
        return 2
    from utils.eval.plots_compare import main as compare_main
    return compare_main(argv[1:])


if __name__ == "__main__":
    import sys
    sys.exit(main())
