"""``benchmarks/query_speed.py`` runs end to end on a small random index (a smoke run of every
row, not a timing: the figures live in benchmarks/README.md)."""

import subprocess
import sys


def test_query_speed_runs_every_row_on_a_small_index(repo_root):
    proc = subprocess.run(
        [sys.executable, "benchmarks/query_speed.py", "--boxes", "2000", "--queries", "3"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "2000 boxes" in proc.stdout
    for row in ("top-10 + sightings", "threshold 0.5", "camera filter", "time-range filter"):
        assert row in proc.stdout, proc.stdout
