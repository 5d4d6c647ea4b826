#!/usr/bin/env bash
# Wheels the GPU machine lacks for benchmarks/gpu_check.sh, downloaded HERE into .whl/ (ignored by
# git) and carried to it (it has no package registry). Run from the repository root:
#   bash benchmarks/gpu_wheels.sh            # then carry .whl (and datasets/coco128 for --data)
# Not run yet: no GPU has been lent to this work (issue 14).
#
# The machine (the device tool's KINDS.md, nvidia-h200): Python 3.12, torch 2.11, torchvision,
# numpy, opencv-python-headless, matplotlib, seaborn, pandas, scipy, psutil, requests, pillow,
# pyyaml, tqdm -- but no pycocotools (test.py's COCOeval on COCO data) and no yolov5. Importing
# yolov5 7.0.14's models and loss needs, beyond that list, ultralytics (yolov5.utils imports it),
# thop and ultralytics-thop (model summaries), and pkg_resources, which setuptools >= 81 no longer
# ships (hence setuptools 80). Versions: those of the yolov5 set-up that peer_bench.py documents.
# All are pure-Python wheels except pycocotools (cp312 manylinux). --no-deps everywhere: each
# dependency is named here, and the machine's own packages are not replaced.
#
# On the GPU machine, as the first part of the device command:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
#     .whl/*.whl && export PYTHONPATH=/tmp/site || exit
set -euo pipefail
cd "$(dirname "$0")/.."
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
WHEELS=(pycocotools==2.0.11 yolov5==7.0.14 ultralytics==8.4.190 ultralytics-thop==2.2.3
        thop==0.1.1.post2209072238 setuptools==80.10.2)
mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}" \
  -d .whl "${WHEELS[@]}"
ls -l .whl
du -sh .whl    # the working tree plus carried paths must stay under 64 MiB a call
