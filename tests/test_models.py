import pytest
import torch
from torch.nn import functional as F

from minima.models import build_model, max_pool_2x2_forward


@pytest.mark.parametrize("shape", [(3, 6, 28, 28), (2, 16, 10, 10), (4, 2, 7, 9), (5, 3, 3, 3, 6)])
def test_forward_only_max_pool_equals_max_pool2d_exactly(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    flat = x.reshape(-1, *shape[-3:])
    expected = F.max_pool2d(flat, 2).reshape(*shape[:-2], shape[-2] // 2, shape[-1] // 2)
    assert torch.equal(max_pool_2x2_forward(x), expected)


def test_modern_lenet_gives_identical_logits_with_and_without_autograd():
    model = build_model("modern", seed=0, dtype=torch.float64)
    x = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64).relu()
    with torch.no_grad():
        fast = model(x)
    assert torch.equal(fast, model(x).detach())


def test_variants_share_state_dict_keys():
    assert build_model("modern", seed=0).state_dict().keys() == build_model("seed", seed=0).state_dict().keys()


@pytest.mark.parametrize("name", ["modern", "seed"])
def test_a_variants_stated_parameter_count_is_its_networks(name):
    """The summary states n_params from the variant alone (no torch in `summarize`)."""
    from minima.objective import num_params, params_of
    from minima.specs import VARIANTS

    assert VARIANTS[name].n_params == num_params(params_of(build_model(name, seed=0))) == 61706
