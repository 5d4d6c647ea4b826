"""Learning side by side: this project and the yolov5 pip package trained on the very same files.

    .venv/bin/python benchmarks/bench_learning.py                                  # shapes, identical recipe, 3 seeds
    .venv/bin/python benchmarks/bench_learning.py --tasks shapes coco128 --recipes same best --seeds 0 1 2
    .venv/bin/python benchmarks/bench_learning.py --report-only                    # tables of the finished cells

A cell is (task, recipe, framework + model, seed). Every cell trains from scratch with the same image
size, batch and epochs (early stopping off in both), on CPU with ``--threads`` torch threads (default 2), one cell at a time, then has its ``best`` and
``last`` checkpoints predict the val split with conf 0.001 / NMS IoU 0.6 (each framework's own
inference: ``test.py --save-json`` here, yolov5 ``val.py --save-json``), and both prediction files are
scored by THIS project's evaluator (``test.py --predictions``, equal to pycocotools), so the numbers
differ only by what was learned. ``best`` is each framework's own pick (fitness 0.1 mAP@.5 + 0.9
mAP@.5:.95 on the val split after each epoch); ``final`` the last epoch's EMA weights.

Tasks (datasets are written once under ``--work``/data, YOLO txt labels that both frameworks read):
* ``shapes``: the embedded set of data/scripts/make_shapes.py (400 train / 100 val), 160 px.
* ``coco128``: the shared COCO128 slice (128 images, 80 classes, train = val as yolov5's coco128.yaml), 320 px.
* ``vehicles``: COCO128 + coco-mini train (208 images) -> coco-mini val (79), motorcycle/car/bus/truck, 320 px.
  From scratch at a CPU budget no detector learns these classes from 31 images (both frameworks ~0 mAP).
* ``vehicles-fit``: every image of COCO128 and coco-mini (train and val) that holds a motorcycle, car, bus or
  truck (41 images, 154 non-crowd boxes), train = val as yolov5's coco128.yaml, 320 px: how fast each framework fits
  real photographs at the same recipe, which a CPU can measure (a fit, not generalisation).

Recipes: ``same`` = this project's configs/hyp.scratch.yaml against yolov5's own hyp.scratch-low.yaml
(equal values: SGD 0.01, linear lrf 0.01, 3 warm-up epochs, nominal batch 64, EMA 0.9999, mosaic 1);
``best`` = each framework's best short-run recipe: configs/hyp.shapes.yaml here; for yolov5 the same
choices where its flags and hyp keys can express them (Adam lr0 0.003, --cos-lr, lrf 0.05, 1 warm-up
epoch, its other augmentation values) -- yolov5 has no nominal-batch, EMA-decay or BN-momentum keys.

Cells are resumable: a finished cell (``cell.json``) is never run again. The peer needs its own venv
(``--peer-python``, default $HOME/.cache/peer-venv/bin/python; see ../shared/bench/peer_bench.py).
The OpenCV build alone moves a 30-epoch run to another trajectory (RESULTS.md); to compare on this project's
build, copy the peer venv and swap it in (``cp -a peer-venv peer-cv4``; ``peer-cv4/bin/python -m pip uninstall
-y opencv-python opencv-python-headless``; ``... install opencv-python-headless==<our version>``), then pass
``--peer-python ~/.cache/peer-cv4/bin/python``.
Output: a markdown report (``--report``) with the machine, torch versions, the fp32 matmul probe at
the start and end, and per (task, recipe, framework) the mean and min over seeds.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from learning_models import VARIANTS, model_cfg, model_file

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
PEER = Path.home() / ".cache" / "peer-venv" / "bin" / "python"
TASK_SIZE = {"shapes": 160, "coco128": 320, "vehicles": 320, "vehicles-fit": 320}
VEHICLE_IDS = [4, 3, 6, 8]  # COCO ids of motorcycle, car, bus, truck
# yolov5's side of the "best" recipe: the hyp.shapes.yaml choices it can express
PEER_BEST = {"lr0": 0.003, "lrf": 0.05, "momentum": 0.9, "warmup_epochs": 1.0, "warmup_bias_lr": 0.01,
             "hsv_s": 0.5, "hsv_v": 0.3, "scale": 0.3, "flipud": 0.5, "mosaic": 0.5}


# ------------------------------------------------------------------------------------------ data
def _coco_to_yolo(images_dir: Path, ann_json: Path, out: Path, split: str, cat_ids: list[int],
                  labelled_only: bool = False) -> int:
    """Write ``out/images/split/*.jpg`` (symlinks) and ``out/labels/split/*.txt`` for the images of
    ``ann_json`` that exist (``labelled_only``: and hold a box of ``cat_ids``); class = position of the
    category id in ``cat_ids``. Returns images written."""
    data = json.loads(ann_json.read_text())
    by_image: dict[int, list] = {}
    for a in data["annotations"]:
        if a["category_id"] in cat_ids and not a.get("iscrowd", 0):
            by_image.setdefault(a["image_id"], []).append(a)
    (out / "images" / split).mkdir(parents=True, exist_ok=True)
    (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    n = 0
    for im in data["images"]:
        src = images_dir / im["file_name"]
        if not src.exists() or (labelled_only and im["id"] not in by_image):
            continue
        link = out / "images" / split / im["file_name"]
        if not link.exists():
            link.symlink_to(src.resolve())
        lines = []
        for a in by_image.get(im["id"], []):
            x, y, w, h = a["bbox"]
            if w > 0 and h > 0:
                cx, cy = (x + w / 2) / im["width"], (y + h / 2) / im["height"]
                lines.append(f"{cat_ids.index(a['category_id'])} {cx:.6f} {cy:.6f} {w / im['width']:.6f} "
                             f"{h / im['height']:.6f}")
        (out / "labels" / split / (Path(im["file_name"]).stem + ".txt")).write_text("\n".join(lines) + "\n" * bool(lines))
        n += 1
    return n


def prepare_task(task: str, work: Path) -> Path:
    """Dataset YAML (absolute paths, read by both frameworks) of ``task``, written once."""
    root = work / "data" / task
    yaml_path = work / "data" / f"{task}.yaml"
    if yaml_path.exists():
        return yaml_path
    if task == "shapes":
        subprocess.run([sys.executable, str(ROOT / "data" / "scripts" / "make_shapes.py"), "--out", str(root)], check=True)
        names = ["circle", "square", "triangle", "star"]
    else:
        if not SHARED.is_dir():
            raise SystemExit(f"error: task {task} needs {SHARED} (absent)")
        coco = json.loads((SHARED / "coco128" / "annotations" / "instances_train2017.json").read_text())
        cats = sorted(coco["categories"], key=lambda c: c["id"])
        cat_ids = [c["id"] for c in cats] if task == "coco128" else VEHICLE_IDS
        names = [next(c["name"] for c in cats if c["id"] == i) for i in cat_ids]
        c128, mini = SHARED / "coco128", SHARED / "coco-mini"
        fit = task == "vehicles-fit"
        sources = [(c128, "train2017", "train"), (mini, "train2017", "train"), (mini, "val2017", "train" if fit else "val")]
        for folder, split, to in sources[:1] if task == "coco128" else sources:
            _coco_to_yolo(folder / "images" / split, folder / "annotations" / f"instances_{split}.json", root, to,
                          cat_ids, labelled_only=fit)
        if task in ("coco128", "vehicles-fit"):   # train = val
            (root / "images" / "val").symlink_to(root / "images" / "train")
            (root / "labels" / "val").symlink_to(root / "labels" / "train")
    yaml_path.write_text(yaml.safe_dump({"path": str(root), "format": "yolo", "train": "images/train",
                                         "val": "images/val", "names": names}, sort_keys=False))
    return yaml_path


# ------------------------------------------------------------------------------------------ cells
THREADS = {"n": 2}  # --threads: torch/OpenMP threads of every cell (both frameworks)


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    n = str(THREADS["n"])
    return {**os.environ, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "PYTHONHASHSEED": "0", **(extra or {})}


def _run(cmd: list[str], log: Path, extra_env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    with log.open("a") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=_env(extra_env), cwd=ROOT).returncode
    if rc:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {rc}; see {log}")
    return time.perf_counter() - t0


def _score(data: Path, predictions: Path, out: Path, log: Path) -> dict[str, float]:
    _run([sys.executable, "test.py", "--predictions", str(predictions), "--data", str(data), "--no-plots",
          "--project", str(out.parent), "--name", out.name, "--exist-ok"], log)
    m = json.loads((out / "metrics.json").read_text())
    return {"map50": m["map50"], "map": m["map"]}


def _column(csv: Path, name: str) -> list[float]:
    """One column of a results.csv (both frameworks write yolov5's column names)."""
    lines = csv.read_text().splitlines()
    head = [h.strip() for h in lines[0].split(",")]
    k = head.index(name)
    return [float(r.split(",")[k]) for r in lines[1:]]


def _curves(csv: Path) -> dict:
    """The per-epoch mAP@.5 and the last epoch's validation box loss (steadier than mAP at low mAP)."""
    return {"curve": _column(csv, "metrics/mAP_0.5"), "final_val_box_loss": _column(csv, "val/box_loss")[-1]}


def run_ours(cell: Path, data: Path, model: str, hyp: Path, a, seed: int, log: Path, recipe: str = "same") -> dict:
    """``model`` ``<name>@yolov5-data``: benchmarks/cross_data.py (our Trainer on yolov5's dataloader);
    ``<name>@peer-venv``: the same script's control (our Trainer and loader, run in the peer venv);
    ``<name>@yolov5-data+our-mosaic``: yolov5's loader with our mosaic + affine inside;
    ``<name>@peer-python``: plain train.py run by the peer venv's python (its package versions, no yolov5)."""
    model, _, data_path = model.partition("@")
    common = ["--cfg", str(model_cfg(model, cell)), "--data", str(data), "--hyp", str(hyp), "--epochs", str(a.epochs),
              "--img-size", str(a.size), "--batch-size", str(a.batch), "--seed", str(seed), "--project", str(cell),
              "--name", "train"]
    loaders = {"yolov5-data": "yolov5", "peer-venv": "ours", "yolov5-data+our-mosaic": "yolov5+our-mosaic"}
    if data_path in loaders:
        peer_h, _ = peer_hyp(recipe, a.work)
        loader = loaders[data_path]
        wall = _run([str(PEER), str(ROOT / "benchmarks" / "cross_data.py"), "ours", *common, "--peer-hyp", str(peer_h),
                     "--loader", loader], log, extra_env={"PYTHONPATH": str(ROOT)})
    elif data_path in ("", "peer-python"):   # plain train.py; @peer-python: the peer venv's python runs it
        python, env = (str(PEER), {"PYTHONPATH": str(ROOT)}) if data_path else (sys.executable, None)
        wall = _run([python, "train.py", *common, "--device", "cpu", "--exist-ok", "--quiet", "--patience", "0",
                     "--val-interval", "1"], log, extra_env=env)   # a curve point every epoch, as yolov5's
    else:
        raise ValueError(f"unknown data path {data_path!r} in --who (known: "
                         f"{', '.join('@' + k for k in (*loaders, 'peer-python'))})")
    out = {"wall_s": wall, **_curves(cell / "train" / "results.csv")}
    for which in ("best", "last"):
        _run([sys.executable, "test.py", "--weights", str(cell / "train" / "weights" / f"{which}.pt"), "--data", str(data),
              "--img-size", str(a.size), "--iou-thres", "0.6", "--save-json", "--no-plots", "--project", str(cell),
              "--name", f"pred_{which}", "--exist-ok"], log)
        out[which] = _score(data, cell / f"pred_{which}" / "predictions.json", cell / f"score_{which}", log)
    return out


def peer_hyp(recipe: str, work: Path) -> tuple[Path, list[str]]:
    """yolov5 hyp file and extra flags for ``recipe`` (its packaged scratch-low, edited for ``best``)."""
    pkg = subprocess.run([str(PEER), "-c", "import yolov5, os; print(os.path.dirname(yolov5.__file__))"],
                         capture_output=True, text=True, check=True, env=_env()).stdout.strip()
    src = Path(pkg) / "data" / "hyps" / "hyp.scratch-low.yaml"
    if recipe == "same":
        return src, []
    hyp = yaml.safe_load(src.read_text())
    hyp.update(PEER_BEST)
    path = work / "data" / "yolov5_hyp_best.yaml"
    path.write_text(yaml.safe_dump(hyp))
    return path, ["--optimizer", "Adam", "--cos-lr"]


def peer_predictions(yolov5_json: Path, data: Path) -> Path:
    """yolov5's COCO results (``category_id`` = class index) rewritten with this project's category ids
    for ``data`` (YOLO / VOC datasets: 1..nc; COCO JSON datasets: the file's own ids), which is what
    ``test.py --predictions`` matches against. Scoring the raw file would shift every class by one
    (class 0 dropped, class k scored as class k-1). Returns the new file beside the original."""
    from utils.data.config import load_data_config
    from utils.data.datasets import load_split
    ids = load_split(load_data_config(data), "val", cache=False).category_ids
    entries = json.loads(yolov5_json.read_text())
    for e in entries:
        e["category_id"] = ids[e["category_id"]]
    out = yolov5_json.with_name(yolov5_json.stem + "_category_ids.json")
    out.write_text(json.dumps(entries))
    return out


def score_peer(cell: Path, data: Path, which: str, log: Path) -> dict[str, float]:
    raw = cell / f"pred_{which}" / f"{which}_predictions.json"
    return _score(data, peer_predictions(raw, data), cell / f"score_{which}", log)


def run_peer(cell: Path, data: Path, recipe: str, a, seed: int, log: Path, data_path: str = "") -> dict:
    """``data_path`` ``ours-data``: benchmarks/cross_data.py peer (yolov5's train.py on our dataloader)."""
    if data_path not in ("", "ours-data"):
        raise ValueError(f"unknown data path {data_path!r} in --who (known: @ours-data)")
    hyp, flags = peer_hyp(recipe, a.work)
    driver = str(ROOT / "benchmarks" / "peer_yolov5.py")
    if data_path == "ours-data":
        if flags:
            raise ValueError("yolov5-yolov5n@ours-data runs the 'same' recipe only")
        wall = _run([str(PEER), str(ROOT / "benchmarks" / "cross_data.py"), "peer", "--data", str(data),
                     "--cfg", "yolov5n.yaml", "--hyp", str(ROOT / RECIPES[recipe]), "--peer-hyp", str(hyp),
                     "--epochs", str(a.epochs), "--img-size", str(a.size), "--batch-size", str(a.batch),
                     "--seed", str(seed), "--project", str(cell), "--name", "train"], log,
                    extra_env={"PYTHONPATH": str(ROOT)})
    else:
        wall = _run([str(PEER), driver, "train", "--data", str(data), "--cfg", "yolov5n.yaml", "--hyp", str(hyp),
                     "--epochs", str(a.epochs), "--img", str(a.size), "--batch", str(a.batch), "--seed", str(seed),
                     "--out", str(cell / "train"), *flags], log)
    out = {"wall_s": wall, **_curves(cell / "train" / "results.csv")}
    for which in ("best", "last"):
        _run([str(PEER), driver, "val", "--data", str(data), "--weights", str(cell / "train" / "weights" / f"{which}.pt"),
              "--img", str(a.size), "--out", str(cell / f"pred_{which}")], log)
        out[which] = score_peer(cell, data, which, log)
    return out


def load_cell(done: Path) -> dict:
    """A finished cell; cells written before ``final_val_box_loss`` existed get it from their results.csv."""
    c = json.loads(done.read_text())
    csv = done.parent / "train" / "results.csv"
    if "final_val_box_loss" not in c and csv.exists():
        c["final_val_box_loss"] = _curves(csv)["final_val_box_loss"]
    return c


def rescore_peer_cells(work: Path) -> None:
    """Score every finished yolov5 cell's saved predictions again (cells scored before the category-id
    fix in :func:`peer_predictions` carry class-shifted figures)."""
    for done in sorted(work.glob("*/*/yolov5-*/seed*/cell.json")):
        cell, c = done.parent, json.loads(done.read_text())
        data = work / "data" / f"{c['task']}.yaml"
        for which in ("best", "last"):
            c[which] = score_peer(cell, data, which, cell / "log.txt")
        done.write_text(json.dumps(c, indent=1))
        print(f"rescored {cell}: best mAP@.5 {c['best']['map50']:.3f}  final {c['last']['map50']:.3f}", flush=True)


RECIPES = {"same": "configs/hyp.scratch.yaml", "best": "configs/hyp.shapes.yaml"}


def run_cell(a, task: str, recipe: str, who: str, seed: int) -> dict:
    cell = a.work / task / recipe / who / f"seed{seed}"
    done = cell / "cell.json"
    if done.exists():
        return json.loads(done.read_text())
    cell.mkdir(parents=True, exist_ok=True)
    data = prepare_task(task, a.work)
    log = cell / "log.txt"
    print(f"[{time.strftime('%H:%M:%S')}] {task} / {recipe} / {who} / seed {seed} ...", flush=True)
    if who.startswith("yolov5-yolov5n"):
        out = run_peer(cell, data, recipe, a, seed, log, who.partition("@")[2])
    else:
        out = run_ours(cell, data, who.split("-", 1)[1], ROOT / RECIPES[recipe], a, seed, log, recipe)
    out.update(task=task, recipe=recipe, who=who, seed=seed, epochs=a.epochs, img_size=a.size, batch=a.batch)
    done.write_text(json.dumps(out, indent=1))
    print(f"    best mAP@.5 {out['best']['map50']:.3f}  final {out['last']['map50']:.3f}  {out['wall_s']:.0f} s", flush=True)
    return out


# ------------------------------------------------------------------------------------------ report
def _peer_versions() -> str:
    """The peer venv's torch, yolov5 and OpenCV, or why they are missing."""
    if not PEER.exists():
        return "no peer venv"
    code = "import cv2, torch, yolov5; print(torch.__version__, yolov5.__version__, cv2.__version__)"
    peer = subprocess.run([str(PEER), "-c", code], capture_output=True, text=True, env=_env()).stdout.split()
    if len(peer) != 3:
        return f"peer venv {PEER} did not report torch/yolov5/OpenCV"
    return f"torch {peer[0]} + yolov5 {peer[1]} + OpenCV {peer[2]} ({PEER.parents[1].name})"


def _versions() -> str:
    """torch and OpenCV of both venvs (the OpenCV build alone moves a 30-epoch run to another trajectory)."""
    import cv2
    import torch
    return (f"torch {torch.__version__} + OpenCV {cv2.__version__} (ours), {_peer_versions()}, "
            f"Python {platform.python_version()}")


def report(cells: list[dict], probes: list[float], header: str) -> str:
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        groups.setdefault((c["task"], c["recipe"], c["who"]), []).append(c)
    lines = [header, "", "| task | recipe | framework / model | seeds | best mAP@.5 mean (min) | best mAP@.5 sd "
             "| final mAP@.5 mean (min) | best mAP@.5:.95 mean (min) | final mAP@.5:.95 mean (min) "
             "| final val box loss mean (sd) | wall s mean |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (task, recipe, who), cs in sorted(groups.items()):
        def cell(which: str, key: str) -> str:
            v = [c[which][key] for c in cs]
            return f"{statistics.mean(v):.3f} ({min(v):.3f})"
        seeds = ",".join(str(c["seed"]) for c in sorted(cs, key=lambda c: c["seed"]))
        best = [c["best"]["map50"] for c in cs]
        sd = f"{statistics.stdev(best):.3f}" if len(best) > 1 else "-"
        vbox = [c["final_val_box_loss"] for c in cs if "final_val_box_loss" in c]   # cells before it: none
        vb = (f"{statistics.mean(vbox):.4f} ({statistics.stdev(vbox):.4f})" if len(vbox) > 1
              else f"{vbox[0]:.4f}" if vbox else "-")
        lines.append(f"| {task} | {recipe} | {who} | {seeds} | {cell('best', 'map50')} | {sd} | {cell('last', 'map50')} | "
                     f"{cell('best', 'map')} | {cell('last', 'map')} | {vb} | {statistics.mean(c['wall_s'] for c in cs):.0f} |")
    if probes:
        lines.append(f"\nfp32 2048x2048 matmul probe: {', '.join(f'{p:.0f}' for p in probes)} GFLOP/s (start, end)")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["shapes"], choices=sorted(TASK_SIZE))
    ap.add_argument("--recipes", nargs="+", default=["same"], choices=sorted(RECIPES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--who", nargs="+", default=["ours-yolov4_n", "ours-yolov5n_layout", "yolov5-yolov5n"],
                    help="cells: ours-<model>[@yolov5-data | @peer-venv | @peer-python | "
                         "@yolov5-data+our-mosaic] and/or yolov5-yolov5n[@ours-data]; the @ forms swap "
                         "dataloaders or venvs (benchmarks/cross_data.py, run_ours / run_peer docstrings); <model>: "
                         "a configs/ or benchmarks/configs/ YAML name, or a VARIANTS entry (e.g. yolov4_n_eps3)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--img-size", type=int, default=None, help="default per task: shapes 160, COCO tasks 320")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of every cell (1 leaves a core free)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_learning")
    ap.add_argument("--report", type=Path, default=None, help="also write the markdown report here")
    ap.add_argument("--peer-python", type=Path, default=PEER,
                    help="the python of the yolov5 venv (default %(default)s); another venv compares package sets")
    ap.add_argument("--report-only", action="store_true", help="only tabulate the finished cells under --work")
    ap.add_argument("--rescore-peer", action="store_true",
                    help="score the saved yolov5 predictions of every finished peer cell again (no training)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    global PEER
    a = parse_args(argv)
    a.work = a.work.resolve()
    THREADS["n"] = a.threads
    PEER = a.peer_python
    if any(w.startswith("yolov5") or "@" in w for w in a.who) and not PEER.exists() and not a.report_only:
        print(f"error: no peer venv at {PEER} (set it up as ../shared/bench/peer_bench.py says)", file=sys.stderr)
        return 2
    models = {w.split("-", 1)[1].partition("@")[0] for w in a.who if w.startswith("ours-")}
    unknown = sorted(m for m in models if model_file(m) is None and m not in VARIANTS)
    if unknown and not a.report_only:
        print(f"error: --who ours-{unknown[0]}: no configs/{unknown[0]}.yaml, benchmarks/configs/{unknown[0]}.yaml "
              f"or variant ({', '.join(VARIANTS)})", file=sys.stderr)
        return 2
    from machine_probe import cpu_name, matmul_probe
    probes, cells = [], []
    if a.rescore_peer:
        rescore_peer_cells(a.work)
    if not a.report_only:
        probes.append(matmul_probe(threads=2))
        for task in a.tasks:
            a.size = a.img_size or TASK_SIZE[task]
            for recipe in a.recipes:
                for seed in a.seeds:
                    for who in a.who:
                        run_cell(a, task, recipe, who, seed)
        probes.append(matmul_probe(threads=2))
    cells = [load_cell(p) for p in sorted(a.work.glob("*/*/*/seed*/cell.json"))]
    header = (f"Learning benchmark, {time.strftime('%Y-%m-%d')}, {cpu_name()}, "
              f"{os.cpu_count()} cores; {_versions()}")
    text = report(cells, probes, header)
    print(text)
    if a.report:
        a.report.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
