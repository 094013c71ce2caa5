"""The third-party distributions that the steps of ``benchmarks/gpu_check.sh`` import: run as a
script (``python tests/benchmarks/check_imports.py``), it imports every module those steps run
(the scripts, without running their ``main``, and every ``stl_search`` module), reads the imports
written inside functions (lazy ones) of those files and of the test suite, and prints one
distribution name a line."""

from __future__ import annotations

import ast
import glob
import importlib.metadata
import importlib.util
import os
import pkgutil
import sys
from typing import Iterable, Set

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: The scripts the check runs (besides ``python -m stl_search...`` modules and pytest).
SCRIPTS = [
    "benchmarks/gpu_check_report.py",
    "benchmarks/inference_speed.py",
    "benchmarks/train_speed.py",
    "benchmarks/seqnet_reference.py",
    "benchmarks/machine.py",
    "projects/stl_search/run_pipeline.py",
    "projects/stl_search/pretrain_reid.py",
    "train_net.py",
]


def first_party() -> Set[str]:
    """Top-level names that are this repository's own (package and script folders)."""
    names = {"stl_search", "tests", "benchmarks", "projects", "train_net", "setup"}
    for folder in ("benchmarks", "projects/stl_search", "tests"):
        for path in glob.glob(os.path.join(REPO, folder, "**", "*.py"), recursive=True):
            names.add(os.path.splitext(os.path.basename(path))[0])
    return names


def static_imports(paths: Iterable[str]) -> Set[str]:
    """Top-level module names of every absolute import statement in ``paths``."""
    out: Set[str] = set()
    for path in paths:
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                out.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                out.add(node.module.split(".")[0])
    return out


def dynamic_imports() -> Set[str]:
    """Top-level names in ``sys.modules`` after importing the scripts and all of stl_search,
    less those that importing torch and torchvision loads (their own dependencies come with
    whichever torch build the machine has: CUDA libraries on a GPU image, none here)."""
    sys.path[:0] = [REPO, os.path.join(REPO, "benchmarks")]
    import torch  # noqa: PLC0415,F401  (imported here: the import is what is measured)
    import torchvision  # noqa: PLC0415,F401

    with_torch = {m.split(".")[0] for m in sys.modules} - {"torch", "torchvision"}
    import stl_search  # noqa: PLC0415

    for info in pkgutil.walk_packages(stl_search.__path__, "stl_search."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    for rel in SCRIPTS:
        name = "_check_" + os.path.splitext(os.path.basename(rel))[0]
        spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, rel))
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    return {m.split(".")[0] for m in sys.modules} - with_torch


def distributions(modules: Iterable[str], report_unknown: bool) -> Set[str]:
    """Distribution names (lower case, ``-`` for ``_``) of the non-stdlib, non-first-party
    ``modules``; with ``report_unknown``, a module of no installed distribution is reported as
    ``?<module>`` (else skipped: ``sys.modules`` holds runtime names of no file, such as
    ``cython_runtime``, loaded by a package whose own distribution is counted)."""
    owners = importlib.metadata.packages_distributions()
    own = first_party()
    out = set()
    for m in modules:
        if m in sys.stdlib_module_names or m in own or m.startswith("_check_") or m == "__main__":
            continue
        dists = owners.get(m)
        if not dists:
            if report_unknown:
                out.add(f"?{m}")
            continue
        out.update(d.lower().replace("_", "-") for d in dists)
    return out


def main() -> None:
    files = [os.path.join(REPO, p) for p in SCRIPTS]
    for folder in ("stl_search", "tests"):
        files += glob.glob(os.path.join(REPO, folder, "**", "*.py"), recursive=True)
    found = distributions(dynamic_imports(), False) | distributions(static_imports(files), True)
    for dist in sorted(found):
        print(dist)


if __name__ == "__main__":
    main()
