"""Shared fixtures for the modeling tests: tiny configs that run in seconds on one CPU thread."""

from __future__ import annotations

import pytest

from ..tiny_configs import tiny_person_search_cfg


@pytest.fixture(autouse=True)
def _one_thread(one_seeded_thread):
    """Every test here runs on one seeded thread (see tests/conftest.py)."""


@pytest.fixture
def cfg():
    return tiny_person_search_cfg()
