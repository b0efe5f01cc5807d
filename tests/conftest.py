"""Shared test fixtures."""
import pytest
import torch


@pytest.fixture(scope="module")
def single_thread_torch():
    """Tiny sparse convolutions are many small matmuls: intra-op threads only add overhead (and
    spin badly on a loaded 2-core machine), so modules that train run single-threaded."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
