#!/usr/bin/env bash
# Download PASCAL VOC 2007 (trainval + test) and VOC 2012 (trainval) from the official host into
# the layout data/voc.yaml expects:
#   <root>/VOC2007/{Annotations,ImageSets,JPEGImages}  <root>/VOC2012/{...}
# where <root> is the VOCdevkit folder.
# Usage: bash data/scripts/get_voc.sh [root]   (default: <repo>/datasets/VOC/VOCdevkit)
# Needs internet, curl and tar; ~3.6 GB download. Never run by the tests.
set -euo pipefail

ROOT="${1:-$(cd "$(dirname "$0")/../.." && pwd)/datasets/VOC/VOCdevkit}"
BASE="http://host.robots.ox.ac.uk/pascal/VOC"
PARENT="$(dirname "$ROOT")"   # the archives unpack into VOCdevkit/
mkdir -p "$PARENT"
cd "$PARENT"

for url in "$BASE/voc2007/VOCtrainval_06-Nov-2007.tar" \
           "$BASE/voc2007/VOCtest_06-Nov-2007.tar" \
           "$BASE/voc2012/VOCtrainval_11-May-2012.tar"; do
  tarball="$(basename "$url")"
  echo "downloading $url"
  curl -L --fail --retry 3 -C - -o "$tarball" "$url"
  tar -xf "$tarball"
  rm -f "$tarball"
done
if [ "$(basename "$ROOT")" != "VOCdevkit" ]; then mv VOCdevkit "$ROOT"; fi
echo "VOC ready in $ROOT"
