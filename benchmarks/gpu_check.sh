#!/usr/bin/env bash
# One prepared check for a bare CUDA machine whose python3 already has torch and torchvision and
# which cannot download anything. Run from the repository root:
#
#     bash benchmarks/gpu_check.sh [--dry-run] [WHEEL_DIR] [RESULTS_DIR] [SEQNET_DIR]
#
# WHEEL_DIR (default .whl): made beforehand, where the registry is reachable, by
#   scripts/prepare_gpu_wheels.sh (Detectron2 v0.6 without its C++ extension + the pure-Python
#   dependencies the image lacks); installed with --no-index into /tmp/stl_site.
# RESULTS_DIR (default $OUT, else output/gpu_check): one JSON file per figure-producing step,
#   demo_metrics.json (the demo's evaluation), logs.txt (every step's full output) and
#   summary.json (machine, torch / torchvision / Detectron2 versions, date, each step's exit
#   status and seconds): 10 files.
# SEQNET_DIR (default $SEQNET_DIR, else none): a local copy of serend1p1ty/SeqNet's source; when
#   given, the inference benchmarks time SeqNet side by side (benchmarks/seqnet_reference.py).
#
# Steps, each under its own timeout (all together at most 565 s): environment; inference
# benchmark batch 1 fp32, batch 1 fp16, batch 32 fp32, batch 32 fp16 (paper configuration with
# the 512-wide RPN, the paper configuration on the fast path, the named fast variant, SeqNet);
# the two batch-1 fp16 steps also profile one call per row (kernel and CUDA-graph launches,
# syncs, GPU-busy share: benchmarks/profile_counts.py);
# batch 1 fp16 with the whole gallery forward as one CUDA graph (TEST.FAST_PATH.STATIC_SHAPES,
# COMPILE reduce-overhead; the reference path and SeqNet beside it, 960x640 only); the ONNX
# export under onnxruntime's CUDA and TensorRT providers (reported as not run where the image's
# onnxruntime lacks them) beside the CPU's and PyTorch on the GPU;
# training speed at the paper's configuration with and without AMP; the demo pipeline on the GPU;
# the tests that take the CUDA branch. A failing step is recorded and the next one runs.
#
# --dry-run (or GPU_CHECK_DRY_RUN=1): the same steps, scripts and flags on the CPU at tiny sizes
# (64x96 images, batch 2, one timed round, a narrow backbone, bfloat16 for float16 since CPU
# autocast emulates float16, a one-image training step, the demo on the tiny synthetic preset with
# a 2-iteration schedule whose untrained detector keeps every box, one test file, the static
# forward not compiled: inductor takes a CPU-minute on it) and without the
# wheel install, so that a missing file, flag or import shows up before a GPU is lent
# (tests/benchmarks/test_gpu_check_dry_run.py; docs/gpu.md). GPU_CHECK_PYTHON (default python3)
# is the interpreter.
set -uo pipefail

DRY_RUN="${GPU_CHECK_DRY_RUN:-0}"
if [ "${1:-}" = "--dry-run" ]; then DRY_RUN=1; shift; fi
WHEELS="${1:-.whl}"
RESULTS="${2:-${OUT:-output/gpu_check}}"
SEQNET="${3:-${SEQNET_DIR:-}}"
PY="${GPU_CHECK_PYTHON:-python3}"
mkdir -p "$RESULTS"
RESULTS="$(cd "$RESULTS" && pwd)"
: >"$RESULTS/logs.txt"
WORK="$(mktemp -d)"  # step log, step table, env record, the demo's output
trap 'rm -rf "$WORK"' EXIT
STEPS="$WORK/steps.tsv" STEP_LOG="$WORK/step.log"
: >"$STEPS"
export PYTHONUNBUFFERED=1 DETECTRON2_DATASETS="${DETECTRON2_DATASETS:-/tmp/stl_datasets}"

step() {  # step NAME TIMEOUT_S COMMAND...
  local name="$1" limit="$2"
  shift 2
  local t0=$(date +%s)
  echo "=== [$name] (timeout ${limit}s): $*"
  timeout --kill-after=5 "$limit" "$@" >"$STEP_LOG" 2>&1
  local rc=$?
  { echo "=== [$name] $*"; cat "$STEP_LOG"; } >>"$RESULTS/logs.txt"
  grep -v -i "warn" "$STEP_LOG" | tail -n 20
  echo "=== [$name] exit $rc, $(($(date +%s) - t0)) s"
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - t0))" >>"$STEPS"
}

if [ "$DRY_RUN" = 1 ]; then
  DEVICE=cpu
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  # The demo's data: the tiny synthetic preset where the synthetic set is looked for.
  [ -f "$DETECTRON2_DATASETS/synthetic_prw/synthetic_info.json" ] ||
    "$PY" -m stl_search.data.datasets.synthetic --preset tiny \
      --out "$DETECTRON2_DATASETS/synthetic_prw" >/dev/null || exit 1
  NARROW=(MODEL.RESNETS.STEM_OUT_CHANNELS 8 MODEL.RESNETS.RES2_OUT_CHANNELS 32
    MODEL.RESNETS.WIDTH_PER_GROUP 8 MODEL.ID_HEAD.EMBEDDING_DIM 256)
  SIZES=(64x96) B1=(--iters 1 --warmup 0) B32=(--batch 2 --iters 1 --warmup 0) HALF=bfloat16
  STATIC_COMPILE="" EXPORT=(--iters 1 --warmup 0)
  TRAIN=(--paper --ims-per-batch 1 --iters 1 --warmup 0 --opts "${NARROW[@]}"
    INPUT.MIN_SIZE_TRAIN "(96,)" INPUT.MAX_SIZE_TRAIN 160)
  DEMO=(--num-workers 0 --force --opts REID.SOLVER.MAX_EPOCHS 1 REID.SOLVER.ITERS_PER_EPOCH 2
    REID.SOLVER.WARMUP_EPOCHS 0 REID.SOLVER.STEPS_EPOCHS "()" REID.TEST_PERIOD_EPOCHS 0
    REID.SAMPLER.P 4 REID.SAMPLER.K 2 SOLVER.MAX_ITER 2 SOLVER.STEPS "(1,)" SOLVER.WARMUP_ITERS 0
    SOLVER.IMS_PER_BATCH 2 MODEL.ROI_HEADS.SCORE_THRESH_TEST 0.0
    TEST.PERSON_SEARCH.SCORE_THRESH 0.0)
  TESTS=(tests/test_compat.py)
  LIMIT="${GPU_CHECK_STEP_LIMIT:-900}"  # a guard against hangs only: shared CPUs are slow
else
  DEVICE=cuda
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/stl_site "$WHEELS"/*.whl || { echo "wheel install failed" >&2; exit 1; }
  export PYTHONPATH="$PWD:/tmp/stl_site${PYTHONPATH:+:$PYTHONPATH}"
  NARROW=()
  SIZES=(960x640 1500x900) B1=(--iters 30 --warmup 5) B32=(--batch 32 --iters 5 --warmup 2)
  HALF=float16 STATIC_COMPILE=reduce-overhead EXPORT=(--iters 3 --warmup 1 --threads 16)
  TRAIN=(--iters 8 --warmup 3)
  DEMO=(--num-workers 4)
  # The tests that take the CUDA branch (AMP training, launch) and the inference paths' exactness
  # tests: the whole suite takes minutes; CI runs it on the CPU.
  TESTS=(tests/test_compat.py tests/engine/test_model_building.py
    tests/modeling/test_static_shapes.py tests/modeling/test_fast_path.py)
  LIMIT=
fi

step env "${LIMIT:-20}" "$PY" benchmarks/gpu_check_report.py env --json "$WORK/env.json"

seqnet_args=()
[ -n "$SEQNET" ] && seqnet_args=(--seqnet "$SEQNET")
bench=("$PY" benchmarks/inference_speed.py --device "$DEVICE" --fast "${seqnet_args[@]}"
  --sizes "${SIZES[@]}" --opts MODEL.RPN.CONV_DIMS "[-1]" "${NARROW[@]}")
step infer_b1_fp32 "${LIMIT:-55}" "${bench[@]}" "${B1[@]}" --json "$RESULTS/infer_b1_fp32.json"
step infer_b1_fp16 "${LIMIT:-55}" "${bench[@]}" "${B1[@]}" --amp "$HALF" --profile \
  --json "$RESULTS/infer_b1_fp16.json"
step infer_b1_static "${LIMIT:-100}" "$PY" benchmarks/inference_speed.py --device "$DEVICE" \
  --side-by-side "${seqnet_args[@]}" --sizes "${SIZES[0]}" "${B1[@]}" --amp "$HALF" --profile \
  --opts MODEL.RPN.CONV_DIMS "[-1]" "${NARROW[@]}" TEST.FAST_PATH.STATIC_SHAPES True \
  TEST.FAST_PATH.COMPILE "$STATIC_COMPILE" --json "$RESULTS/infer_b1_static.json"
step infer_b32_fp32 "${LIMIT:-50}" "${bench[@]}" "${B32[@]}" --json "$RESULTS/infer_b32_fp32.json"
step infer_b32_fp16 "${LIMIT:-55}" "${bench[@]}" "${B32[@]}" --amp "$HALF" \
  --json "$RESULTS/infer_b32_fp16.json"
step export_onnx "${LIMIT:-45}" "$PY" benchmarks/export_speed.py --device "$DEVICE" \
  --size "${SIZES[0]}" --formats onnx "${EXPORT[@]}" --json "$RESULTS/export_onnx.json" \
  --providers CUDAExecutionProvider TensorrtExecutionProvider CPUExecutionProvider
step train_speed "${LIMIT:-55}" "$PY" benchmarks/train_speed.py --device "$DEVICE" "${TRAIN[@]}" \
  --json "$RESULTS/train_speed.json"
DEMO_OUT="$WORK/demo"
step demo "${LIMIT:-90}" "$PY" projects/stl_search/run_pipeline.py --device "$DEVICE" "${DEMO[@]}" \
  --output "$DEMO_OUT"
cp "$DEMO_OUT/2_person_search/eval_metrics.json" "$RESULTS/demo_metrics.json" 2>/dev/null
step tests "${LIMIT:-40}" "$PY" -m pytest -q -x "${TESTS[@]}" -p no:cacheprovider

dry=()
[ "$DRY_RUN" = 1 ] && dry=(--dry-run)
"$PY" benchmarks/gpu_check_report.py summary --env "$WORK/env.json" --steps "$STEPS" \
  --json "$RESULTS/summary.json" "${dry[@]}"
