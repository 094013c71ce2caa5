"""The GPU check installs nothing but the wheels of ``scripts/prepare_gpu_wheels.sh`` on an image
that holds ``IMAGE_HAS``: every distribution its steps import must be one of them, or the check
fails there on an import (as it would have on faiss, which no such image holds)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: Venv distributions whose modules the image has under another distribution name.
SAME_MODULES = {"opencv-python": "opencv-python-headless"}
#: Imported only by an opt-in test that reads a SeqNet checkout (SEQNET_ROOT): not a package.
OPTIONAL = {"?eval_func"}


def shell_array(text: str, name: str) -> list:
    """The words of the bash array ``NAME=( ... )`` in ``text``, version specifiers cut."""
    m = re.search(rf"^{name}=\((.*?)\)", text, re.M | re.S)
    assert m, f"no {name}=( ... ) array"
    words = shlex.split(re.sub(r"#.*", "", m.group(1)))
    return [re.split(r"[=<>!~]", w)[0].lower().replace("_", "-") for w in words]


def provided() -> set:
    with open(os.path.join(REPO, "scripts", "prepare_gpu_wheels.sh")) as f:
        script = f.read()
    with open(os.path.join(REPO, "scripts", "detectron2_sdist.sh")) as f:
        d2 = re.search(r'^D2_SDIST_NAME="([^"=]+)', f.read(), re.M).group(1)
    names = {d2}
    for array in ("IMAGE_HAS", "BINARY", "SOURCE_ONLY"):
        names.update(shell_array(script, array))
    return names


def test_shell_array_parsing():
    text = 'X=(\n  "a==1" b_c  # note\n  "d>=2"\n)\nY=(z)\n'
    assert shell_array(text, "X") == ["a", "b-c", "d"]


def test_every_import_of_the_check_is_a_wheel_or_in_the_image():
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "tests", "benchmarks", "check_imports.py")],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout.split()
    needed = {SAME_MODULES.get(d, d) for d in out} - OPTIONAL
    assert {"torch", "pb1-detectron2", "faiss-cpu", "fvcore"} <= needed  # the list is real
    missing = needed - provided()
    assert not missing, (
        f"imported by the GPU check's steps but neither a wheel of scripts/prepare_gpu_wheels.sh "
        f"nor in its IMAGE_HAS: {sorted(missing)}"
    )
