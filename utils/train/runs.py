"""Run directories (``runs/train/exp``, ``exp2`` ...) and the ``results.csv`` log and its rows."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import yaml

from utils.eval.evaluate import LOSS_NAMES, EvalResult


def increment_path(path: str | Path, exist_ok: bool = False) -> Path:
    """``runs/train/exp`` if free (or ``exist_ok``), else the first free of ``exp2, exp3, ...`` (not created)."""
    path = Path(path)
    if exist_ok or not path.exists():
        return path
    n = 2
    while (path.parent / f"{path.name}{n}").exists():
        n += 1
    return path.parent / f"{path.name}{n}"


def save_yaml(path: Path, data: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def append_csv(path: Path, row: dict[str, Any]) -> None:
    """Append one row; the header is written with the first row."""
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(list(row))
        w.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row.values()])


def truncate_csv(path: Path, epochs_done: int) -> None:
    """Keep the header and the rows of the first ``epochs_done`` epochs (for --resume after a crash)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:1 + epochs_done]) + "\n")


def results_row(epoch: int, train_losses: dict, result: EvalResult | None, lrs: list[float]) -> dict[str, Any]:
    """One ``results.csv`` row with yolov5's column names; ``result`` None (an epoch ``--noval`` did not
    validate) leaves the metric and validation-loss columns empty."""
    m = result.metrics if result else None
    row: dict[str, Any] = {"epoch": epoch}
    row.update({f"train/{k}_loss": train_losses[k] for k in LOSS_NAMES})
    row.update({"metrics/precision": m.mp if m else "", "metrics/recall": m.mr if m else "",
                "metrics/mAP_0.5": m.map50 if m else "", "metrics/mAP_0.5:0.95": m.map if m else ""})
    row.update({f"val/{k}_loss": result.losses[k] if result else "" for k in LOSS_NAMES})
    row.update({f"x/lr{j}": lr for j, lr in enumerate(lrs)})
    return row
