"""Hyperparameter evolution (utils/train/evolve.py, train.py --evolve): genes stay in utils/config.py RANGES,
parents are drawn by the fitness weights, and a tiny evolution writes evolve.csv / hyp_evolve.yaml and
resumes without training a generation twice."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml

import train
from utils.config import RANGES, ConfigError, Hyp, hyp_from_dict, load_hyp
from utils.train.evolve import (COLUMNS, GENES, best_generation, clip_gene, fitness, mutate, next_hyp, parent_weights,
                          read_history, scale_gene, select_parent)

INT_KEYS = {"warmup_min_iters", "nbs", "multi_scale_every"}


def test_gene_table_is_every_numeric_range_but_iou_t_and_close_mosaic():
    numeric = [k for k, rule in RANGES.items() if isinstance(rule, str) and rule != "pairs"]
    assert sorted(GENES) == sorted(set(numeric) - {"iou_t", "close_mosaic"})  # iou_t: read by nothing; close_mosaic:
    # an epoch count tied to --epochs
    assert {k for k in GENES if isinstance(getattr(Hyp(), k), int)} == INT_KEYS


def test_clip_and_scale_by_hand():
    assert clip_gene("lr0", 0.0123456789) == 0.012346          # 5 significant digits
    assert clip_gene("perspective", 0.003) == 0.001            # closed bound [0, 0.001]
    assert clip_gene("momentum", 1.2) == 0.99999               # open bound [0, 1): 1 - 1e-5
    assert clip_gene("anchor_t", 0.5) == 1.001                 # open bound (1, 100]: 1 + 99e-5 -> 1.001
    assert clip_gene("nbs", 5000.0) == 4096 and clip_gene("nbs", 16.64) == 17
    assert isinstance(clip_gene("nbs", 16.64), int)
    assert clip_gene("multi_scale_every", 0.4) == 1            # integer range [1, 100000]
    assert scale_gene("nbs", 64, 1.1) == 70 and scale_gene("nbs", 64, 1.001) == 65  # at least one unit
    assert scale_gene("nbs", 1, 0.9) == 1 and scale_gene("warmup_min_iters", 1, 0.9) == 0
    assert scale_gene("lr0", 0.004, 3.0) == 0.012
    assert scale_gene("momentum", 0.937, 3.0, complement=True) == 0.811   # 1 - 0.063 * 3
    assert scale_gene("momentum", 0.937, 0.3, complement=True) == 0.9811  # 1 - 0.063 * 0.3
    assert scale_gene("ema_decay", 0.0, 3.0, complement=True) == 0.0      # EMA off stays off
    assert scale_gene("mixup", 0.0, 3.0) == 0.0


def _parents() -> dict[str, dict[str, float | int]]:
    """The defaults, every gene at its upper bound, every gene at its lower bound (1e-9 where that is 0:
    0 is a switch that stays off)."""
    return {"defaults": {k: getattr(Hyp(), k) for k in GENES},
            "upper": {k: clip_gene(k, 1e9) for k in GENES},
            "lower": {k: clip_gene(k, -1e9) or (1 if k in INT_KEYS else 1e-9) for k in GENES}}


@pytest.mark.parametrize("name", ["defaults", "upper", "lower"])
def test_mutation_respects_ranges_over_many_draws(name):
    parent, rng = _parents()[name], np.random.default_rng(7)
    children = [mutate(parent, rng) for _ in range(300)]
    for child in children:
        hyp_from_dict({**Hyp().to_dict(), **child}, "child")  # every key inside its RANGES line, or ConfigError
        assert all(isinstance(child[k], int) for k in INT_KEYS)
        assert child != parent
    for k, v in parent.items():
        values = [c[k] for c in children]
        if v == 0:
            assert set(values) == {0}, k                  # switched off stays off
        else:
            assert len(set(values)) > 1, k                # the gene really moves
            if name == "upper":
                assert max(values) == v and min(values) < v, k
            if name == "lower":  # at the bound it only rises; just above a bound of 0 it moves both ways
                at_bound = clip_gene(k, -1e9) == v
                assert (min(values) == v if at_bound else min(values) < v) and max(values) > v, k


def test_mutation_factor_is_within_0_3_to_3():
    parent = _parents()["defaults"]
    rng = np.random.default_rng(1)
    for _ in range(300):
        child = mutate(parent, rng)
        for k, v in child.items():
            if parent[k] and k not in INT_KEYS and not GENES[k].complement:
                lo, hi = clip_gene(k, parent[k] * 0.3), clip_gene(k, parent[k] * 3.0)
                assert lo * (1 - 1e-4) <= v <= hi * (1 + 1e-4), (k, parent[k], v)


def test_parent_weights_by_hand():
    # the five best of seven: 0.40, 0.30, 0.25, 0.20, 0.10; weights fitness - 0.10 = 0.30, 0.20, 0.15, 0.10, 0
    p = parent_weights([0.05, 0.40, 0.10, 0.30, 0.20, 0.01, 0.25])
    assert sorted(p) == [1, 2, 3, 4, 6]
    expected = {1: 0.4, 3: 0.2 / 0.75, 6: 0.2, 4: 0.1 / 0.75, 2: 0.0}
    assert p == pytest.approx(expected, abs=1e-5)
    assert fitness(0.6, 0.4) == pytest.approx(0.42) and fitness(float("nan"), 0.3) == 0.0


def _hand_csv(path: Path, maps: list[tuple[float, float]]) -> None:
    """evolve.csv rows written by hand: generation g has lr0 = 0.001 * (g + 1) and the given mAPs."""
    genes = {k: getattr(Hyp(), k) for k in GENES}
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for g, (m50, m) in enumerate(maps):
            w.writerow([g, g - 1, round(0.1 * m50 + 0.9 * m, 6), m50, m, *{**genes, "lr0": 0.001 * (g + 1)}.values()])


def test_parent_selection_on_a_hand_made_csv(tmp_path):
    path = tmp_path / "evolve.csv"
    # fitness 0.1 * mAP@0.5 + 0.9 * mAP@0.5:0.95 = 0.23, 0.47, 0.35
    _hand_csv(path, [(0.5, 0.2), (0.65, 0.45), (0.8, 0.3)])
    history = read_history(path)
    assert [g.fitness for g in history] == [0.23, 0.47, 0.35]
    assert [fitness(g.map50, g.map) for g in history] == pytest.approx([0.23, 0.47, 0.35])
    assert best_generation(history).genes["lr0"] == 0.002
    # weights 0, 0.24, 0.12 -> generation 1 two draws in three, generation 2 one in three, generation 0 never
    rng = np.random.default_rng(0)
    counts = np.bincount([select_parent(history, rng).generation for _ in range(3000)], minlength=3)
    assert counts[0] == 0 and abs(counts[1] / 3000 - 2 / 3) < 0.03


def test_damaged_or_foreign_csv_is_one_line(tmp_path):
    path = tmp_path / "evolve.csv"
    _hand_csv(path, [(0.5, 0.2), (0.8, 0.43)])
    path.write_text(path.read_text() + "2,1,oops\n")
    with pytest.raises(ConfigError, match=r"evolve.csv: row 4 is damaged"):
        read_history(path)
    _hand_csv(path, [(0.5, 0.2), (0.8, 0.43)])
    path.write_text(path.read_text().replace(",0.002,", ",-0.002,"))   # row 3's lr0 (range (0, 1])
    with pytest.raises(ConfigError, match=r"evolve.csv row 3: key 'lr0' must be in \(0, 1\], got -0.002"):
        read_history(path)
    path.write_text("generation,fitness\n0,0.1\n")
    with pytest.raises(ConfigError, match="not an evolve.csv of this version"):
        read_history(path)


def test_generations_are_reproducible_from_seed_and_rows(tmp_path):
    base = load_hyp("configs/hyp.shapes.yaml")
    _hand_csv(tmp_path / "evolve.csv", [(0.5, 0.2), (0.8, 0.43)])
    history = read_history(tmp_path / "evolve.csv")
    assert next_hyp([], base, seed=0) == (-1, base)
    assert next_hyp(history, base, seed=0) == next_hyp(history, base, seed=0)
    assert next_hyp(history, base, seed=0)[1] != next_hyp(history, base, seed=1)[1]


def test_a_diverging_generation_scores_zero(tmp_path, monkeypatch):
    import types

    import utils.train.trainer
    from utils.train.evolve import train_generation
    from utils.train.options import TrainOptions

    def stop():
        raise utils.train.trainer.TrainingStopped("loss exploded")
    given = []

    def trainer(fit):
        return lambda opt, hyp: given.append(hyp) or types.SimpleNamespace(fit=fit)
    monkeypatch.setattr(utils.train.trainer, "Trainer", trainer(stop))
    hyp = load_hyp("configs/hyp.shapes.yaml")
    assert train_generation(TrainOptions(hyp="x.yaml"), tmp_path, 4, hyp) == (0.0, 0.0)
    assert load_hyp(tmp_path / "gen_4" / "hyp.yaml") == hyp == given[0]   # the generation's run trains this hyp
    monkeypatch.setattr(utils.train.trainer, "Trainer", trainer(lambda: {"map50": float("nan"), "map": float("nan")}))
    assert train_generation(TrainOptions(hyp="x.yaml"), tmp_path, 4, hyp) == (0.0, 0.0)


def test_evolve_flag_checks(capsys):
    for argv, message in ((["--evolve", "0"], "argument --evolve: must be >= 1, got 0"),
                          (["--evolve", "2", "--resume"], "--evolve does not combine with --resume"),
                          (["--evolve", "2", "--task", "classify"], "--evolve does not combine with --task classify")):
        with pytest.raises(SystemExit) as exc:
            train.parse_args(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert train.parse_args(["--evolve", "3"]).project == "runs/evolve"
    assert train.parse_args([]).project == "runs/train"


def test_tiny_evolution_writes_results_and_resumes(shapes_yaml, tmp_path, train_args, capsys):
    root = tmp_path / "exp"
    args = train_args(shapes_yaml, tmp_path, epochs=1)
    assert train.main(args + ["--evolve", "2"]) == 0
    history = read_history(root / "evolve.csv")
    base = load_hyp("configs/hyp.shapes.yaml")
    assert [g.generation for g in history] == [0, 1] and [g.parent for g in history] == [-1, 0]
    assert history[0].genes == {k: getattr(base, k) for k in GENES}          # generation 0 = the base hyp
    assert history[1].genes != history[0].genes
    for g in history:
        hyp_from_dict({**base.to_dict(), **g.genes}, f"generation {g.generation}")   # in range
        assert g.fitness == pytest.approx(0.1 * g.map50 + 0.9 * g.map, abs=1e-6)
        assert len((root / f"gen_{g.generation}" / "results.csv").read_text().splitlines()) == 2  # 1 epoch
    best = best_generation(history)
    text = (root / "hyp_evolve.yaml").read_text()
    assert f"# generation {best.generation} (parent {best.parent}): fitness {best.fitness:.5f}" in text
    assert yaml.safe_load(text) == {**base.to_dict(), **best.genes} and load_hyp(root / "hyp_evolve.yaml")

    # generation 2 was interrupted: its folder holds a partial attempt and evolve.csv has no row for it
    (root / "gen_2").mkdir()
    (root / "gen_2" / "partial.txt").write_text("interrupted")
    stamps = {k: (root / f"gen_{k}" / "weights" / "last.pt").stat().st_mtime_ns for k in (0, 1)}
    csv_before = (root / "evolve.csv").read_text()
    assert train.main(args + ["--evolve", "3"]) == 0
    again = read_history(root / "evolve.csv")
    assert [g.generation for g in again] == [0, 1, 2]
    assert (root / "evolve.csv").read_text().startswith(csv_before)           # rows 0 and 1 untouched
    assert {k: (root / f"gen_{k}" / "weights" / "last.pt").stat().st_mtime_ns for k in (0, 1)} == stamps
    assert not (root / "gen_2" / "partial.txt").exists() and (root / "gen_2" / "weights" / "last.pt").exists()
    assert again[2].parent >= 0 and (again[2].parent, hyp_from_dict({**base.to_dict(), **again[2].genes})) == \
        next_hyp(history, base, seed=3)                                         # as an uninterrupted run draws it

    capsys.readouterr()
    assert train.main(args + ["--evolve", "3"]) == 0                          # complete: nothing trained
    assert "evolution: 3 generations" in capsys.readouterr().out
    assert (root / "evolve.csv").read_text().count("\n") == 4
    assert train.main(train_args(shapes_yaml, tmp_path, epochs=2) + ["--evolve", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert "evolve_opt.yaml: this evolution ran with --epochs 1, this command gives 2" in err
    assert len(err.splitlines()) == 1 and not (root / "gen_3").exists()
