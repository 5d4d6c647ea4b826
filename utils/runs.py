"""Run directories (``runs/train/exp``, ``exp2`` ...) and the ``results.csv`` log."""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import yaml


def increment_path(path: str | Path, exist_ok: bool = False) -> Path:
    """``runs/train/exp`` if free (or ``exist_ok``), else the first free ``exp2``, ``exp3`` ..."""
    path = Path(path)
    if exist_ok or not path.exists():
        return path
    pattern = re.compile(rf"^{re.escape(path.name)}(\d+)$")
    taken = [int(m.group(1)) for p in path.parent.glob(f"{path.name}*") if (m := pattern.match(p.name))]
    return path.with_name(f"{path.name}{max(taken + [1]) + 1}")


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
