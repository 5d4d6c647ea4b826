"""Hyperparameter evolution (``train.py --evolve N``): a genetic search over the hyp YAML's numbers.

Generation 0 trains the base hyp (``--hyp`` with ``--optimizer`` / ``--cos-lr`` folded in) unchanged.
Every later generation picks one parent among the best (up to) :data:`TOP` earlier generations, with a
probability proportional to how far its fitness exceeds the weakest of them, multiplies each numeric
gene by a random factor in :data:`FACTOR_RANGE` (per-key spread and probability in :data:`GENES`;
decays near 1 such as momentum have ``1 - value`` multiplied instead) and clips it into its
``utils/config.py`` RANGES interval; integers stay integers, and a gene at 0 is a switched-off
feature (focal loss, mixup, rotation, EMA ...) that stays 0. Each generation is an ordinary
training run in ``<project>/<name>/gen_<k>/``; its fitness is 0.1 mAP@0.5 + 0.9 mAP@0.5:0.95 of the
final epoch (a generation that stops on a diverging loss scores 0).

``evolve.csv`` (one row per generation) is the state of the search: a re-run continues after its last
row, and a generation interrupted before its row was written is trained again from scratch.
``hyp_evolve.yaml`` is the best hyp so far; ``evolve_opt.yaml`` the settings every generation shares
(a re-run with other settings is refused). A generation's draws depend only on ``--seed``, its number
and the earlier rows, so a resumed search draws what an uninterrupted one would have.
"""
from __future__ import annotations

import csv
import dataclasses
import gc
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from utils.config import RANGES, ConfigError, Hyp, hyp_from_dict, read_yaml
from utils.train.options import TrainOptions, options_to_dict, run_hyp

LOGGER = logging.getLogger(__name__)

SIGMA = 0.2                 # spread of a gene's factor before clipping (times its Gene.scale)
FACTOR_RANGE = (0.3, 3.0)   # one generation changes a gene by at most this factor
TOP = 5                     # parents are drawn from this many best generations
SHARED_FLAGS = ("cfg", "data", "weights", "epochs", "img_size", "batch_size", "seed", "multi_scale", "freeze",
                "amp", "patience", "noautoanchor")  # flags a generation's fitness depends on (besides the hyp)


@dataclass(frozen=True)
class Gene:
    scale: float = 1.0      # multiplies SIGMA for this key (0: never mutated)
    prob: float = 0.8       # chance that a generation mutates this key
    complement: bool = False  # the factor multiplies 1 - value (a decay's window), not the value


GENE_OVERRIDES = {
    "iou_t": Gene(scale=0.0),            # read by nothing (kept for yolov5 compatibility)
    "close_mosaic": Gene(scale=0.0),     # a schedule length tied to --epochs, not a gene (as YOLOv8's tuner)
    "momentum": Gene(complement=True),   # decays near 1: 0.937 becomes 1 - 0.063 * factor (0.81-0.98), never 1
    "warmup_momentum": Gene(complement=True),
    "ema_decay": Gene(complement=True),  # 1 - decay is the averaging window's inverse length
}


def _gene_table() -> dict[str, Gene]:
    """Every Hyp field whose RANGES line is an interval, in field order, unless its scale is 0."""
    out = {}
    for f in dataclasses.fields(Hyp):
        rule, gene = RANGES[f.name], GENE_OVERRIDES.get(f.name, Gene())
        if isinstance(rule, str) and rule != "pairs" and gene.scale > 0:
            out[f.name] = gene
    return out


GENES: dict[str, Gene] = _gene_table()
COLUMNS = ("generation", "parent", "fitness", "mAP@0.5", "mAP@0.5:0.95", *GENES)


def _is_int_key(key: str) -> bool:
    default = getattr(Hyp(), key)
    return isinstance(default, int) and not isinstance(default, bool)


def _digits(x: float, n: int) -> float:
    return float(f"{x:.{n}g}")


def _inside(bound: float, direction: int, width: float) -> float:
    """The nearest 5-significant-digit number strictly inside an open ``bound`` (``direction`` +1: above)."""
    x = _digits(bound + direction * width * 1e-5, 5)
    return x if (x - bound) * direction > 0 else math.nextafter(bound, bound + direction)


def clip_gene(key: str, value: float, complement: bool = False) -> float | int:
    """``value`` rounded (to 5 significant digits -- of ``1 - value`` for a complement gene --, or to an
    integer for integer keys) and clipped into ``RANGES[key]``; an open bound clips to the nearest
    5-digit number inside it (momentum 1.2 -> 0.99999)."""
    rule = RANGES[key]
    lo, hi = (float(x) for x in rule[1:-1].split(","))
    lo_open, hi_open = rule[0] == "(", rule[-1] == ")"
    if _is_int_key(key):
        lo_i = math.floor(lo) + 1 if lo_open else math.ceil(lo)
        hi_i = math.ceil(hi) - 1 if hi_open else math.floor(hi)
        return min(max(int(round(value)), lo_i), hi_i)
    lo_c = _inside(lo, 1, hi - lo) if lo_open else lo
    hi_c = _inside(hi, -1, hi - lo) if hi_open else hi
    rounded = _digits(1 - _digits(1 - value, 5), 12) if complement else _digits(value, 5)  # 12: no 0.81099999
    return min(max(rounded, lo_c), hi_c)


def scale_gene(key: str, value: float | int, factor: float, complement: bool = False) -> float | int:
    """``value * factor`` (``1 - (1 - value) * factor`` for a complement gene) by :func:`clip_gene`; 0 stays
    0, and an integer that the factor moves by less than one unit moves by one (else small ones never move)."""
    if value == 0:  # a switched-off feature (EMA, focal loss, mixup ...) stays off
        return value
    if _is_int_key(key) and factor != 1 and round(value * factor) == value:
        return clip_gene(key, value + (1 if factor > 1 else -1))
    return clip_gene(key, 1 - (1 - value) * factor, complement=True) if complement else clip_gene(key, value * factor)


def mutate(parent: dict[str, float | int], rng: np.random.Generator,
           genes: dict[str, Gene] | None = None) -> dict[str, float | int]:
    """A child of ``parent`` (gene -> value): each gene times ``1 + scale * N(0, 1) * u * SIGMA`` with
    probability ``prob`` (``u`` ~ U(0, 1) once per child: some children stay close, some leap), the
    factor clipped to FACTOR_RANGE (``complement`` genes: ``1 - value`` times it), the value by
    :func:`clip_gene`; a gene at 0 stays 0. Drawn again until some gene changes."""
    genes = GENES if genes is None else genes
    keys = list(genes)
    scale = np.array([genes[k].scale for k in keys])
    prob = np.array([genes[k].prob for k in keys])
    child = dict(parent)
    for _ in range(100):
        mask = rng.random(len(keys)) < prob
        factor = np.clip(1 + scale * mask * rng.standard_normal(len(keys)) * rng.random() * SIGMA, *FACTOR_RANGE)
        child = {k: scale_gene(k, parent[k], float(f), genes[k].complement) for k, f in zip(keys, factor)}
        if child != {k: parent[k] for k in keys}:
            break
    return child


def fitness(map50: float, map5095: float) -> float:
    """0.1 mAP@0.5 + 0.9 mAP@0.5:0.95 (the checkpoint-selection score); 0 when either is NaN."""
    value = 0.1 * map50 + 0.9 * map5095
    return value if math.isfinite(value) else 0.0


@dataclass(frozen=True)
class Generation:
    generation: int
    parent: int                          # -1: the base hyp
    fitness: float
    map50: float
    map: float
    genes: dict[str, float | int]

    def row(self) -> list[Any]:
        return [self.generation, self.parent, self.fitness, self.map50, self.map, *self.genes.values()]


def parent_weights(fitnesses: list[float], top: int = TOP) -> dict[int, float]:
    """Selection probability of each of the ``top`` fittest generations (index -> p), proportional to
    ``fitness - min(fitness of those) + 1e-6``; ties go to the earlier generation."""
    best = sorted(range(len(fitnesses)), key=lambda i: -fitnesses[i])[:top]
    low = min(fitnesses[i] for i in best)
    weights = {i: fitnesses[i] - low + 1e-6 for i in best}
    total = sum(weights.values())
    return {i: w / total for i, w in weights.items()}


def select_parent(history: list[Generation], rng: np.random.Generator) -> Generation:
    p = parent_weights([g.fitness for g in history])
    return history[int(rng.choice(list(p), p=list(p.values())))]


def next_hyp(history: list[Generation], base: Hyp, seed: int) -> tuple[int, Hyp]:
    """(parent generation, hyp) of generation ``len(history)``: the base first, then a mutated parent."""
    k = len(history)
    if k == 0:
        return -1, base
    rng = np.random.default_rng([seed, k])
    parent = select_parent(history, rng)
    return parent.generation, hyp_from_dict({**base.to_dict(), **mutate(parent.genes, rng)}, f"generation {k}")


def read_history(path: Path) -> list[Generation]:
    """The rows of ``evolve.csv`` (none if it does not exist); a foreign or damaged file is a ConfigError."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(rows[0]) != COLUMNS:
        raise ConfigError(f"{path}: not an evolve.csv of this version (expected the columns {', '.join(COLUMNS)}); "
                          f"use another --name")
    out = []
    for n, row in enumerate(rows[1:], start=2):
        try:
            values = dict(zip(COLUMNS, row, strict=True))
            genes = {k: (int if _is_int_key(k) else float)(values[k]) for k in GENES}
            g = Generation(int(values["generation"]), int(values["parent"]), float(values["fitness"]),
                           float(values["mAP@0.5"]), float(values["mAP@0.5:0.95"]), genes)
        except ValueError:
            raise ConfigError(f"{path}: row {n} is damaged ({','.join(row)[:80]}); delete it to redo that "
                              f"generation") from None
        if g.generation != len(out):
            raise ConfigError(f"{path}: row {n} is generation {g.generation}, expected {len(out)}")
        hyp_from_dict(genes, f"{path} row {n}")  # a hand-edited value out of its range names the row
        out.append(g)
    return out


def append_generation(path: Path, g: Generation) -> None:
    """One row (the header first); floats as Python writes them, so a re-read gives the same numbers."""
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(COLUMNS)
        w.writerow(g.row())


def best_generation(history: list[Generation]) -> Generation:
    return max(history, key=lambda g: g.fitness)  # max keeps the first of equals: the earlier generation


def write_best(path: Path, history: list[Generation], base: Hyp) -> None:
    """``hyp_evolve.yaml``: the fittest generation's complete hyp under a commented header."""
    b = best_generation(history)
    header = (f"# Hyperparameter evolution (train.py --evolve): the best of {len(history)} generations in "
              f"{path.parent / 'evolve.csv'}\n"
              f"# generation {b.generation} (parent {b.parent}): fitness {b.fitness:.5f} = "
              f"0.1 * mAP@0.5 {b.map50:.5f} + 0.9 * mAP@0.5:0.95 {b.map:.5f}\n")
    path.write_text(header + yaml.safe_dump({**base.to_dict(), **b.genes}, sort_keys=False))


def check_settings(path: Path, opt: TrainOptions, base: Hyp) -> None:
    """Write ``evolve_opt.yaml`` on the first run; later runs must repeat its settings."""
    plain = options_to_dict(opt)
    now = {**{k: plain[k] for k in SHARED_FLAGS}, "hyp": base.to_dict()}
    now = yaml.safe_load(yaml.safe_dump(now, sort_keys=False))  # tuples become lists, as in the file
    if not path.exists():
        path.write_text(yaml.safe_dump(now, sort_keys=False))
        return
    was = read_yaml(path, "evolution settings") or {}
    for key in now:
        if key == "hyp" and was.get("hyp") != now["hyp"]:
            diff = next((k for k in now["hyp"] if (was.get("hyp") or {}).get(k) != now["hyp"][k]), "?")
            raise ConfigError(f"{path}: this evolution started from another base hyp ({diff}: "
                              f"{(was.get('hyp') or {}).get(diff)!r}, now {now['hyp'].get(diff)!r}); "
                              f"give the same --hyp or another --name")
        if key != "hyp" and was.get(key) != now[key]:
            raise ConfigError(f"{path}: this evolution ran with --{key.replace('_', '-')} {was.get(key)!r}, "
                              f"this command gives {now[key]!r}; repeat its flags or give another --name")


def train_generation(opt: TrainOptions, root: Path, k: int, hyp: Hyp) -> tuple[float, float]:
    """(final mAP@0.5, mAP@0.5:0.95) of an ordinary run of ``hyp`` in ``root/gen_<k>`` (0, 0 if it diverged)."""
    from utils.train.runs import save_yaml
    from utils.train.trainer import Trainer, TrainingStopped
    gen_dir = root / f"gen_{k}"
    if gen_dir.exists():  # an attempt at this generation was interrupted: start it afresh
        shutil.rmtree(gen_dir)
    gen_dir.mkdir(parents=True)
    save_yaml(gen_dir / "hyp.yaml", hyp.to_dict())  # the record (the run is given the Hyp itself)
    run = dataclasses.replace(opt, hyp=str(gen_dir / "hyp.yaml"), project=str(root), name=gen_dir.name,
                              exist_ok=True, resume=False, evolve=None)
    try:
        summary = Trainer(run, hyp).fit()
    except TrainingStopped as e:
        LOGGER.warning("generation %d stopped (%s): fitness 0", k, e)
        return 0.0, 0.0
    finally:
        gc.collect()
    clean = [v if math.isfinite(v) else 0.0 for v in (summary["map50"], summary["map"])]
    return round(clean[0], 6), round(clean[1], 6)


def _changes(base: dict[str, Any], genes: dict[str, Any]) -> str:
    diff = [f"{k} {base[k]:g}->{v:g}" for k, v in genes.items() if v != base[k]]
    return ", ".join(diff) if diff else "none"


def run_evolution(opt: TrainOptions) -> str:
    """Train generations until ``evolve.csv`` has ``opt.evolve`` rows; return a one-line summary."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("--evolve runs generations one after another in one process; start it without torchrun")
    root = Path(opt.project) / opt.name
    root.mkdir(parents=True, exist_ok=True)
    base = run_hyp(opt)  # the --hyp file with --optimizer / --cos-lr folded in: what generation 0 trains
    check_settings(root / "evolve_opt.yaml", opt, base)
    history = read_history(root / "evolve.csv")
    if history:
        LOGGER.info("evolve: %s has %d of %d generations", root / "evolve.csv", len(history), opt.evolve)
    for k in range(len(history), opt.evolve):
        parent, hyp = next_hyp(history, base, opt.seed)
        genes = {key: getattr(hyp, key) for key in GENES}
        LOGGER.info("evolve: generation %d (%d of %d): %s", k, k + 1, opt.evolve, f"generation {parent} with "
                    f"{_changes(history[parent].genes, genes)}" if parent >= 0 else f"the base hyp {opt.hyp}")
        map50, map5095 = train_generation(opt, root, k, hyp)
        g = Generation(k, parent, round(fitness(map50, map5095), 6), map50, map5095, genes)
        append_generation(root / "evolve.csv", g)
        history.append(g)
        write_best(root / "hyp_evolve.yaml", history, base)
        LOGGER.info("evolve: generation %d fitness %.4f (best %.4f)", k, g.fitness, best_generation(history).fitness)
    write_best(root / "hyp_evolve.yaml", history, base)
    b = best_generation(history)
    return (f"evolution: {len(history)} generations in {root}; best generation {b.generation}: fitness {b.fitness:.4f} "
            f"(mAP@0.5 {b.map50:.4f}, mAP@0.5:0.95 {b.map:.4f}); its hyp in {root / 'hyp_evolve.yaml'}")
