"""The experiment grid runner (benchmarks/grid.py, utils/grid/): a 2x2 grid of 1-epoch cells on a
tiny shapes set fills its table from each cell's test.py metrics; a re-run starts no subprocess; an
evaluation-only axis adds a column by running test.py only; an interrupted cell resumes; the seed
grids expand to the seed's tables; a bad grid YAML is one line and exit code 2."""
from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from utils.grid.run import cell_state, run_grid, run_logged, train_command
from utils.grid.config import GridError, expand, load_grid
from utils.grid.report import Result, cell_text, collect, grid_figure, markdown, write_report

ROOT = Path(__file__).resolve().parents[1]


def _load_cli():
    spec = importlib.util.spec_from_file_location("_cli_grid", ROOT / "benchmarks" / "grid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Recorder:
    """A runner that records every command; ``real`` runs it (run_logged), else pretends exit ``rc``."""

    def __init__(self, real: bool = True, rc: int = 0):
        self.commands: list[list[str]] = []
        self.real, self.rc = real, rc

    def __call__(self, cmd: list[str], log: Path) -> int:
        self.commands.append(cmd)
        return run_logged(cmd, log) if self.real else self.rc

    def scripts(self) -> list[str]:
        return [Path(c[1]).name for c in self.commands]


def _tiny_grid(path: Path, data: Path, **extra) -> Path:
    """A 2x2 grid (box_loss x mosaic) of 1-epoch yolov4_n cells at 64 px."""
    grid = {"name": "tiny",
            "base": {"cfg": str(ROOT / "configs" / "yolov4_n.yaml"), "data": str(data),
                     "hyp": str(ROOT / "configs" / "hyp.shapes.yaml"), "epochs": 1, "batch": 4, "seed": 0,
                     "img_size": 64, "device": "cpu", "workers": 0, "train_args": ["--noautoanchor"]},
            "axes": {"box_loss": ["giou", "ciou"], "mosaic": [0.0, 1.0]},
            "test": {"batch": 8}, **extra}
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """8 train / 4 val shapes images (seed 1) and their data YAML."""
    from conftest import shapes_data_yaml   # tests/conftest.py
    return shapes_data_yaml(tmp_path_factory.mktemp("grid_data"), 8, 4)


@pytest.fixture(scope="module")
def ran_grid(tmp_path_factory, tiny_data):
    """The 2x2 grid run once for real (4 train.py + 4 test.py subprocesses, ~1 min on 2 cores)."""
    root = tmp_path_factory.mktemp("grid_run")
    grid = load_grid(_tiny_grid(root / "tiny.yaml", tiny_data))
    cells, grid_dir = expand(grid), root / "runs" / "tiny"
    recorder = Recorder()
    run = run_grid(grid, cells, grid_dir, recorder)
    write_report(grid, cells, grid_dir)
    return root, grid, cells, grid_dir, recorder, run


def _metrics(grid_dir: Path, cell: str, variant: str = "test") -> dict:
    return json.loads((grid_dir / cell / "eval" / variant / "metrics.json").read_text())


def _table(md: str, title: str) -> list[list[str]]:
    """The rows (split cells) of the markdown table under ``## title``."""
    lines = md.split(f"## {title}\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return [ln.strip("|").split("|") for ln in lines if not ln.startswith("|--")]


def test_grid_fills_the_table_with_each_cells_metrics(ran_grid):
    root, grid, cells, grid_dir, recorder, run = ran_grid
    names = ["box_loss-giou__mosaic0.0", "box_loss-giou__mosaic1.0", "box_loss-ciou__mosaic0.0",
             "box_loss-ciou__mosaic1.0"]
    assert [c.name for c in cells] == names and run.trained == names and not run.failed
    assert recorder.scripts() == ["train.py", "test.py"] * 4
    for name in names:   # the derived hyp reached train.py: results.csv has the one epoch, hyp.yaml the overrides
        hyp = yaml.safe_load((grid_dir / name / "hyp.yaml").read_text())
        assert (hyp["box_loss"], hyp["mosaic"]) == (name.split("__")[0][9:], float(name[-3:]))
        with (grid_dir / name / "results.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 1
        # test.py on best.pt at the training's own thresholds reproduces the epoch's validation mAP
        assert _metrics(grid_dir, name)["map50"] == pytest.approx(float(rows[0]["metrics/mAP_0.5"]), rel=1e-5)
    md = (grid_dir / "grid.md").read_text()
    for title, key in (("mAP@0.5", "map50"), ("mAP@0.5:0.95", "map")):
        table = _table(md, title)
        assert table[0] == ["box_loss", "mosaic 0.0", "mosaic 1.0"]
        assert [r[0] for r in table[1:]] == ["giou", "ciou"]
        for r, loss in zip(table[1:], ("giou", "ciou")):
            want = [f"{100 * _metrics(grid_dir, f'box_loss-{loss}__mosaic{m}')[key]:.1f}" for m in ("0.0", "1.0")]
            assert r[1:] == want
    with (grid_dir / "grid.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["cell"] for r in rows] == names
    assert [float(r["map50"]) for r in rows] == [_metrics(grid_dir, n)["map50"] for n in names]


def test_grid_writes_the_comparison_charts_and_its_figure(ran_grid):
    root, grid, cells, grid_dir, *_ = ran_grid
    assert sorted(p.name for p in (grid_dir / "compare").glob("*.png")) == sorted(
        ["map50.png", "map.png", "precision.png", "recall.png", "train_box_loss.png", "train_obj_loss.png",
         "train_cls_loss.png", "val_box_loss.png", "val_obj_loss.png", "val_cls_loss.png", "lr.png"])
    fig = grid_figure(grid, collect(cells, grid_dir))
    for ax in fig.axes:                                    # a line per table row, a point per column
        assert [ln.get_label() for ln in ax.lines] == ["giou", "ciou"]
        assert all(len(ln.get_xdata()) == 2 for ln in ax.lines)
    giou = fig.axes[0].lines[0].get_ydata()
    assert list(giou) == pytest.approx([100 * _metrics(grid_dir, f"box_loss-giou__mosaic{m}")["map50"]
                                        for m in ("0.0", "1.0")])
    from utils.eval.plots import _plt
    _plt().close(fig)


def test_rerun_starts_no_subprocess(ran_grid):
    root, grid, cells, grid_dir, *_ = ran_grid
    recorder = Recorder(real=False)
    run = run_grid(load_grid(root / "tiny.yaml"), cells, grid_dir, recorder)
    assert recorder.commands == [] and run.trained == [] and len(run.skipped) == 4


def test_evaluation_axis_adds_a_column_without_training(ran_grid, tiny_data):
    root, _, _, grid_dir, *_ = ran_grid
    path = _tiny_grid(root / "tiny_nms.yaml", tiny_data, eval={"nms": {"NMS": "nms", "DIoU-NMS": "diou"}},
                      only={"nms": {"mosaic": [0.0]}}, table={"rows": "box_loss", "columns": "nms"})
    grid = load_grid(path)
    cells = expand(grid)
    recorder = Recorder()
    run = run_grid(grid, cells, grid_dir, recorder)
    assert recorder.scripts() == ["test.py", "test.py"] and run.trained == []    # no training at all
    assert [c[c.index("--nms") + 1] for c in recorder.commands] == ["diou", "diou"]
    md = markdown(grid, collect(cells, grid_dir))
    table = _table(md, "mosaic 0.0 -- mAP@0.5")
    assert table[0] == ["box_loss", "NMS", "DIoU-NMS"]
    for r, loss in zip(table[1:], ("giou", "ciou")):
        cell = f"box_loss-{loss}__mosaic0.0"
        assert r == [loss, f"{100 * _metrics(grid_dir, cell)['map50']:.1f}",
                     f"{100 * _metrics(grid_dir, cell, 'test__nms-diou')['map50']:.1f}"]
    assert _table(md, "mosaic 1.0 -- mAP@0.5")[0] == ["box_loss", "NMS"]     # DIoU-NMS only where asked


def test_changed_grid_stops_before_training(ran_grid, tiny_data):
    root, _, _, grid_dir, *_ = ran_grid
    path = _tiny_grid(root / "tiny_more.yaml", tiny_data)
    raw = yaml.safe_load(path.read_text())
    raw["base"]["epochs"] = 2
    path.write_text(yaml.safe_dump(raw))
    grid = load_grid(path)
    recorder = Recorder(real=False)
    with pytest.raises(GridError, match=r"box_loss-giou__mosaic0.0: trained with other settings .*\(epochs\)"):
        run_grid(grid, expand(grid), grid_dir, recorder)
    assert recorder.commands == []


def test_interrupted_cell_resumes_and_failures_are_reported(tmp_path, tiny_data):
    grid = load_grid(_tiny_grid(tmp_path / "g.yaml", tiny_data, axes={"box_loss": ["giou"]}))
    (cell,) = expand(grid)
    cell_dir = tmp_path / "runs" / cell.name
    assert cell_state(cell, cell_dir) == "new" and "--cfg" in train_command(cell, cell_dir, "new")
    (cell_dir / "weights").mkdir(parents=True)
    (cell_dir / "weights" / "last.pt").write_bytes(b"")            # killed after an epoch
    assert cell_state(cell, cell_dir) == "partial"
    failing = Recorder(real=False, rc=2)
    run = run_grid(grid, [cell], cell_dir.parent, failing)
    assert failing.commands[0][2:4] == ["--resume", str(cell_dir / "weights" / "last.pt")]
    assert "--cfg" not in failing.commands[0] and len(failing.commands) == 1   # no evaluation of a failed cell
    assert run.failed == [cell.name] and cell_state(cell, cell_dir) == "partial"
    ok = Recorder(real=False)
    assert run_grid(grid, [cell], cell_dir.parent, ok).trained == [cell.name]
    assert cell_state(cell, cell_dir) == "done"                    # the marker train.py's exit 0 leaves
    (cell_dir / "grid_done.json").unlink()                         # or every epoch in results.csv + best.pt
    (cell_dir / "results.csv").write_text("epoch,x\n0,1\n")
    (cell_dir / "weights" / "best.pt").write_bytes(b"")
    assert cell_state(cell, cell_dir) == "done"


def test_seed_tables_and_spread_from_hand_made_results(tmp_path, tiny_data):
    assert [cell_text(v) for v in ([], [0.435], [0.1, 0.2, 0.3])] == ["?", "43.5", "20.0 (10.0-30.0, 3 seeds)"]
    grid = load_grid(_tiny_grid(tmp_path / "g.yaml", tiny_data, axes={"box_loss": ["giou", "ciou"], "seed": [0, 1, 2]},
                                only={"seed": {"box_loss": ["giou"]}}))
    cells = expand(grid)
    assert [c.name for c in cells] == ["box_loss-giou__seed0", "box_loss-giou__seed1", "box_loss-giou__seed2",
                                       "box_loss-ciou__seed0"]
    values = {"box_loss-giou__seed0": 0.5, "box_loss-giou__seed1": 0.4, "box_loss-giou__seed2": 0.6}
    results = [Result(c, c.evals[0], {"map50": values[c.name], "map": 0.25} if c.name in values else None, 1.0)
               for c in cells]
    md = markdown(grid, results)
    assert _table(md, "mAP@0.5") == [["box_loss", "mAP@0.5"], ["giou", "50.0 (40.0-60.0, 3 seeds)"], ["ciou", "?"]]
    assert "- giou: mAP@0.5 50.0 / 40.0 / 60.0 (seeds 0/1/2; max - min 20.0)" in md


# ------------------------------------------------------------------------------ the shipped grids
@pytest.mark.parametrize("name, n_cells, n_evals", [("seed003", 21, 27), ("seed003_cpu", 23, 29), ("backbones", 8, 8)])
def test_shipped_grids_list(name, n_cells, n_evals, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert _load_cli().main([f"configs/grids/{name}.yaml", "--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == n_cells + 1 and out[-1].startswith(f"{n_cells} training cells")
    assert f", {n_evals} evaluations" in out[-1]


def test_seed003_grid_encodes_both_tables(monkeypatch):
    monkeypatch.chdir(ROOT)
    rows = ["CSP", "CSP + GIoU", "CSP + DIoU", "CSP + CIoU", "CSP + SIoU", "CSP + CIoU + CA", "CSP + CIoU + CA + M"]
    for name, sizes in (("seed003", ["320", "416", "512"]), ("seed003_cpu", ["96", "128", "160"])):
        grid = load_grid(ROOT / "configs" / "grids" / f"{name}.yaml")
        cells = expand(grid)
        assert [v.label for v in grid.axis("variant").values] == rows
        assert [v.label for v in grid.axis("img_size").values] == sizes
        by_row = {r: [c for c in cells if c.labels["variant"] == r] for r in rows}
        assert by_row["CSP"][0].hyp["box_loss"] == "mse"        # YOLOv3's t-encoded squared error
        assert [by_row[r][0].hyp["box_loss"] for r in rows[1:]] == ["giou", "diou", "ciou", "siou", "ciou", "ciou"]
        assert [by_row[r][0].hyp["mosaic"] for r in rows] == [0.0] * 6 + [1.0]
        assert [Path(by_row[r][0].settings["cfg"]).stem.endswith("_ca") for r in rows] == [False] * 5 + [True] * 2
        diou = sorted({c.labels["variant"] for c in cells for v in c.evals if v.flags["nms"] == "diou"})
        assert diou == ["CSP + CIoU", "CSP + CIoU + CA"]
        assert grid.test["conf_thres"] == 0.05 and grid.test["iou_thres"] == 0.45    # seed 003's thresholds
    seeds = [c.labels for c in expand(load_grid(ROOT / "configs" / "grids" / "seed003_cpu.yaml"))
             if c.labels["seed"] != "0"]
    assert seeds == [{"variant": "CSP", "img_size": "128", "seed": "1"},
                     {"variant": "CSP", "img_size": "128", "seed": "2"}]


# ------------------------------------------------------------------------------ bad grid YAMLs
BAD = [  # (id, top-level keys replaced in the tiny grid ("base+": merged into base), strings the line must hold)
    ("top-key", {"axis": {}}, ["top level", "unknown key(s) axis"]),
    ("base-missing", {"base": {"cfg": "configs/yolov4_n.yaml"}}, ["base", "missing key(s) data, hyp, epochs"]),
    ("base-hyp-key", {"base+": {"mosaic": 0.0}}, ["base.mosaic", "hyp keys go under the top-level 'hyp'"]),
    ("base-epochs", {"base+": {"epochs": 0}}, ["base.epochs", "'epochs' must be an integer >= 1, got 0"]),
    ("cfg-missing", {"axes": {"cfg": ["configs/nope.yaml"]}}, ["axes.cfg", "file not found", "nope.yaml"]),
    ("override-key", {"axes": {"variant": {"A": {"boxloss": "giou"}}}}, ["axes.variant.A", "unknown key 'boxloss'"]),
    ("hyp-value", {"axes": {"box_loss": ["giou", "gioux"]}}, ["cell box_loss-gioux", "box_loss", "gioux"]),
    ("eval-key", {"eval": {"nms": ["nms", "soft"]}}, ["eval.nms.soft", "'nms' must be nms or diou"]),
    ("eval-as-train", {"axes": {"nms": ["nms", "diou"]}}, ["axes.nms", "put its axis under 'eval'"]),
    ("only-axis", {"only": {"seed": {"box_loss": ["giou"]}}}, ["only.seed", "no axis 'seed'"]),
    ("only-value", {"only": {"mosaic": {"box_loss": ["siou"]}}}, ["only.mosaic.box_loss", "no value 'siou'"]),
    ("table", {"table": {"rows": "variant"}}, ["table.rows", "no axis 'variant'"]),
    ("train-args", {"base+": {"train_args": ["--epochs", "3"]}}, ["base.train_args", "may not contain --epochs"]),
]


@pytest.mark.parametrize("change, culprits", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_grid_is_one_line(change, culprits, tmp_path, tiny_data, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    path = _tiny_grid(tmp_path / "bad.yaml", tiny_data)
    raw = yaml.safe_load(path.read_text())
    for key, value in change.items():
        if key == "base+":
            raw["base"].update(value)
        else:
            raw[key] = value
    path.write_text(yaml.safe_dump(raw))
    assert _load_cli().main([str(path), "--list"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}: "), err
    assert all(c in err[0] for c in culprits), err[0]


def test_bad_grid_yaml_syntax_and_flag(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("base: [1,\n")
    cli = _load_cli()
    assert cli.main([str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.yaml: not valid YAML" in err[0]
    with pytest.raises(SystemExit) as e:
        cli.main([str(path), "--list", "--report"])
    assert e.value.code == 2 and "not allowed with argument" in capsys.readouterr().err



def test_tiny_ca_model_is_yolov4_n_with_the_three_ca_rows():
    from models.yolo import Model, load_model_cfg
    n_ca, l_ca = (load_model_cfg(ROOT / "configs" / f) for f in ("yolov4_n_ca.yaml", "yolov4_l_ca.yaml"))
    assert (n_ca["backbone"], n_ca["head"]) == (l_ca["backbone"], l_ca["head"])   # the same rows as yolov4_l_ca

    def count(cfg: str) -> int:
        return sum(p.numel() for p in Model(ROOT / "configs" / cfg, nc=4).parameters())
    # CA(c), mip 8: conv1 8c + 8, BN 16, conv_h and conv_w 8c + c each = 26c + 24; c = 64/128/256 at width 0.25
    assert count("yolov4_n_ca.yaml") == count("yolov4_n.yaml") + sum(26 * c + 24 for c in (64, 128, 256)) == 2_305_265
