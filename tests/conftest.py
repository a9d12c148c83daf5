import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """The suite's problems are small: they run fastest on one thread, and two OpenMP threads
    contending for a busy 2-core machine made them several times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
