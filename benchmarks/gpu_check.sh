#!/usr/bin/env bash
# One prepared check for a bare CUDA machine whose python3 already has torch and torchvision and
# which cannot download anything. Run from the repository root:
#
#     bash benchmarks/gpu_check.sh [WHEEL_DIR] [RESULTS_DIR] [SEQNET_DIR]
#
# WHEEL_DIR (default .whl): made beforehand, where the registry is reachable, by
#   scripts/prepare_gpu_wheels.sh (Detectron2 v0.6 without its C++ extension + the pure-Python
#   dependencies the image lacks); installed with --no-index into /tmp/stl_site.
# RESULTS_DIR (default $OUT, else output/gpu_check): one JSON file per figure-producing step,
#   demo_metrics.json (the demo's evaluation), logs.txt (every step's full output) and
#   summary.json (each step's exit status and seconds): 8 files.
# SEQNET_DIR (default $SEQNET_DIR, else none): a local copy of serend1p1ty/SeqNet's source; when
#   given, the inference benchmarks time SeqNet side by side (benchmarks/seqnet_reference.py).
#
# Steps, each under its own timeout (all together at most 8 minutes): environment; inference
# benchmark batch 1 fp32, batch 1 fp16, batch 32 fp32, batch 32 fp16 (paper configuration with
# the 512-wide RPN, the paper configuration on the fast path, the named fast variant, SeqNet);
# training speed at the paper's configuration with and without AMP; the demo pipeline on the GPU;
# the test suite. A failing step is recorded and the next one runs.
set -uo pipefail

WHEELS="${1:-.whl}"
RESULTS="${2:-${OUT:-output/gpu_check}}"
SEQNET="${3:-${SEQNET_DIR:-}}"
mkdir -p "$RESULTS"
RESULTS="$(cd "$RESULTS" && pwd)"
: >"$RESULTS/logs.txt"
export PYTHONUNBUFFERED=1 DETECTRON2_DATASETS="${DETECTRON2_DATASETS:-/tmp/stl_datasets}"
SUMMARY="$RESULTS/summary.json"
echo "{" >"$SUMMARY"
START=$(date +%s)

step() {  # step NAME TIMEOUT_S COMMAND...
  local name="$1" limit="$2"
  shift 2
  local t0=$(date +%s)
  echo "=== [$name] (timeout ${limit}s): $*"
  timeout --kill-after=5 "$limit" "$@" >"/tmp/stl_gpu_step.log" 2>&1
  local rc=$?
  { echo "=== [$name] $*"; cat /tmp/stl_gpu_step.log; } >>"$RESULTS/logs.txt"
  grep -v -i "warn" /tmp/stl_gpu_step.log | tail -n 20
  echo "=== [$name] exit $rc, $(($(date +%s) - t0)) s"
  echo "  \"$name\": {\"rc\": $rc, \"seconds\": $(($(date +%s) - t0))}," >>"$SUMMARY"
}

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/stl_site "$WHEELS"/*.whl || { echo "wheel install failed" >&2; exit 1; }
export PYTHONPATH="$PWD:/tmp/stl_site${PYTHONPATH:+:$PYTHONPATH}"

step env 20 python3 -c "
import torch, torchvision, detectron2, stl_search
print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'detectron2',
      detectron2.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"

seqnet_args=()
[ -n "$SEQNET" ] && seqnet_args=(--seqnet "$SEQNET")
bench=(python3 benchmarks/inference_speed.py --device cuda --fast "${seqnet_args[@]}"
  --sizes 960x640 1500x900 --opts MODEL.RPN.CONV_DIMS "[-1]")
step infer_b1_fp32 55 "${bench[@]}" --iters 30 --warmup 5 --json "$RESULTS/infer_b1_fp32.json"
step infer_b1_fp16 55 "${bench[@]}" --iters 30 --warmup 5 --amp float16 \
  --json "$RESULTS/infer_b1_fp16.json"
step infer_b32_fp32 55 "${bench[@]}" --batch 32 --iters 5 --warmup 2 \
  --json "$RESULTS/infer_b32_fp32.json"
step infer_b32_fp16 55 "${bench[@]}" --batch 32 --iters 5 --warmup 2 --amp float16 \
  --json "$RESULTS/infer_b32_fp16.json"
step train_speed 60 python3 benchmarks/train_speed.py --device cuda --iters 8 --warmup 3 \
  --json "$RESULTS/train_speed.json"
step demo 90 python3 projects/stl_search/run_pipeline.py --device cuda --num-workers 4 \
  --output /tmp/stl_gpu_demo
cp /tmp/stl_gpu_demo/2_person_search/eval_metrics.json "$RESULTS/demo_metrics.json" 2>/dev/null
step tests 80 python3 -m pytest -q -x tests --ignore=tests/test_foundation.py -p no:cacheprovider

echo "  \"total_seconds\": $(($(date +%s) - START))" >>"$SUMMARY"
echo "}" >>"$SUMMARY"
cat "$SUMMARY"
