#!/usr/bin/env bash
# Builds (or checks) the project's virtual environment from the package registries alone.
#
# Idempotent: a stamp inside the venv records a hash of this script, setup.py and the
# requirements files; when it matches and the venv imports everything, nothing is installed.
#
# torch: a torch already importable in the venv (the user's CUDA build, or one seen through
# `python -m venv --system-site-packages`) is kept, and pinned as a constraint so that no later
# step replaces it; a missing torchvision is then resolved to the release matching it. Only a
# venv without torch gets requirements-torch.txt.
#
# Detectron2: an official Detectron2 already importable in the venv is kept. Otherwise, if
# DETECTRON2_SPEC is set (e.g. 'git+https://github.com/facebookresearch/detectron2.git'), pip
# installs that. Otherwise the registry sdist pb1-detectron2==0.6 (official v0.6 Python source
# without layers/csrc) is downloaded with pip 24.x, its sha256 checked, and built without the
# C++ extension plus a `detectron2._C` placeholder (see stl_search/compat.py).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${STL_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
STAMP="$VENV/.stl-search-stamp"
# shellcheck source=scripts/detectron2_sdist.sh
source "$ROOT/scripts/detectron2_sdist.sh"

want_stamp="$(cat "$ROOT/scripts/bootstrap.sh" "$ROOT/scripts/detectron2_sdist.sh" "$ROOT/setup.py" \
  "$ROOT/requirements.txt" "$ROOT/requirements-torch.txt" | sha256sum | cut -d' ' -f1)"

venv_ok() {
  [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ] \
    && "$PY" -c "import torch, torchvision, detectron2, detectron2.engine, stl_search" >/dev/null 2>&1
}

if venv_ok; then
  echo "[bootstrap] environment up to date: $VENV"
  exit 0
fi

echo "[bootstrap] building environment in $VENV"
[ -x "$PY" ] || python3 -m venv "$VENV"
PIP=("$PY" -m pip --disable-pip-version-check)
# pip >= 25 refuses the Detectron2 sdist (it declares a direct-URL extra); 24.x downloads it.
"${PIP[@]}" install -q "pip>=24,<25"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
dist_version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
if "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "[bootstrap] keeping the torch already in the venv: $(dist_version torch)"
else
  echo "[bootstrap] installing torch (requirements-torch.txt)"
  "${PIP[@]}" install -q -r "$ROOT/requirements-torch.txt"
fi
# From here on pip may not replace torch: a requirement that needs another one fails loudly.
torch_version="$(dist_version torch)"
echo "torch==$torch_version" > "$work/keep-torch.txt"
torchvision_missing() {
  echo "[bootstrap] ERROR: torchvision does not import with torch $torch_version in $VENV: install" \
    "the torchvision built for that torch (from the index torch came from), then run this again" >&2
  exit 1
}
if ! "$PY" -c "import torchvision" >/dev/null 2>&1; then
  # A local build (2.x.y+cpu, +cu128) comes from PyTorch's own index, whose torchvision the
  # registry's (built for the registry's torch) would not load with.
  [[ "$torch_version" != *+* ]] || torchvision_missing
  echo "[bootstrap] installing the torchvision release built for torch $torch_version"
  "${PIP[@]}" install -q -c "$work/keep-torch.txt" torchvision
  "$PY" -c "import torchvision" >/dev/null 2>&1 || torchvision_missing
fi
"${PIP[@]}" install -q -c "$work/keep-torch.txt" -r "$ROOT/requirements.txt"

if "$PY" -c "import detectron2" >/dev/null 2>&1; then
  echo "[bootstrap] keeping the Detectron2 already in the venv: $("$PY" -c 'import detectron2,os; print(os.path.dirname(detectron2.__file__))')"
elif [ -n "${DETECTRON2_SPEC:-}" ]; then
  echo "[bootstrap] installing Detectron2 from DETECTRON2_SPEC=$DETECTRON2_SPEC"
  "${PIP[@]}" install --no-build-isolation "$DETECTRON2_SPEC"
else
  echo "[bootstrap] installing $D2_SDIST_NAME (Detectron2 v0.6 Python source, no C++ extension)"
  src="$(prepare_detectron2_sdist "$work" "${PIP[@]}")"
  "${PIP[@]}" install -q --no-build-isolation --no-deps "$src"
fi

"${PIP[@]}" install -q --no-build-isolation --no-deps -e "$ROOT"
"$PY" -c "import torch, torchvision, PIL, detectron2, detectron2.data, detectron2.engine, stl_search; print('[bootstrap] torch', torch.__version__, '| Pillow', PIL.__version__, '| detectron2', detectron2.__version__, 'at', detectron2.__file__)"
echo "$want_stamp" > "$STAMP"
echo "[bootstrap] done"
