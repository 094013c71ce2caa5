"""Shared set-up of the STL (Re-ID pretraining) tests: one thread each, seeded (2 shared cores)."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_seeded_thread):
    """Every test here runs on one seeded thread (see tests/conftest.py)."""
