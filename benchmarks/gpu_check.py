"""The Python pieces of benchmarks/gpu_check.sh: one subcommand per section, each writing
``<out>/<section>.json`` (``status``: ``ok`` | ``skipped: why`` | ``failed: why``, plus what it
measured) and exiting 1 when it failed. ``summary`` joins them (gpu_summary.py).

    python benchmarks/gpu_check.py env --out OUT [--dry-run]
    python benchmarks/gpu_check.py data --out OUT [--source YAML|DIR] [--shapes 400 100]
    python benchmarks/gpu_check.py tests --out OUT --junit X [--dry-run]
    python benchmarks/gpu_check.py train-check --out OUT --run-dir D --epochs N [--dry-run]
    python benchmarks/gpu_check.py test-check --out OUT --run-dir D
    python benchmarks/gpu_check.py detect-check --out OUT --run-dir D --list L --log F [--dry-run]
    python benchmarks/gpu_check.py compile|throughput|latency|yolov5 --out OUT ... (gpu_sections.py)
    python benchmarks/gpu_check.py summary --out OUT [--dry-run]
"""
from __future__ import annotations

import argparse
import csv
import datetime
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

LOSS_COLUMNS = ("train/box_loss", "train/obj_loss", "train/cls_loss")
TRAIN_MODELS = ["yolov4_n", "yolov4_s", "yolov4_resnet50", "yolov4_l", "yolov4_csp_darknet53"]
AMP_NAMES = ("fp16", "bf16", "fp32")           # gpu_bench.AMPS
YOLOV5_MISSING = "skipped: yolov5 not installed"


def write_section(out: Path, name: str, status: str, **data: Any) -> int:
    """``<out>/<name>.json`` with the status first; returns the exit code (1 when it failed)."""
    (out / f"{name}.json").write_text(json.dumps({"section": name, "status": status, **data}, indent=1,
                                                 default=str, allow_nan=True))
    print(f"{name}: {status}", file=sys.stderr)
    return 1 if status.startswith("failed") else 0


def verdict(problems: list[str]) -> str:
    return "ok" if not problems else "failed: " + "; ".join(problems)


# ------------------------------------------------------------------------------------ sections
def cmd_env(a: argparse.Namespace) -> int:
    import torch
    info: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpus": os.cpu_count(), "platform": platform.platform(), "dry_run": a.dry_run,
        "yolov5_installed": importlib.util.find_spec("yolov5") is not None,
        "pycocotools_installed": importlib.util.find_spec("pycocotools") is not None}
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                            timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_memory_gib=p.total_memory / 2 ** 30, capability=f"{p.major}.{p.minor}",
                    multiprocessors=p.multi_processor_count)
        try:
            info["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
                 "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError) as err:
            info["nvidia_smi"] = f"unavailable: {err}"
    status = "ok" if a.dry_run or torch.cuda.is_available() else "failed: torch sees no CUDA device"
    return write_section(a.out, "env", status, **info)


def dataset_yaml(a: argparse.Namespace) -> dict[str, Any]:
    """The dataset the check trains on, as a YAML dict with an absolute ``path`` and no ``download``:
    ``--source`` a dataset YAML, a COCO128-layout folder (``images/train2017`` +
    ``annotations/instances_train2017.json``, train = val), or nothing: the shapes set generated
    (``--shapes`` train/val images) under ``<out>/data/shapes``."""
    from utils.config import ConfigError, read_yaml
    src = a.source
    if src is None:
        shapes = a.out / "data" / "shapes"
        subprocess.run([sys.executable, str(ROOT / "data" / "scripts" / "make_shapes.py"), "--out", str(shapes),
                        "--train", str(a.shapes[0]), "--val", str(a.shapes[1])], check=True, timeout=300)
        d = read_yaml(ROOT / "data" / "shapes.yaml", "dataset YAML")
        return {**d, "path": str(shapes), "download": None}
    if src.is_dir():
        ann = "annotations/instances_train2017.json"
        if not (src / ann).is_file():
            raise ConfigError(f"--data {src}: a folder must hold {ann} and images/train2017 (COCO128 layout)")
        return {"path": str(src.resolve()), "format": "coco", "train": "images/train2017", "val": "images/train2017",
                "train_annotations": ann, "val_annotations": ann}
    d = read_yaml(src, "dataset YAML")
    if not isinstance(d, dict):
        raise ConfigError(f"--data {src}: not a dataset YAML (a mapping of keys)")
    root = Path(d.get("path") or ".")
    return {**d, "path": str(root if root.is_absolute() else (src.resolve().parent / root).resolve()), "download": None}


def cmd_data(a: argparse.Namespace) -> int:
    """Write ``<out>/data/dataset.yaml``, load and verify both splits (cache under ``<out>/data``)
    and write the val image list that detect.py reads."""
    import yaml

    from utils.data.config import ensure_dataset, load_data_config
    from utils.data.datasets import load_split
    (a.out / "data").mkdir(parents=True, exist_ok=True)
    path = a.out / "data" / "dataset.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in dataset_yaml(a).items() if v is not None}, sort_keys=False))
    cfg = load_data_config(path)
    ensure_dataset(cfg, download=False)
    cache = a.out / "data" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    train, val = (load_split(cfg, s, cache_dir=cache) for s in ("train", "val"))
    listing = a.out / "data" / "val_images.txt"
    listing.write_text("".join(f"{r.path}\n" for r in val.records))
    boxes = sum(len(r) for r in train.records)
    status = "ok" if len(train) and boxes else f"failed: train split of {path} has {len(train)} images, {boxes} boxes"
    return write_section(a.out, "data", status, source=str(a.source or "shapes (generated)"), yaml=str(path),
                         root=str(cfg.root), nc=len(train.names), train_images=len(train), val_images=len(val),
                         train_boxes=boxes, val_list=str(listing))


def cmd_tests(a: argparse.Namespace) -> int:
    """Counts of the ``pytest -m cuda`` JUnit report. On a GPU every selected test must run and
    pass (a skip there means a CUDA path went untested); in a dry run they must all skip cleanly."""
    if not a.junit.is_file():
        return write_section(a.out, "cuda_tests", f"failed: no JUnit report {a.junit} (pytest did not finish)")
    cases = ET.parse(a.junit).getroot().iter("testcase")
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    names: dict[str, list[str]] = {k: [] for k in counts}
    for case in cases:
        kind = "failed" if case.find("failure") is not None or case.find("error") is not None else \
            "skipped" if case.find("skipped") is not None else "passed"
        counts[kind] += 1
        names[kind].append(f"{case.get('classname')}::{case.get('name')}")
    total = sum(counts.values())
    problems = [f"{counts['failed']} failed"] if counts["failed"] else []
    if total == 0:
        problems.append("no test is marked cuda")
    elif not a.dry_run and counts["skipped"]:
        problems.append(f"{counts['skipped']} skipped on the GPU machine")
    elif a.dry_run and counts["passed"]:
        problems.append(f"{counts['passed']} ran without CUDA (should skip)")
    return write_section(a.out, "cuda_tests", verdict(problems), **counts, tests=names)


def read_results(path: Path) -> list[dict[str, float]]:
    with path.open(newline="") as f:
        return [{k.strip(): float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def cmd_train_check(a: argparse.Namespace) -> int:
    """last.pt/best.pt load with weights_only; results.csv has one row per epoch; the summed train
    loss of the last epoch is below the first's (required on the GPU; recorded in a dry run)."""
    from utils.train.checkpoint import load_checkpoint
    problems, found = [], {}
    for name in ("last.pt", "best.pt"):
        path = a.run_dir / "weights" / name
        try:
            found[name] = load_checkpoint(path).get("epoch")
        except Exception as err:  # CheckpointError, or anything a damaged file raises
            problems.append(f"{name}: {err}")
    csv_path = a.run_dir / "results.csv"
    rows = read_results(csv_path) if csv_path.is_file() else []
    if len(rows) != a.epochs:
        problems.append(f"{csv_path} has {len(rows)} rows, expected {a.epochs}")
    losses = [sum(r[c] for c in LOSS_COLUMNS) for r in rows]
    lowered = len(losses) >= 2 and losses[-1] < losses[0]
    if not a.dry_run and not lowered:
        problems.append(f"train loss did not fall over the epochs: {losses}")
    best = max(rows, key=lambda r: 0.1 * r["metrics/mAP_0.5"] + 0.9 * r["metrics/mAP_0.5:0.95"]) if rows else {}
    return write_section(a.out, "train", verdict(problems), checkpoints_epoch=found, train_loss_per_epoch=losses,
                         loss_lowered=lowered, last_map50=rows[-1]["metrics/mAP_0.5"] if rows else None,
                         best_epoch_map=best.get("metrics/mAP_0.5:0.95"), run_dir=str(a.run_dir))


def cmd_test_check(a: argparse.Namespace) -> int:
    """metrics.json written, mAP finite and, where pycocotools ran (COCO data), equal to its AP."""
    path = a.run_dir / "metrics.json"
    if not path.is_file():
        return write_section(a.out, "test", f"failed: {path} not written")
    m = json.loads(path.read_text())
    problems = [f"mAP {m.get('map')} not finite"] if not math.isfinite(float(m.get("map", math.nan))) else []
    coco = m.get("coco_stats") or {}
    if coco and abs(coco.get("AP", math.nan) - m["map"]) > 1e-4:
        problems.append(f"mAP {m['map']} != pycocotools AP {coco.get('AP')}")
    return write_section(a.out, "test", verdict(problems), map=m.get("map"), map50=m.get("map50"),
                         pycocotools_ap=coco.get("AP"), images=m.get("images"), speed_ms_per_image=m.get("speed_ms_per_image"))


def cmd_detect_check(a: argparse.Namespace) -> int:
    """One label file per listed image; on a GPU the speed line must say fp16 (``--half`` ran)."""
    images = [line for line in a.list.read_text().splitlines() if line.strip()]
    labels = list((a.run_dir / "labels").glob("*.txt"))
    log = a.log.read_text(errors="replace") if a.log.is_file() else ""
    speed = next((line for line in log.splitlines() if line.startswith("Speed:")), "")
    problems = [] if len(labels) == len(images) else [f"{len(labels)} label files for {len(images)} images"]
    if not a.dry_run and ", fp16" not in speed:
        problems.append(f"detect.py did not run fp16: {speed or 'no Speed line'}")
    n_boxes = sum(len(p.read_text().splitlines()) for p in labels)
    return write_section(a.out, "detect", verdict(problems), images=len(images), label_files=len(labels),
                         boxes=n_boxes, speed=speed)


# ----------------------------------------------------------------------------------------- CLI
def add_timing_commands(sub, common: argparse.ArgumentParser) -> None:
    timed = argparse.ArgumentParser(add_help=False)
    timed.add_argument("--device", default="cuda", help="cuda or cpu (dry run)")
    timed.add_argument("--size", type=int, default=640)
    timed.add_argument("--warmup", type=int, default=3, help="untimed steps / forwards per cell")
    timed.add_argument("--steps", type=int, default=10, help="timed steps / forwards per cell")
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--yaml", type=Path, required=True, help="dataset YAML (mosaic batches, loader cells)")
    data.add_argument("--hyp", type=Path, default=ROOT / "configs" / "hyp.scratch.yaml")
    grid = argparse.ArgumentParser(add_help=False)
    grid.add_argument("--batches", type=int, nargs="+", default=[16, 64])
    grid.add_argument("--amps", nargs="+", choices=tuple(AMP_NAMES), default=["fp16", "bf16"])
    grid.add_argument("--layouts", nargs="+", choices=("cl", "nchw"), default=["cl", "nchw"])
    grid.add_argument("--budget-s", type=float, default=150.0, help="cells predicted to end later are skipped")
    p = sub.add_parser("compile", parents=[common, timed, data])
    p.add_argument("--model", default="yolov4_s")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--amp", choices=tuple(AMP_NAMES), default="fp16")
    p.add_argument("--backend", default="inductor", help="torch.compile backend (dry run: eager)")
    p = sub.add_parser("throughput", parents=[common, timed, data, grid])
    p.add_argument("--models", nargs="+", default=TRAIN_MODELS)
    p.add_argument("--loader-batches", type=int, nargs="*", default=[16, 64], help="batches with a live-loader cell")
    p.add_argument("--workers", type=int, default=16, help="loader processes of the live-loader cells")
    p.add_argument("--lead", default="yolov4_l", help="the model whose pass-2 cells run first")
    p = sub.add_parser("latency", parents=[common, timed])
    p.add_argument("--models", nargs="+", default=TRAIN_MODELS)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--nc", type=int, default=80)
    p = sub.add_parser("yolov5", parents=[common, timed, data, grid])
    p.add_argument("--model", default="yolov5l", help="a model YAML of the yolov5 package")
    p.add_argument("--anchor", default="yolov4_l", help="our model the ratio is taken against")
    p.add_argument("--latency-batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--nc", type=int, default=80, help="classes of the latency model (as the latency section)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, required=True, help="the check's output folder")
    common.add_argument("--dry-run", action="store_true", help="CPU rehearsal: relaxed GPU-only checks")
    sub.add_parser("env", parents=[common])
    p = sub.add_parser("data", parents=[common])
    p.add_argument("--source", type=Path, help="dataset YAML or COCO128-layout folder (default: generated shapes)")
    p.add_argument("--shapes", type=int, nargs=2, default=[400, 100], metavar=("TRAIN", "VAL"))
    sub.add_parser("tests", parents=[common]).add_argument("--junit", type=Path, required=True)
    p = sub.add_parser("train-check", parents=[common])
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--epochs", type=int, required=True)
    sub.add_parser("test-check", parents=[common]).add_argument("--run-dir", type=Path, required=True)
    p = sub.add_parser("detect-check", parents=[common])
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--list", type=Path, required=True, help="the image list detect.py read")
    p.add_argument("--log", type=Path, required=True, help="detect.py's log")
    add_timing_commands(sub, common)
    sub.add_parser("summary", parents=[common])
    return ap.parse_args(argv)


SECTION_OF = {"tests": "cuda_tests", "train-check": "train", "test-check": "test", "detect-check": "detect"}


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.cmd == "summary":
        from gpu_summary import summarize
        return summarize(a.out, a.dry_run)
    if a.cmd == "yolov5" and importlib.util.find_spec("yolov5") is None:   # known without importing torch
        return write_section(a.out, "yolov5", YOLOV5_MISSING)
    try:
        if a.cmd in ("compile", "throughput", "latency", "yolov5"):
            from gpu_sections import run_timing_command
            return run_timing_command(a, write_section)
        return {"env": cmd_env, "data": cmd_data, "tests": cmd_tests, "train-check": cmd_train_check,
                "test-check": cmd_test_check, "detect-check": cmd_detect_check}[a.cmd](a)
    except Exception as err:  # the section failed; its traceback stays in its log, the others still run
        traceback.print_exc()
        return write_section(a.out, SECTION_OF.get(a.cmd, a.cmd), f"failed: {type(err).__name__}: {err}")


if __name__ == "__main__":
    sys.exit(main())
