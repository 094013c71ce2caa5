"""One sha256 of a file (``stl_search.utils.io.sha256_of``) for the index, the export and the
checks that compare them with what was recorded."""

import hashlib

import pytest

from stl_search.utils.io import sha256_of


def test_sha256_of_reads_the_whole_file_in_blocks(tmp_path):
    path = tmp_path / "w.pth"
    data = bytes(range(256)) * 8193  # more than one 1 MiB block
    path.write_bytes(data)
    assert sha256_of(str(path)) == hashlib.sha256(data).hexdigest()


def test_sha256_of_a_missing_file(tmp_path):
    missing = str(tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        sha256_of(missing)
    assert sha256_of(missing, missing_ok=True) is None
    assert sha256_of("", missing_ok=True) is None  # weights given by no file (a model in memory)
