#!/usr/bin/env bash
# Prepares a folder of wheels for benchmarks/gpu_check.sh: everything stl-search needs beyond
# torch/torchvision on a CUDA machine that cannot download anything (Python 3.12, x86-64 Linux).
#
#     bash scripts/prepare_gpu_wheels.sh [WHEEL_DIR]      # default: .whl (git-ignored: never commit)
#
# Run it where the package registry is reachable, with this project's venv (.venv: its pip and its
# torch, which Detectron2's setup.py imports for its metadata). It
# - downloads binary wheels for Python 3.12 (`pip download --only-binary :all: --python-version
#   3.12`) of Detectron2's pure-Python and compiled dependencies that such an image usually lacks;
# - builds wheels of the two that are published as source only (fvcore, antlr4-python3-runtime);
# - builds a Detectron2 v0.6 wheel from the registry sdist pb1-detectron2==0.6, checked and patched
#   exactly as scripts/bootstrap.sh does (scripts/detectron2_sdist.sh: no C++ extension, Image.LINEAR
#   renamed, the detectron2._C placeholder). It is
#   pure Python, so the wheel is `py3-none-any` and installs on 3.12.
# Packages the target image already has (IMAGE_HAS below) are not fetched.
# tests/benchmarks/test_gpu_wheels_cover_imports.py checks that every distribution the check's
# steps import is in BINARY, SOURCE_ONLY, Detectron2 or IMAGE_HAS.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$(mkdir -p "${1:-$ROOT/.whl}" && cd "${1:-$ROOT/.whl}" && pwd)"
PY="${STL_PY:-$ROOT/.venv/bin/python}"
PIP=("$PY" -m pip --disable-pip-version-check)
# shellcheck source=scripts/detectron2_sdist.sh
source "$ROOT/scripts/detectron2_sdist.sh"
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
  manylinux1_x86_64)

# What the target image (Python 3.12, a CUDA build of torch) holds, as its `pip list` read there
# on 2026-11-17, restricted to what the check imports (torch's own dependencies come with its
# build). Not fetched; names as pip spells them.
IMAGE_HAS=(
  torch torchvision numpy scipy opencv-python-headless pillow matplotlib cycler fonttools
  kiwisolver pyparsing python-dateutil tabulate cloudpickle tqdm portalocker pyyaml pytest
  packaging onnx onnxruntime scikit-learn threadpoolctl
)
# Binary (or pure-Python) wheels for CPython 3.12 on x86-64 Linux, without their dependencies:
# each one needed is named here. faiss-cpu (the gallery index's backend, imported by the demo's
# index steps and tests/index) is an abi3 wheel, 19 MB; Flask and its dependencies serve the
# local search page (stl_search.serve, tests/index/test_serve.py).
BINARY=(
  "yacs==0.1.8" "termcolor>=1.1" "iopath==0.1.9" "omegaconf==2.3.0" "hydra-core==1.3.2"
  "pycocotools==2.0.11" "faiss-cpu==1.15.1"
  "flask==3.1.3" "werkzeug==3.1.9" "jinja2==3.1.6" "markupsafe==3.0.4" "itsdangerous==2.2.0"
  "click==8.5.1" "blinker==1.9.0"
)
# Published as source only (pure Python): built into wheels here.
SOURCE_ONLY=("fvcore==0.1.5.post20221221" "antlr4-python3-runtime==4.9.3")
platform_args=()
for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
echo "[wheels] binary wheels for Python 3.12 -> $DEST"
"${PIP[@]}" download -q --no-deps --only-binary :all: --python-version 3.12 --implementation cp \
  "${platform_args[@]}" -d "$DEST" "${BINARY[@]}"

# Source-only packages (pure Python): built into wheels here.
echo "[wheels] building fvcore and antlr4-python3-runtime (sdist only)"
"${PIP[@]}" wheel -q --no-deps -w "$DEST" "${SOURCE_ONLY[@]}"

# Detectron2 v0.6: the bootstrap's sdist and patches, as a wheel.
echo "[wheels] building Detectron2 v0.6 (no C++ extension) from $D2_SDIST_NAME"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PY" -m venv "$work/pip24"  # pip >= 25 refuses this sdist (see scripts/bootstrap.sh)
"$work/pip24/bin/python" -m pip install -q --disable-pip-version-check "pip>=24,<25"
# Its setup.py imports torch even for the download's metadata step: the venv's torch, on the path.
site="$("$PY" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')"
src="$(prepare_detectron2_sdist "$work" env PYTHONPATH="$site" "$work/pip24/bin/python" -m pip \
  --disable-pip-version-check)"
"${PIP[@]}" wheel -q --no-deps --no-build-isolation -w "$DEST" "$src"

echo "[wheels] done: $(ls "$DEST" | wc -l) wheels, $(du -sh "$DEST" | cut -f1) in $DEST"
ls "$DEST"
