# Sourced by scripts/bootstrap.sh and scripts/prepare_gpu_wheels.sh: the one recipe that turns the
# registry sdist pb1-detectron2==0.6 (official v0.6 Python source without layers/csrc) into a
# source tree that builds and imports everywhere:
# - sha256 checked;
# - no C++ extension (setup.py's ext_modules emptied);
# - v0.6's one Image.LINEAR (removed in Pillow 10; the same filter as BILINEAR, used as a default
#   argument, so importing detectron2.data fails on a current Pillow) renamed to Image.BILINEAR;
# - the detectron2._C placeholder (scripts/detectron2_C_placeholder.py).
# Each step fails loudly when the source is not what it expects.

D2_SDIST_NAME="pb1-detectron2==0.6"
D2_SHA256="5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"

# prepare_detectron2_sdist WORK PIP_COMMAND...
#   Downloads the sdist into WORK with PIP_COMMAND (a pip 24.x: pip >= 25 refuses this sdist, it
#   declares a direct-URL extra; its setup.py imports torch, so that pip must see one), checks,
#   unpacks and patches it, and prints the patched source folder.
prepare_detectron2_sdist() {
  local work="$1" sdist got src transform_py
  shift
  "$@" download -q --no-deps --no-binary :all: --no-build-isolation -d "$work" "$D2_SDIST_NAME" >&2 || return 1
  sdist="$(ls "$work"/pb1*detectron2-0.6.tar.gz)"
  got="$(sha256sum "$sdist" | cut -d' ' -f1)"
  if [ "$got" != "$D2_SHA256" ]; then
    echo "ERROR: $sdist has sha256 $got, expected $D2_SHA256" >&2
    return 1
  fi
  tar -xzf "$sdist" -C "$work" || return 1
  src="$(ls -d "$work"/pb1*detectron2-0.6)"
  sed -i 's/ext_modules=get_extensions(),/ext_modules=[],/' "$src/setup.py"
  if ! grep -q 'ext_modules=\[\],' "$src/setup.py"; then
    echo "ERROR: could not disable the C++ extension in $src/setup.py" >&2
    return 1
  fi
  transform_py="$src/detectron2/data/transforms/transform.py"
  sed -i 's/interp=Image\.LINEAR,/interp=Image.BILINEAR,/' "$transform_py"
  if grep -rq 'Image\.LINEAR\b' "$src/detectron2" || ! grep -q 'interp=Image\.BILINEAR, fill=0' "$transform_py"; then
    echo "ERROR: could not replace Image.LINEAR in $transform_py" >&2
    return 1
  fi
  cp "$(dirname "${BASH_SOURCE[0]}")/detectron2_C_placeholder.py" "$src/detectron2/_C.py"
  echo "$src"
}
