#!/usr/bin/env bash
# Download MS-COCO 2017 detection (train2017 + val2017 images, instances annotations) from the
# official site (images.cocodataset.org) into the dataset root, in the layout data/coco.yaml expects:
#   <root>/images/train2017/*.jpg  <root>/images/val2017/*.jpg  <root>/annotations/instances_*2017.json
# Usage: bash data/scripts/get_coco.sh [root]   (default: <repo>/datasets/coco)
# Needs internet, curl and unzip; ~19 GB download, ~20 GB on disk. Never run by the tests.
set -euo pipefail

ROOT="${1:-$(cd "$(dirname "$0")/../.." && pwd)/datasets/coco}"
BASE="http://images.cocodataset.org"
mkdir -p "$ROOT/images"
cd "$ROOT"

fetch() {  # fetch URL DEST_DIR: download (resumable) and unzip into DEST_DIR, then remove the zip
  local url="$1" dest="$2" zip
  zip="$(basename "$url")"
  echo "downloading $url"
  curl -L --fail --retry 3 -C - -o "$zip" "$url"
  unzip -q -o "$zip" -d "$dest"
  rm -f "$zip"
}

fetch "$BASE/annotations/annotations_trainval2017.zip" .   # -> annotations/instances_{train,val}2017.json
fetch "$BASE/zips/val2017.zip" images                      # -> images/val2017  (5k images, 1 GB)
fetch "$BASE/zips/train2017.zip" images                    # -> images/train2017 (118k images, 18 GB)
echo "COCO 2017 ready in $ROOT"
