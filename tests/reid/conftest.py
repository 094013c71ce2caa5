"""Shared set-up of the STL (Re-ID pretraining) tests: one thread each, seeded (2 shared cores)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(n)
