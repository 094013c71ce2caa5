"""``benchmarks/index_speed.py`` runs end to end at tiny sizes on the tiny synthetic set: the
extraction rows, the embedding structure, an exact-search row and a reduction's row (a smoke
run, not a timing: the figures live in benchmarks/README.md)."""

from __future__ import annotations

from .helpers import run_on_tiny_synthetic


def test_index_speed_runs_at_tiny_sizes(repo_root, tmp_path):
    out = run_on_tiny_synthetic(
        repo_root, tmp_path, "index_speed.py", "--images", "4", "--rounds", "1", "--frames",
        "12", "--sizes", "2000", "--queries", "3", "--reduce", "pca64",
    )  # fmt: skip
    assert "extraction, 4 frames" in out and "index over model" in out
    assert "cosine within / across identities" in out
    assert "| 2,000 | exact (IndexFlatIP) |" in out
    row = next(line for line in out.splitlines() if "exact over pca64 (64-d" in line)
    assert 0 < float(row.split("|")[5]) <= 1  # recall@100 against the full vectors
