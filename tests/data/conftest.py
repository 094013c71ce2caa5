"""Fixtures of the data-layer tests: tiny PRW / CUHK-SYSU copies in the real formats and a tiny
synthetic set, each written once per session, and unique registration names."""

from __future__ import annotations

import itertools
import os

import pytest

from stl_search.data.datasets.synthetic import PRESETS, ensure_generated

from . import fixtures as data_fixtures

_counter = itertools.count()


@pytest.fixture(scope="session")
def prw_root(tmp_path_factory) -> str:
    return data_fixtures.write_prw(str(tmp_path_factory.mktemp("PRW-v16.04.20")))


@pytest.fixture(scope="session")
def cuhk_root(tmp_path_factory) -> str:
    return data_fixtures.write_cuhk_sysu(str(tmp_path_factory.mktemp("CUHK-SYSU")))


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> str:
    return ensure_generated(
        os.path.join(str(tmp_path_factory.mktemp("syn")), "synthetic_prw"), PRESETS["tiny"]
    )


@pytest.fixture
def unique_prefix(request) -> str:
    """A data set name prefix no other test uses (the catalogs are process-global)."""
    return f"t{next(_counter)}_{request.node.name.replace('[', '_').replace(']', '')}"
