import pytest
import torch


@pytest.fixture(autouse=True)
def float64():
    """Closed forms are checked in float64; restored after, so other test modules are unaffected."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
