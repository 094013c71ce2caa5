"""Helpers of the benchmark tests: a benchmark script as a module, and a script run as a user
runs it on the tiny synthetic set."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

from stl_search.data.datasets.synthetic import PRESETS, ensure_generated


def load_benchmark(repo_root: str, name: str):
    """``benchmarks/NAME.py`` imported as a module (its folder on ``sys.path`` while it loads,
    for its sibling imports such as ``machine.py``)."""
    folder = os.path.join(repo_root, "benchmarks")
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location(name, os.path.join(folder, name + ".py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


def run_on_tiny_synthetic(repo_root: str, tmp_path, script: str, *args: str) -> str:
    """Run ``benchmarks/SCRIPT`` with ``args`` in a process of its own, the tiny synthetic set
    generated under ``tmp_path`` as its data; assert it exits 0 and return its stdout."""
    root = tmp_path / "datasets"
    ensure_generated(str(root / "synthetic_prw"), PRESETS["tiny"])
    proc = subprocess.run(
        [sys.executable, os.path.join("benchmarks", script), *args],
        cwd=repo_root,
        env=dict(os.environ, DETECTRON2_DATASETS=str(root)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout
