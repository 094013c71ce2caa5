"""A Detectron2 data root holding the tiny synthetic set under the built-in name's folder, so
that ``synthetic_train`` / ``synthetic_gallery`` / ``synthetic_query`` load it."""

import os

import pytest

from stl_search.data.datasets.synthetic import PRESETS, ensure_generated


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("d2data"))
    ensure_generated(os.path.join(root, "synthetic_prw"), PRESETS["tiny"])
    return root
