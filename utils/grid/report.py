"""A grid's results: markdown tables in seed 003's layout, a CSV of every cell, a figure, and the
training curves of every cell together (utils/eval/plots_compare.py).

Values are test.py's ``metrics.json`` of each cell's ``best.pt`` in percent, one decimal (seed
003 writes 43.5); ``?`` marks a cell not run yet; several seeds of one cell show their mean and
range. Axes that are neither rows, columns nor seeds split the results into separate tables (an
evaluation axis ``nms: {NMS: nms, DIoU-NMS: diou}`` gives seed 003's two tables).
"""
from __future__ import annotations

import csv
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from utils.grid.run import DONE, cell_state
from utils.grid.config import Axis, AxisValue, Cell, EvalVariant, Grid, label_of

METRICS = (("map50", "mAP@0.5"), ("map", "mAP@0.5:0.95"))


@dataclass(frozen=True)
class Result:
    cell: Cell
    variant: EvalVariant
    metrics: Optional[dict[str, Any]]      # metrics.json (map50, map, precision, recall ...); None: not run
    train_seconds: Optional[float]

    @property
    def labels(self) -> dict[str, str]:
        return {**self.cell.labels, **self.variant.labels}


def collect(cells: list[Cell], grid_dir: Path) -> list[Result]:
    """One Result per (cell, evaluation), read from the cell folders."""
    out = []
    for cell in cells:
        cell_dir = grid_dir / cell.name
        done = cell_state(cell, cell_dir) == "done"
        marker = cell_dir / DONE
        seconds = json.loads(marker.read_text()).get("seconds") if marker.is_file() else None
        for variant in cell.evals:
            path = cell_dir / "eval" / variant.name / "metrics.json"
            metrics = json.loads(path.read_text()) if done and path.is_file() else None
            out.append(Result(cell, variant, metrics, seconds))
    return out


def value_text(axis: Axis, value: AxisValue) -> str:
    """A value as a title reads: a label as given (``DIoU-NMS``), a listed value with its key (``img_size 96``)."""
    if axis.key is not None and label_of(value.overrides[axis.key]) == value.label:
        return f"{axis.name} {value.label}"
    return value.label


def _present(axis: Axis, results: list[Result]) -> list[AxisValue]:
    seen = {r.labels.get(axis.name) for r in results}
    return [v for v in axis.values if v.label in seen]


def table_groups(grid: Grid, results: list[Result]) -> list[tuple[str, list[Result]]]:
    """``(title, results)`` per combination of the axes that are not rows, columns or seeds."""
    axes = [a for a in (*grid.axes, *grid.eval_axes) if a.name not in (grid.rows, grid.columns, "seed")]
    groups = []
    for combo in itertools.product(*(_present(a, results) for a in axes)):
        members = [r for r in results if all(r.labels[a.name] == v.label for a, v in zip(axes, combo))]
        if members:
            groups.append((", ".join(value_text(a, v) for a, v in zip(axes, combo)), members))
    return groups


def cell_text(values: list[float]) -> str:
    """Percent with one decimal; several seeds: ``mean (min-max, n seeds)``; none: ``?``."""
    if not values:
        return "?"
    pct = [100 * v for v in values]
    mean = sum(pct) / len(pct)
    return f"{mean:.1f}" if len(pct) == 1 else f"{mean:.1f} ({min(pct):.1f}-{max(pct):.1f}, {len(pct)} seeds)"


def _column_header(grid: Grid, value: AxisValue) -> str:
    if grid.columns == "img_size":
        return f"{value.label} x {value.label}"
    return value_text(grid.axis(grid.columns), value)


def _pick(results: list[Result], axis: Optional[str], value: Optional[AxisValue]) -> list[Result]:
    return results if axis is None else [r for r in results if r.labels[axis] == value.label]


def table_lines(grid: Grid, results: list[Result], metric: str, metric_name: str) -> list[str]:
    """One markdown table: rows x columns of ``metric`` (``?`` where a cell has no result yet)."""
    rows = _present(grid.axis(grid.rows), results) if grid.rows else [None]
    cols = _present(grid.axis(grid.columns), results) if grid.columns else [None]
    head = [_column_header(grid, c) if c else metric_name for c in cols]
    lines = [f"|{grid.corner}|{'|'.join(head)}|", "|--|" + "--|" * len(cols)]
    for row in rows:
        texts = []
        for col in cols:
            found = _pick(_pick(results, grid.rows, row), grid.columns, col)
            texts.append(cell_text([r.metrics[metric] for r in found if r.metrics is not None]))
        lines.append(f"|{row.label if row else grid.name}|{'|'.join(texts)}|")
    return lines


def spread_lines(results: list[Result]) -> list[str]:
    """Seed-to-seed spread of every cell trained with several seeds."""
    groups: dict[tuple, list[Result]] = {}
    for r in results:
        if "seed" in r.labels and r.metrics is not None:
            groups.setdefault(tuple((k, v) for k, v in r.labels.items() if k != "seed"), []).append(r)
    lines = []
    for key, members in groups.items():
        if len(members) > 1:
            vals = [100 * r.metrics["map50"] for r in members]
            seeds = "/".join(r.labels["seed"] for r in members)
            lines.append(f"- {', '.join(v for _, v in key)}: mAP@0.5 {' / '.join(f'{v:.1f}' for v in vals)} "
                         f"(seeds {seeds}; max - min {max(vals) - min(vals):.1f})")
    return lines


def markdown(grid: Grid, results: list[Result]) -> str:
    done = sum(r.metrics is not None for r in results)
    t = grid.test
    out = [f"# Grid {grid.name}", "",
           f"From `{grid.path}`: {len({r.cell.name for r in results})} training cells, {len(results)} evaluations "
           f"({done} done). Values: test.py on each cell's best.pt (conf {t['conf_thres']}, NMS IoU "
           f"{t['iou_thres']}), in percent; ? = not run yet; several seeds: mean (min-max).", ""]
    for title, members in table_groups(grid, results):
        for metric, name in METRICS:
            out += [f"## {title + ' -- ' if title else ''}{name}", "", *table_lines(grid, members, metric, name), ""]
    spread = spread_lines(results)
    if spread:
        out += ["## Seed-to-seed spread", "", *spread, ""]
    return "\n".join(out)


def write_csv(path: Path, grid: Grid, results: list[Result]) -> None:
    """Every (cell, evaluation): its axis labels, state and metrics."""
    axes = [a.name for a in (*grid.axes, *grid.eval_axes)]
    settings = [k for k in ("cfg", "img_size", "epochs", "seed") if k not in axes]   # an axis column says it already
    keys = ("map50", "map", "precision", "recall")
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cell", "eval", *axes, *settings, *keys, "train_seconds"])
        for r in results:
            m = r.metrics or {}
            w.writerow([r.cell.name, r.variant.name, *(r.labels.get(a, "") for a in axes),
                        *(r.cell.settings[k] for k in settings), *(m.get(k, "") for k in keys),
                        "" if r.train_seconds is None else r.train_seconds])


def grid_figure(grid: Grid, results: list[Result]):
    """One row of panels per table (mAP@0.5, mAP@0.5:0.95 against the column axis), a line per table row;
    several seeds: the mean, with a vertical bar from min to max."""
    from utils.eval.plots import _plt
    plt = _plt()
    groups = table_groups(grid, results) or [("", results)]
    fig, axes = plt.subplots(len(groups), len(METRICS), figsize=(6 * len(METRICS), 3.6 * len(groups)),
                             squeeze=False, tight_layout=True)
    for (title, members), panel_row in zip(groups, axes):
        cols = _present(grid.axis(grid.columns), members) if grid.columns else [None]
        rows = _present(grid.axis(grid.rows), members) if grid.rows else [None]
        for (metric, name), ax in zip(METRICS, panel_row):
            for row in rows:
                found = [[100 * r.metrics[metric] for r in _pick(_pick(members, grid.rows, row), grid.columns, c)
                          if r.metrics is not None] for c in cols]
                x = [i for i, v in enumerate(found) if v]
                ax.plot(x, [sum(found[i]) / len(found[i]) for i in x], marker="o",
                        label=row.label if row else grid.name)
                for i in (i for i in x if len(found[i]) > 1):
                    ax.vlines(i, min(found[i]), max(found[i]), colors=ax.lines[-1].get_color())
            ax.set_xticks(range(len(cols)), [_column_header(grid, c) if c else "" for c in cols])
            ax.set(title=f"{title + ' -- ' if title else ''}{name}", ylabel=f"{name} (%)", xlabel=grid.columns or "")
            ax.legend(fontsize=7)
    return fig


def run_labels(cells: list[Cell], grid: Grid) -> list[str]:
    """Legend names of the cells' training curves: the values of the axes that vary."""
    varying = [a for a in grid.axes if len(a.values) > 1]
    return [", ".join(value_text(a, next(v for v in a.values if v.label == c.labels[a.name])) for a in varying)
            or c.name for c in cells]


def write_report(grid: Grid, cells: list[Cell], grid_dir: Path) -> list[Path]:
    """grid.md, grid.csv, grid.png and compare/*.png (curves of the trained cells) in ``grid_dir``."""
    from utils.eval.plots_compare import plot_compare
    grid_dir.mkdir(parents=True, exist_ok=True)
    results = collect(cells, grid_dir)
    paths = [grid_dir / "grid.md", grid_dir / "grid.csv", grid_dir / "grid.png"]
    paths[0].write_text(markdown(grid, results))
    write_csv(paths[1], grid, results)
    from utils.eval.plots import _plt
    fig = grid_figure(grid, results)
    fig.savefig(paths[2], dpi=110)
    _plt().close(fig)
    trained = [c for c in cells if (grid_dir / c.name / "results.csv").is_file()]
    if trained:
        paths += plot_compare([grid_dir / c.name for c in trained], grid_dir / "compare", run_labels(trained, grid))
    return paths
