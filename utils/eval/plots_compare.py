"""Training curves of several runs together (seeds 000/001's backbone comparisons): one PNG per
quantity -- mAP@0.5, mAP@0.5:0.95, precision, recall, train and val box/obj/cls losses, learning
rate -- with one line per run, from each run's ``results.csv`` (utils/train/runs.py ``results_row``).

    python -m utils.eval.plots compare runs/train/exp runs/train/exp2 ...   # or a folder of runs (a grid's)
    python -m utils.eval.plots compare runs/grid/backbones --out runs/compare/backbones --labels a b c

The legend names a run by its config (``opt.yaml``'s ``cfg`` stem), with the folder name added where
two runs share a config.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import yaml

from utils.cli.checks import OneLineParser
from utils.config import ConfigError
from utils.eval.plots import _plt, read_results

QUANTITIES = (  # (results.csv column, title, file stem)
    ("metrics/mAP_0.5", "mAP@0.5", "map50"), ("metrics/mAP_0.5:0.95", "mAP@0.5:0.95", "map"),
    ("metrics/precision", "precision", "precision"), ("metrics/recall", "recall", "recall"),
    ("train/box_loss", "train box loss", "train_box_loss"), ("train/obj_loss", "train obj loss", "train_obj_loss"),
    ("train/cls_loss", "train cls loss", "train_cls_loss"), ("val/box_loss", "val box loss", "val_box_loss"),
    ("val/obj_loss", "val obj loss", "val_obj_loss"), ("val/cls_loss", "val cls loss", "val_cls_loss"),
    ("x/lr0", "learning rate", "lr"))


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run folders: each path that holds a results.csv, else its sub-folders that do (sorted)."""
    runs: list[Path] = []
    for p in map(Path, paths):
        if (p / "results.csv").is_file():
            runs.append(p)
            continue
        found = sorted(d for d in p.glob("*") if (d / "results.csv").is_file()) if p.is_dir() else []
        if not found:
            raise ConfigError(f"{p}: no results.csv there or in its sub-folders (give train.py run folders)")
        runs += found
    return runs


def run_name(run: Path) -> str:
    """The config's name (``opt.yaml`` cfg stem), or the folder name without one."""
    opt = run / "opt.yaml"
    cfg = (yaml.safe_load(opt.read_text()) or {}).get("cfg") if opt.is_file() else None
    return Path(str(cfg)).stem if cfg else run.name


def legend_names(runs: list[Path]) -> list[str]:
    names = [run_name(r) for r in runs]
    return [f"{n} ({r.name})" if names.count(n) > 1 else n for n, r in zip(names, runs)]


def compare_figures(runs: list[Path], labels: Optional[list[str]] = None) -> dict[str, object]:
    """``{file stem: matplotlib Figure}``, one per quantity, one line per run (epoch on x)."""
    plt = _plt()
    labels = labels or legend_names(runs)
    curves = [read_results(r / "results.csv") for r in runs]
    figures = {}
    for column, title, stem in QUANTITIES:
        fig, ax = plt.subplots(figsize=(7, 4.5), tight_layout=True)
        for label, c in zip(labels, curves):
            if column in c:
                ax.plot(c["epoch"], c[column], label=label, linewidth=1.4, marker=".", markersize=4)
        ax.set(title=title, xlabel="epoch", ylabel=title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7 if len(runs) > 8 else 9)
        figures[stem] = fig
    return figures


def plot_compare(runs: list[Path], out_dir: Path, labels: Optional[list[str]] = None) -> list[Path]:
    """Write ``out_dir/<quantity>.png`` for every quantity; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, fig in compare_figures(runs, labels).items():
        paths.append(out_dir / f"{stem}.png")
        fig.savefig(paths[-1], dpi=110)
        _plt().close(fig)
    return paths


def main(argv: Optional[list[str]] = None) -> int:
    ap = OneLineParser(prog="python -m utils.eval.plots compare", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="train.py run folders, or folders of them (e.g. runs/grid/<name>)")
    ap.add_argument("--out", default="runs/compare", help="folder for the PNGs")
    ap.add_argument("--labels", nargs="+", default=None, help="legend names, one per run (default: config names)")
    opt = ap.parse_args(argv)
    try:
        runs = find_runs(opt.runs)
        if opt.labels is not None and len(opt.labels) != len(runs):
            raise ConfigError(f"--labels: {len(opt.labels)} names for {len(runs)} runs "
                              f"({', '.join(r.name for r in runs)})")
        paths = plot_compare(runs, Path(opt.out), opt.labels)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{len(paths)} figures of {len(runs)} runs in {opt.out}")
    return 0
