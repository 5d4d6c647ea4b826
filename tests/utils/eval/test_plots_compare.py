"""Comparison charts (utils/eval/plots_compare.py, ``python -m utils.eval.plots compare``): one figure per
quantity, one line per run carrying that run's results.csv column, legend = config names."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from utils.eval.plots_compare import QUANTITIES, compare_figures, find_runs, main
from utils.train.runs import append_csv

ROOT = Path(__file__).resolve().parents[3]
COLUMNS = ["train/box_loss", "train/obj_loss", "train/cls_loss", "metrics/precision", "metrics/recall",
           "metrics/mAP_0.5", "metrics/mAP_0.5:0.95", "val/box_loss", "val/obj_loss", "val/cls_loss",
           "x/lr0", "x/lr1", "x/lr2"]   # utils/train/runs.py results_row's columns after "epoch"


def _run(folder: Path, cfg: str, epochs: int, scale: float) -> Path:
    """A run folder with opt.yaml and a results.csv whose column k at epoch e is scale * (k + 1) * (e + 1)."""
    folder.mkdir(parents=True)
    (folder / "opt.yaml").write_text(yaml.safe_dump({"cfg": cfg, "epochs": epochs}))
    for e in range(epochs):
        row = {c: scale * (k + 1) * (e + 1) for k, c in enumerate(COLUMNS)}
        append_csv(folder / "results.csv", {"epoch": e, **row})
    return folder


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    from utils.eval.plots import _plt
    _plt().close("all")


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    return [_run(tmp_path / "exp", "configs/yolov4_resnet18.yaml", 3, 0.01),
            _run(tmp_path / "exp2", "configs/yolov4_s.yaml", 4, 0.02),
            _run(tmp_path / "exp3", "configs/yolov4_s.yaml", 2, 0.03)]


def test_one_line_per_run_with_its_values(runs):
    figures = compare_figures(runs)
    assert list(figures) == [q[2] for q in QUANTITIES] and len(figures) == 11
    for column, title, stem in QUANTITIES:
        (ax,) = figures[stem].axes
        assert ax.get_title() == title
        assert [ln.get_label() for ln in ax.lines] == ["yolov4_resnet18", "yolov4_s (exp2)", "yolov4_s (exp3)"]
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [ln.get_label() for ln in ax.lines]
        k = COLUMNS.index(column)
        for ln, scale, epochs in zip(ax.lines, (0.01, 0.02, 0.03), (3, 4, 2)):
            assert list(ln.get_xdata()) == list(range(epochs))
            assert list(ln.get_ydata()) == pytest.approx([scale * (k + 1) * (e + 1) for e in range(epochs)])
    lr = figures["lr"].axes[0].lines[1]                         # x/lr0 of exp2: 0.02 * 11 * (e + 1)
    assert list(lr.get_ydata()) == pytest.approx([0.22, 0.44, 0.66, 0.88])


def test_labels_given_and_folders_of_runs(runs, tmp_path):
    assert find_runs([tmp_path]) == runs                        # a folder of runs (a grid's) expands, sorted
    figures = compare_figures(runs, ["a", "b", "c"])
    assert [ln.get_label() for ln in figures["map50"].axes[0].lines] == ["a", "b", "c"]


def test_cli_writes_a_png_per_quantity(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main([str(r) for r in runs] + ["--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{q[2]}.png" for q in QUANTITIES)
    assert capsys.readouterr().out.strip() == f"11 figures of 3 runs in {out}"
    assert main([str(tmp_path / "exp"), "--labels", "a", "b"]) == 2
    assert capsys.readouterr().err.strip() == "error: --labels: 2 names for 1 runs (exp)"


def test_module_entry_and_bad_folder(tmp_path, runs):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run([sys.executable, "-m", "utils.eval.plots", "compare", str(empty)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: {empty}: no results.csv there or in its sub-folders "
                                   f"(give train.py run folders)")
    proc = subprocess.run([sys.executable, "-m", "utils.eval.plots", "compare", str(runs[0]), "--out", str(tmp_path / "o")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and (tmp_path / "o" / "map50.png").is_file()
    proc = subprocess.run([sys.executable, "-m", "utils.eval.plots"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: usage: python -m utils.eval.plots compare")
