"""Shared fixtures for the modeling tests: tiny configs that run in seconds on one CPU thread."""
from __future__ import annotations

import pytest
import torch

from ps_model_helpers import tiny_cfg


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests share two cores with other jobs: keep each to one thread, seeded."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def cfg():
    return tiny_cfg()
