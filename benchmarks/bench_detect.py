"""detect.py throughput: images/s end to end (read, letterbox, fused model, NMS, draw, write) on
real coco128 images, for a few configs with random weights (nc=4). CPU by default, CUDA if asked.

    python benchmarks/bench_detect.py [--configs yolov4_s yolov4_l] [--images 32] [--img-size 640]
"""
from __future__ import annotations

import argparse
import datetime
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from models.yolo import Model
from utils.train.checkpoint import save_checkpoint
from machine_probe import cpu_name  # same folder (run as a script)

COCO128 = ROOT.parent / "shared" / "datasets" / "coco128" / "images" / "train2017"


def run(config: str, images: list[Path], img_size: int, device: str, tmp: Path) -> dict:
    model = Model(ROOT / "configs" / f"{config}.yaml", nc=4)
    ckpt = tmp / f"{config}.pt"
    save_checkpoint({"epoch": 0, "model_cfg": model.yaml, "names": ["motorcycle", "car", "bus", "truck"],
                     "category_ids": [4, 3, 6, 8], "model": model.state_dict(), "ema": None}, ckpt)
    listing = tmp / "images.txt"
    listing.write_text("\n".join(map(str, images)) + "\n")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "detect.py", "--weights", str(ckpt), "--source", str(listing),
                           "--img-size", str(img_size), "--device", device, "--project", str(tmp / "runs"),
                           "--save-txt"], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    speed = re.search(r"Speed.*", proc.stdout + proc.stderr)
    return {"config": config, "images": len(images), "wall_s": wall, "img_per_s": len(images) / wall,
            "speed": speed.group(0) if speed else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["yolov4_n", "yolov4_s", "yolov4_l"])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--img-size", type=int, default=640)
    ap.add_argument("--device", default="cpu")
    opt = ap.parse_args()
    if not COCO128.is_dir():
        raise SystemExit(f"{COCO128} not found")
    images = sorted(COCO128.glob("*.jpg"))[:opt.images]
    print(f"## detect.py throughput, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"- machine: {cpu_name()}, device {opt.device}; {len(images)} coco128 images at --img-size {opt.img_size}; "
          f"wall time includes process start and model load\n")
    print("| config | images | wall s | images/s (end to end) | detect.py per-image speed line |")
    print("|---|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as d:
        for config in opt.configs:
            r = run(config, images, opt.img_size, opt.device, Path(d))
            print(f"| {r['config']} | {r['images']} | {r['wall_s']:.1f} | {r['img_per_s']:.2f} | {r['speed']} |")


if __name__ == "__main__":
    main()
