#!/usr/bin/env bash
# GPU check (issue 14): one command that runs the CUDA tests, a short real training, test.py and
# detect.py --half on its checkpoint, torch.compile on/off, the training-throughput grid, fused
# inference latency and yolov5l under the same settings, writing everything under OUTDIR:
#   OUTDIR/summary.md, summary.json   every section's status, seconds and figures
#   OUTDIR/<section>.json             what each section measured;  OUTDIR/logs/<section>.log
#   OUTDIR/train/exp, test/exp, detect/exp   the runs (weights, results.csv, metrics.json, labels)
#
#   benchmarks/gpu_check.sh OUTDIR [--data YAML|DIR] [--hyp YAML] [--dry-run]
#
# --data: a dataset YAML (e.g. data/coco128.yaml with datasets/coco128 present) or a COCO128-layout
#   folder; without it the shapes set is generated under OUTDIR (no files needed). --hyp defaults to
#   configs/hyp.scratch.yaml for --data, configs/hyp.shapes.yaml for shapes.
# --dry-run: every section on the CPU at tiny sizes (yolov4_n, 64 px, batch 2, 1-2 steps, 1 epoch on
#   8 shapes images), with the GPU-only checks relaxed; tests/test_gpu_check.py runs it.
# Sections run in order, each under its own time box (clipped so that the whole run ends within
# 8 minutes) and in its own process: a failing or killed section is logged and the rest still run.
# Exit code: 0 when every section passed (a dry run may skip yolov5 when it is not installed), else 1.
#
# On the GPU machine (no registry there): wheels from benchmarks/gpu_wheels.sh in .whl/, carried with
# the dataset, then, as one device command (carry: .whl datasets/coco128):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
#     .whl/*.whl && export PYTHONPATH=/tmp/site || exit; bash benchmarks/gpu_check.sh $OUT/gpu --data data/coco128.yaml
set -u -o pipefail

usage() { echo "${1:+error: $1; }usage: $0 OUTDIR [--data YAML|DIR] [--hyp YAML] [--dry-run]" >&2; exit 2; }
[ $# -ge 1 ] || usage
OUTARG=$1; shift
DRY=0; DATA=; HYP=
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) DRY=1 ;;
    --data) [ $# -ge 2 ] || usage "--data needs a value"; DATA=$2; shift ;;
    --hyp) [ $# -ge 2 ] || usage "--hyp needs a value"; HYP=$2; shift ;;
    *) usage "unknown argument $1" ;;
  esac
  shift
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
absolute() {  # FLAG PATH: PATH made absolute, or one error line and exit 2 when it does not exist
  [ -e "$2" ] || { echo "error: $1 $2: no such file or folder" >&2; exit 2; }
  echo "$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
}
if [ -n "$DATA" ]; then DATA=$(absolute --data "$DATA") || exit 2; fi
if [ -n "$HYP" ]; then HYP=$(absolute --hyp "$HYP") || exit 2; fi
mkdir -p "$OUTARG/logs" || exit 2
OUT=$(cd "$OUTARG" && pwd)
cd "$ROOT" || exit 2
: > "$OUT/sections.tsv"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
[ -n "$HYP" ] || { [ -n "$DATA" ] && HYP=configs/hyp.scratch.yaml || HYP=configs/hyp.shapes.yaml; }
DATA_YAML=$OUT/data/dataset.yaml
export PYTHONUNBUFFERED=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # utils/ and models/ for the benchmark scripts (no project install there)

if [ "$DRY" = 1 ]; then        # tiny CPU rehearsal of every section
  BUDGET=900; DEV=cpu; TDEV=cpu; FLAG=--dry-run; SHAPES="8 4"
  TRAIN=(--cfg configs/yolov4_n.yaml --img-size 64 --epochs 1 --batch-size 2 --workers 0 --amp bf16)
  SIZE=64; WORKERS=0; EPOCHS=1; STEPS=(--warmup 1 --steps 1); MODELS=(yolov4_n); BATCHES=(2)
  COMPILE=(--model yolov4_n --batch 2 --backend eager); LOADER=(--loader-batches 2 --workers 1)
  LATENCY=(--batches 1 2 --warmup 1 --steps 2); PEER_LATENCY=(--latency-batches 1 2)
  BOX_ENV=60; BOX_DATA=90; BOX_TESTS=150; BOX_TRAIN=180; BOX_TEST=90; BOX_DETECT=90   # roomy: busy CI cores
  BOX_THROUGHPUT=150; BOX_LATENCY=90; BOX_YOLOV5=90; BOX_COMPILE=150; ANCHOR=yolov4_n
else                           # one H100/H200: the whole run within 8 minutes
  BUDGET=465; DEV=0; TDEV=cuda; FLAG=; SHAPES="400 100"
  TRAIN=(--cfg configs/yolov4_s.yaml --img-size 640 --epochs 3 --batch-size 16 --workers 16 --amp fp16)
  SIZE=640; WORKERS=16; EPOCHS=3; STEPS=(--warmup 3 --steps 10)
  MODELS=(yolov4_n yolov4_s yolov4_resnet50 yolov4_l yolov4_csp_darknet53); BATCHES=(16 64)
  COMPILE=(--model yolov4_s --batch 16 --backend inductor); LOADER=(--loader-batches 16 64 --workers 16)
  LATENCY=(--batches 1 32 --warmup 10 --steps 30); PEER_LATENCY=(--latency-batches 1 32)
  BOX_ENV=30; BOX_DATA=45; BOX_TESTS=90; BOX_TRAIN=150; BOX_TEST=45; BOX_DETECT=45
  BOX_THROUGHPUT=160; BOX_LATENCY=45; BOX_YOLOV5=80; BOX_COMPILE=120; ANCHOR=yolov4_l
fi
CHECK=("$PYTHON" benchmarks/gpu_check.py)
RUN=$OUT/train/exp
START=$SECONDS
echo "$0 $OUTARG ${DATA:+--data $DATA} --hyp $HYP $FLAG" > "$OUT/command.txt"

section() {  # NAME BOX FUNCTION: run FUNCTION under min(BOX, time left), log it, record the outcome
  local name=$1 box=$2 fn=$3 left t0 rc
  left=$(( BUDGET - (SECONDS - START) ))
  (( box > left )) && box=$left
  if (( box < 5 )); then
    printf '%s\t125\t0\t0\n' "$name" >> "$OUT/sections.tsv"; echo "== $name: no time left" >&2; return
  fi
  echo "== $name (time box ${box} s)" >&2
  t0=$SECONDS
  BOX=$box timeout -k 10 "$box" bash -c "source '$VARS'; $fn" > "$OUT/logs/$name.log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" $(( SECONDS - t0 )) "$box" >> "$OUT/sections.tsv"
  echo "   exit $rc after $(( SECONDS - t0 )) s" >&2
}

env_s() { "${CHECK[@]}" env --out "$OUT" $FLAG; }
data_s() { "${CHECK[@]}" data --out "$OUT" ${DATA:+--source "$DATA"} --shapes $SHAPES $FLAG; }
tests_s() {
  "$PYTHON" -m pytest -m cuda -q -p no:cacheprovider --junitxml="$OUT/cuda_tests.xml" tests
  "${CHECK[@]}" tests --out "$OUT" --junit "$OUT/cuda_tests.xml" $FLAG
}
train_s() {  # the check runs even when train.py failed (it says what is missing); exit: train.py's first
  local rc
  "$PYTHON" train.py "${TRAIN[@]}" --data "$DATA_YAML" --hyp "$HYP" --device $DEV --channels-last \
    --val-interval 1 --project "$OUT/train" --name exp --exist-ok --quiet
  rc=$?
  "${CHECK[@]}" train-check --out "$OUT" --run-dir "$RUN" --epochs $EPOCHS $FLAG || (( rc )) || rc=1
  return $rc
}
test_s() {
  local rc
  "$PYTHON" test.py --weights "$RUN/weights/best.pt" --data "$DATA_YAML" --img-size $SIZE --device $DEV \
    --workers $WORKERS --no-plots --project "$OUT/test" --name exp --exist-ok
  rc=$?
  "${CHECK[@]}" test-check --out "$OUT" --run-dir "$OUT/test/exp" || (( rc )) || rc=1
  return $rc
}
detect_s() {
  local rc
  "$PYTHON" detect.py --weights "$RUN/weights/best.pt" --source "$OUT/data/val_images.txt" --img-size $SIZE \
    --device $DEV --half --save-txt --nosave --project "$OUT/detect" --name exp --exist-ok
  rc=$?
  "${CHECK[@]}" detect-check --out "$OUT" --run-dir "$OUT/detect/exp" --list "$OUT/data/val_images.txt" \
    --log "$OUT/logs/detect.log" $FLAG || (( rc )) || rc=1
  return $rc
}
timed() { "${CHECK[@]}" "$1" --out "$OUT" --device $TDEV --size $SIZE "${@:2}" $FLAG; }
throughput_s() {
  timed throughput --yaml "$DATA_YAML" --hyp "$HYP" --models "${MODELS[@]}" --batches "${BATCHES[@]}" \
    "${LOADER[@]}" "${STEPS[@]}" --budget-s $(( BOX * 85 / 100 - 10 ))
}
latency_s() { timed latency --models "${MODELS[@]}" "${LATENCY[@]}"; }
yolov5_s() {
  timed yolov5 --yaml "$DATA_YAML" --hyp "$HYP" --batches "${BATCHES[@]}" "${STEPS[@]}" "${PEER_LATENCY[@]}" \
    --anchor $ANCHOR --budget-s $(( BOX * 70 / 100 - 10 ))
}
compile_s() { timed compile --yaml "$DATA_YAML" --hyp "$HYP" "${COMPILE[@]}" "${STEPS[@]}"; }

# what the sections need, for the `bash -c` that `timeout` runs each one in
VARS=$OUT/sections.env.sh
{ declare -p OUT PYTHON FLAG DATA DATA_YAML HYP DEV TDEV SIZE WORKERS EPOCHS RUN SHAPES ANCHOR CHECK TRAIN STEPS \
    MODELS BATCHES COMPILE LOADER LATENCY PEER_LATENCY
  declare -f env_s data_s tests_s train_s test_s detect_s timed throughput_s latency_s yolov5_s compile_s
} > "$VARS"

section env "$BOX_ENV" "env_s"
section data "$BOX_DATA" "data_s"
section cuda_tests "$BOX_TESTS" "tests_s"
section train "$BOX_TRAIN" "train_s"
section test "$BOX_TEST" "test_s"
section detect "$BOX_DETECT" "detect_s"
section throughput "$BOX_THROUGHPUT" "throughput_s"
section latency "$BOX_LATENCY" "latency_s"
section yolov5 "$BOX_YOLOV5" "yolov5_s"
section compile "$BOX_COMPILE" "compile_s"

"${CHECK[@]}" summary --out "$OUT" $FLAG
