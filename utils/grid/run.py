"""Run an experiment grid: one ``train.py`` subprocess per cell, ``test.py`` per evaluation.

A cell is an ordinary run directory ``<project>/<grid name>/<cell>/`` (``train.py --project --name
--exist-ok``) with three files of the grid's own: ``grid_hyp.yaml`` (the derived hyp passed as
``--hyp``), ``grid_cell.json`` (what the cell trains; a re-run whose grid asks for something else
stops before training) and ``grid_done.json`` (written when train.py exited 0). Finished is decided
here -- the marker, or a ``results.csv`` with every epoch beside ``weights/best.pt`` -- so a re-run
starts no training for it; a cell with ``weights/last.pt`` but not finished continues with
``train.py --resume <cell>/weights/last.pt``. Evaluations go to ``<cell>/eval/<variant>/``
(``metrics.json`` from test.py) and are redone only when their settings or best.pt changed.
"""
from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from utils.grid.config import Cell, EvalVariant, Grid, GridError, merged_hyp

LOGGER = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
DONE, SPEC, HYP_FILE = "grid_done.json", "grid_cell.json", "grid_hyp.yaml"
Runner = Callable[[list[str], Path], int]   # (command, log file) -> exit status


@dataclass
class GridRun:
    """What one pass over the grid did (cell names)."""
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    evaluated: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_logged(cmd: list[str], log: Path) -> int:
    """Run ``cmd`` in the working directory, its stdout and stderr appended to ``log``. No stdin: a
    prompt (train.py asking before a download) would wait unseen; it gets no answer and says so."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                              check=False).returncode


def results_rows(cell_dir: Path) -> int:
    path = cell_dir / "results.csv"
    if not path.is_file():
        return 0
    with path.open() as f:
        return len(list(csv.DictReader(f)))


def cell_state(cell: Cell, cell_dir: Path) -> str:
    """``done`` (marker, or every epoch in results.csv and a best.pt), ``partial`` (a last.pt) or ``new``."""
    if (cell_dir / DONE).is_file():
        return "done"
    if (cell_dir / "weights" / "best.pt").is_file() and results_rows(cell_dir) >= cell.settings["epochs"]:
        return "done"
    return "partial" if (cell_dir / "weights" / "last.pt").is_file() else "new"


def check_spec(cell: Cell, cell_dir: Path) -> None:
    """A cell folder trained for other settings than the grid now asks: GridError naming both."""
    path = cell_dir / SPEC
    if not path.is_file():
        return
    saved = json.loads(path.read_text())
    if saved != json.loads(json.dumps(cell.spec())):
        diff = sorted(k for part in ("settings", "hyp") for k in {**saved.get(part, {}), **cell.spec()[part]}
                      if saved.get(part, {}).get(k) != cell.spec()[part].get(k))
        raise GridError(f"{cell_dir}: trained with other settings than the grid now gives ({', '.join(diff)}); "
                        f"remove that folder to retrain it, or give the grid another name")


def train_command(cell: Cell, cell_dir: Path, state: str) -> list[str]:
    """train.py arguments: ``--resume <cell>/weights/last.pt`` for a partial cell, else a fresh run."""
    s = cell.settings
    cmd = [sys.executable, str(ROOT / "train.py")]
    if state == "partial":
        cmd += ["--resume", str(cell_dir / "weights" / "last.pt")]
    else:
        cmd += ["--cfg", s["cfg"], "--data", s["data"], "--hyp", str(cell_dir / HYP_FILE),
                "--epochs", str(s["epochs"]), "--batch-size", str(s["batch"]), "--img-size", str(s["img_size"]),
                "--seed", str(s["seed"]), "--project", str(cell_dir.parent), "--name", cell_dir.name, "--exist-ok",
                *map(str, s["train_args"])]
    for key in ("device", "workers"):
        if s[key] is not None:
            cmd += [f"--{key}", str(s[key])]
    return cmd + ["--quiet"]


def eval_command(cell: Cell, variant: EvalVariant, cell_dir: Path) -> list[str]:
    """test.py on the cell's best.pt at its image size, with the variant's NMS / TTA / thresholds."""
    f, s = variant.flags, cell.settings
    cmd = [sys.executable, str(ROOT / "test.py"), "--weights", str(cell_dir / "weights" / "best.pt"),
           "--data", s["data"], "--img-size", str(s["img_size"]), "--batch-size", str(f["batch"]),
           "--conf-thres", str(f["conf_thres"]), "--iou-thres", str(f["iou_thres"]), "--nms", f["nms"],
           "--project", str(cell_dir / "eval"), "--name", variant.name, "--exist-ok", "--no-plots"]
    cmd += ["--augment"] if f["augment"] else []
    for key in ("device", "workers"):
        if s[key] is not None:
            cmd += [f"--{key}", str(s[key])]
    return cmd


def eval_is_current(cmd: list[str], cell_dir: Path, variant: EvalVariant) -> bool:
    """metrics.json exists, was made by this command, and is newer than best.pt."""
    out = cell_dir / "eval" / variant.name
    marker, metrics = out / "grid_eval.json", out / "metrics.json"
    if not (marker.is_file() and metrics.is_file()):
        return False
    same = json.loads(marker.read_text()).get("args") == cmd[2:]
    return same and metrics.stat().st_mtime >= (cell_dir / "weights" / "best.pt").stat().st_mtime


def prepare_cell(cell: Cell, cell_dir: Path) -> None:
    """Write the derived hyp YAML and the cell's spec before its first training."""
    cell_dir.mkdir(parents=True, exist_ok=True)
    hyp = merged_hyp(cell_dir, "hyp", cell.settings["hyp"], cell.hyp)
    header = f"# derived by utils/grid/run.py: {cell.settings['hyp']} with {json.dumps(cell.hyp)}\n"
    (cell_dir / HYP_FILE).write_text(header + yaml.safe_dump(hyp, sort_keys=False))
    (cell_dir / SPEC).write_text(json.dumps(cell.spec(), indent=1))


def _last_line(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()] if log.is_file() else []
    return lines[-1].strip() if lines else "(no output)"


def _clock(start: float) -> str:
    s = int(time.monotonic() - start)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _train_cell(cell: Cell, cell_dir: Path, runner: Runner, progress: str, run: GridRun) -> bool:
    """Train (or resume) one cell unless it is finished; False when train.py failed."""
    state = cell_state(cell, cell_dir)
    if state == "done":
        LOGGER.info("%s: finished, skipped", progress)
        run.skipped.append(cell.name)
        if not (cell_dir / DONE).is_file():
            (cell_dir / DONE).write_text(json.dumps({"seconds": None, "epochs": results_rows(cell_dir)}))
        return True
    if state == "new":
        prepare_cell(cell, cell_dir)
    LOGGER.info("%s: %s", progress, "resuming weights/last.pt" if state == "partial" else "training")
    t0 = time.monotonic()
    rc = runner(train_command(cell, cell_dir, state), cell_dir / "grid_train.log")
    if rc != 0:
        LOGGER.error("%s: train.py exited %d: %s (log: %s)", progress, rc, _last_line(cell_dir / "grid_train.log"),
                     cell_dir / "grid_train.log")
        run.failed.append(cell.name)
        return False
    (cell_dir / DONE).write_text(json.dumps({"seconds": round(time.monotonic() - t0, 1),
                                             "epochs": results_rows(cell_dir)}))
    run.trained.append(cell.name)
    return True


def _evaluate_cell(cell: Cell, cell_dir: Path, runner: Runner, progress: str, run: GridRun) -> None:
    for variant in cell.evals:
        cmd = eval_command(cell, variant, cell_dir)
        if eval_is_current(cmd, cell_dir, variant):
            continue
        LOGGER.info("%s: test.py %s", progress, variant.name)
        out = cell_dir / "eval" / variant.name
        if runner(cmd, cell_dir / "grid_eval.log") != 0:
            LOGGER.error("%s: test.py %s failed: %s (log: %s)", progress, variant.name,
                         _last_line(cell_dir / "grid_eval.log"), cell_dir / "grid_eval.log")
            run.failed.append(f"{cell.name}/{variant.name}")
            continue
        out.mkdir(parents=True, exist_ok=True)
        (out / "grid_eval.json").write_text(json.dumps({"args": cmd[2:]}))
        run.evaluated.append(f"{cell.name}/{variant.name}")


def run_grid(grid: Grid, cells: list[Cell], grid_dir: Path, runner: Runner = run_logged) -> GridRun:
    """Train every unfinished cell in order, then evaluate it; a failed cell is reported, the rest go on."""
    for cell in cells:                      # a changed grid stops here, before anything trains
        check_spec(cell, grid_dir / cell.name)
    run, start = GridRun(), time.monotonic()
    for i, cell in enumerate(cells, 1):
        cell_dir = grid_dir / cell.name
        progress = f"[{grid.name} {i}/{len(cells)} {_clock(start)}] {cell.name}"
        if _train_cell(cell, cell_dir, runner, progress, run):
            _evaluate_cell(cell, cell_dir, runner, progress, run)
    run.seconds = time.monotonic() - start
    return run


def describe_cells(grid: Grid, cells: list[Cell], grid_dir: Path) -> list[str]:
    """``--list``: one line per cell (state, what it overrides, its evaluations) and the totals."""
    lines = []
    for i, cell in enumerate(cells, 1):
        what = ", ".join(f"{k}={v}" for k, v in cell.labels.items())
        evals = " ".join(v.name for v in cell.evals)
        lines.append(f"{i:3d} {cell_state(cell, grid_dir / cell.name):7s} {cell.name}  [{what}]  eval: {evals}")
    n_eval = sum(len(c.evals) for c in cells)
    epochs = sum(c.settings["epochs"] for c in cells)
    lines.append(f"{len(cells)} training cells ({epochs} epochs in all), {n_eval} evaluations; in {grid_dir}")
    return lines
