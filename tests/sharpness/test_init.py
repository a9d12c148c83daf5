import json

import pytest
import torch

from minima.objective import frozen_copy, loss_at
from minima.sharpness import DESCRIPTIONS, MEASURES, SharpnessSettings, descriptions, measure_all, measure_names
from minima.sharpness.common import chunked_loss, prepare
from minima.sharpness.epsilon import epsilon_sharpness_of
from minima.sharpness import measure_generator

FAST = SharpnessSettings(
    epsilon_steps=3, adaptive_steps=3, average_samples=3, pacbayes_samples=2, pacbayes_iters=3,
    msharp_rhos_linf=(0.01,), msharp_rhos_l2=(0.5,), msharp_m=8, msharp_points=16, msharp_steps=2,
)


def test_measure_all_reports_every_measure_and_its_details(lenet):
    before = {k: v.clone() for k, v in lenet.params.items()}
    result = measure_all(lenet.model, lenet.params, lenet.x[:16], lenet.y[:16], FAST, device="cpu", dtype=torch.float64)
    out = json.loads(json.dumps(result.to_json()))
    names = measure_names(FAST)
    assert names[: len(MEASURES)] == MEASURES
    assert names[len(MEASURES):] == ("adaptive_linf_m8_rho0.01", "adaptive_l2_m8_rho0.5")
    assert set(out) == set(names) | {"details"} and set(descriptions(FAST)) == set(names)
    assert set(DESCRIPTIONS) == set(MEASURES)
    assert all(isinstance(out[name], float) and out[name] >= 0 for name in names if "pacbayes" not in name)
    details = out["details"]
    assert details["n_samples"] == 16 and details["settings"]["msharp_m"] == 8
    assert details["adaptive_linf_m8_rho0.01"]["n_batches"] == 2 and details["adaptive_linf_m8_rho0.01"]["norm"] == "linf"
    assert details["pacbayes_mag_flatness"]["magnitude_eps"] == FAST.pacbayes_mag_eps
    assert details["pacbayes_flatness"]["magnitude_eps"] is None
    for k, v in lenet.params.items():
        assert torch.equal(v, before[k])
    assert all(p.requires_grad for p in lenet.model.parameters())  # the caller's model is untouched
    assert lenet.model.training


def test_each_measure_is_its_own_function_on_its_own_stream(lenet):
    """measure_all gives each measure the generator `measure_generator` names, so a measure
    computed alone with that generator is the same number."""
    x, y = lenet.x[:16], lenet.y[:16]
    result = measure_all(lenet.model, lenet.params, x, y, FAST, device="cpu", dtype=torch.float64)
    problem = prepare(lenet.model, lenet.params, x, y, device="cpu", dtype=torch.float64)
    alone = epsilon_sharpness_of(problem.loss, problem.params, epsilon=FAST.epsilon, steps=FAST.epsilon_steps,
                                 generator=measure_generator(FAST, "epsilon_sharpness"))
    assert alone.value == result.values()["epsilon_sharpness"]
    assert measure_all(lenet.model, lenet.params, x, y, FAST, device="cpu", dtype=torch.float64).values() == result.values()
    # sharing the measures' starting points changes no number
    alone = measure_all(lenet.model, lenet.params, x, y, FAST, device="cpu", dtype=torch.float64, share=False)
    assert alone.values() == result.values()
    assert set(result.cpu_seconds) == set(result.seconds) == set(result.values())


def test_loss_criterion_and_fewer_points_than_m(lenet):
    settings = SharpnessSettings(**{**FAST.__dict__, "pacbayes_criterion": "loss"})
    result = measure_all(lenet.model, lenet.params, lenet.x[:6], lenet.y[:6], settings, device="cpu", dtype=torch.float64)
    assert result.n_samples == 6
    assert result.measures["pacbayes_flatness"].criterion == "loss"
    assert result.measures["adaptive_linf_m8_rho0.01"].m == 6  # one batch of all six points


@pytest.mark.parametrize(
    "field, bad",
    [
        ("n_samples", -1),
        ("n_samples", 1.5),
        ("msharp_rhos_linf", (0.0,)),
        ("msharp_m", 0),
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
    with pytest.raises(ValueError, match=field):
        SharpnessSettings(**{field: bad})


@pytest.mark.parametrize("chunk", [7, 5000])
def test_chunked_loss_has_the_loss_and_gradient_of_the_whole_batch(lenet, chunk, monkeypatch):
    import minima.sharpness.common as common

    monkeypatch.setattr(common, "CPU_CHUNK", 9)  # 40 images: pieces of 9 (and 7, checkpointed)
    model, params, x, y = lenet.model, lenet.params, lenet.x, lenet.y
    frozen = frozen_copy(model)

    def loss_and_grad(fn):
        leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        loss = fn(leaves)
        return loss.detach(), torch.autograd.grad(loss, list(leaves.values()))

    whole, whole_grad = loss_and_grad(lambda p: loss_at(frozen, p, x, y))
    chunked, chunked_grad = loss_and_grad(lambda p: chunked_loss(frozen, p, x, y, chunk=chunk))
    assert torch.allclose(chunked, whole, rtol=1e-13)
    assert all(torch.allclose(a, b, rtol=1e-10, atol=1e-14) for a, b in zip(chunked_grad, whole_grad))
