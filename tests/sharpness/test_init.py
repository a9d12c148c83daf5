import json

import pytest
import torch

from minima.models import build_model
from minima.objective import frozen_copy, loss_at, params_of
from minima.sharpness import DESCRIPTIONS, MEASURES, SharpnessSettings, measure_all, measure_generator
from minima.sharpness.adaptive import adaptive_worst
from minima.sharpness.common import chunked_loss
from minima.sharpness.epsilon import epsilon_sharpness
from minima.sharpness.pacbayes import pacbayes_flatness

FAST = SharpnessSettings(
    n_samples=16, epsilon_steps=3, adaptive_steps=3, average_samples=3, pacbayes_samples=2, pacbayes_iters=3
)



@pytest.fixture(scope="module")
def lenet():
    model = build_model("modern", seed=0, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 1, 28, 28, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (40,), generator=g)
    return model, params_of(model), x, y


def test_measure_all_reports_every_measure_and_its_details(lenet):
    model, params, x, y = lenet
    before = {k: v.clone() for k, v in params.items()}
    result = measure_all(model, params, x, y, FAST, device="cpu", dtype=torch.float64)
    out = json.loads(json.dumps(result.to_json()))
    assert set(out) == set(MEASURES) | {"details"}
    assert set(DESCRIPTIONS) == set(MEASURES)
    assert all(isinstance(out[name], float) for name in MEASURES)
    assert out["epsilon_sharpness"] >= 0 and out["adaptive_worst"] >= 0
    details = out["details"]
    assert details["n_samples"] == 16 and len(details["indices"]) == 16
    assert details["indices"] == sorted(set(details["indices"]))
    assert details["settings"]["n_samples"] == 16
    assert details["pacbayes_mag_flatness"]["magnitude_eps"] == FAST.pacbayes_mag_eps
    assert details["pacbayes_flatness"]["magnitude_eps"] is None
    for k, v in params.items():
        assert torch.equal(v, before[k])
    assert all(p.requires_grad for p in model.parameters())  # the caller's model is untouched
    assert model.training


def test_wrappers_agree_with_measure_all_and_runs_repeat(lenet):
    model, params, x, y = lenet
    result = measure_all(model, params, x, y, FAST, device="cpu", dtype=torch.float64)
    again = measure_all(model, params, x, y, FAST, device="cpu", dtype=torch.float64)
    assert result.values() == again.values()
    kwargs = dict(device="cpu", dtype=torch.float64)
    eps = epsilon_sharpness(model, params, x, y, FAST, generator=measure_generator(FAST, "epsilon_sharpness"), **kwargs)
    worst = adaptive_worst(model, params, x, y, FAST, generator=measure_generator(FAST, "adaptive_worst"), **kwargs)
    mag = pacbayes_flatness(
        model, params, x, y, FAST, magnitude_aware=True,
        generator=measure_generator(FAST, "pacbayes_mag_flatness"), **kwargs,
    )
    assert eps == result.epsilon_sharpness
    assert worst == result.adaptive_worst
    assert mag == result.pacbayes_mag_flatness


def test_whole_set_when_n_samples_is_zero(lenet):
    model, params, x, y = lenet
    settings = SharpnessSettings(**{**FAST.__dict__, "n_samples": 0, "pacbayes_criterion": "loss"})
    result = measure_all(model, params, x[:8], y[:8], settings, device="cpu", dtype=torch.float64)
    assert result.indices is None and result.n_samples == 8
    assert result.pacbayes_flatness.criterion == "loss"


@pytest.mark.parametrize(
    "field, bad",
    [
        ("n_samples", -1),
        ("n_samples", 1.5),
        ("epsilon", 0.0),
        ("epsilon_steps", 0),
        ("adaptive_rho", -0.1),
        ("adaptive_xi", -1e-3),
        ("average_samples", 1),
        ("pacbayes_target", 0.0),
        ("pacbayes_tolerance", 0.5),
        ("pacbayes_iters", True),
        ("pacbayes_sigma_max", float("inf")),
        ("pacbayes_criterion", "error"),
        ("seed", "0"),
    ],
)
def test_settings_reject_bad_values_naming_the_field(field, bad):
    with pytest.raises(ValueError, match=f"^{field}: "):
        SharpnessSettings(**{field: bad})


def test_chunked_loss_has_the_loss_and_gradient_of_the_whole_batch(lenet):
    model, params, x, y = lenet
    frozen = frozen_copy(model)

    def loss_and_grad(fn):
        leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        loss = fn(leaves)
        return loss.detach(), torch.autograd.grad(loss, list(leaves.values()))

    whole, whole_grad = loss_and_grad(lambda p: loss_at(frozen, p, x, y))
    chunked, chunked_grad = loss_and_grad(lambda p: chunked_loss(frozen, p, x, y, chunk=7))
    assert torch.allclose(chunked, whole, rtol=1e-13)
    assert all(torch.allclose(a, b, rtol=1e-10, atol=1e-14) for a, b in zip(chunked_grad, whole_grad))
