"""``benchmarks/reduced_scale.py`` runs end to end at a toy size and prints a sane row."""

from __future__ import annotations

import os
import subprocess
import sys


def test_reduced_scale_prints_a_row(repo_root):
    script = os.path.join(repo_root, "benchmarks", "reduced_scale.py")
    argv = ["--sizes", "3000", "--dims", "32", "--nlist", "8", "--queries", "10", "--threads", "1"]
    out = subprocess.run(
        [sys.executable, script, *argv], capture_output=True, text=True, check=True
    ).stdout
    row = [line for line in out.splitlines() if line.startswith("| 3,000 | 32 |")]
    assert len(row) == 1, out
    cells = [c.strip() for c in row[0].strip("|").split("|")]
    assert float(cells[4]) < 2 * 32  # PQ4x8 codes + id + amortised centroids, under float16
    assert 0.5 <= float(cells[8]) <= 1.0  # recall@100 of IVF-PQ + re-ranking
