"""Run an experiment grid: one train.py run per cell, test.py per evaluation, then the tables.

    python benchmarks/grid.py configs/grids/seed003_cpu.yaml --list     # the cells, their state, the count
    python benchmarks/grid.py configs/grids/seed003_cpu.yaml            # train / resume / skip, evaluate, report
    python benchmarks/grid.py configs/grids/seed003_cpu.yaml --report   # tables of what is finished, no training

Cells go to ``<--project>/<grid name>/<cell>/`` (ordinary train.py run folders); re-running skips
finished cells and resumes an interrupted one. The report -- grid.md (seed 003's table layout,
mAP@0.5 and mAP@0.5:0.95), grid.csv (every cell), grid.png and compare/*.png (every cell's
training curves) -- is written in the grid folder. The grid YAML format is in utils/grid/config.py.
Exit status: 0, 1 when a cell failed (the others still ran), 2 for a bad grid YAML or flag.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from utils.cli.checks import OneLineParser
from utils.config import ConfigError

LOGGER = logging.getLogger("grid")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("grid", help="grid YAML (configs/grids/*.yaml)")
    ap.add_argument("--project", default="runs/grid", help="parent folder of the grid folders")
    ap.add_argument("--device", default=None, help="overrides the grid's base.device (cpu, 0, cuda:0 ...)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="print the cells and their state; run nothing")
    mode.add_argument("--report", action="store_true", help="write the tables from finished cells; run nothing")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    opt = parse_args(argv)
    from utils.grid.run import describe_cells, run_grid
    from utils.grid.config import expand, load_grid
    from utils.grid.report import write_report
    try:
        grid = load_grid(opt.grid)
        if opt.device is not None:
            grid = dataclasses.replace(grid, base={**grid.base, "device": opt.device})
        cells, grid_dir = expand(grid), Path(opt.project) / grid.name
        if opt.list:
            print("\n".join(describe_cells(grid, cells, grid_dir)))
            return 0
        run = None if opt.report else run_grid(grid, cells, grid_dir)
        paths = write_report(grid, cells, grid_dir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to continue (finished cells are skipped, the "
              "interrupted one resumes from its weights/last.pt)", file=sys.stderr)
        return 130
    if run is not None:
        LOGGER.info("grid %s: %d trained, %d skipped, %d evaluations, %d failed in %.0f s", grid.name,
                    len(run.trained), len(run.skipped), len(run.evaluated), len(run.failed), run.seconds)
        for name in run.failed:
            LOGGER.error("failed: %s", name)
    LOGGER.info("report: %s", ", ".join(str(p) for p in paths[:3]))
    return 1 if run is not None and run.failed else 0


if __name__ == "__main__":
    sys.exit(main())
