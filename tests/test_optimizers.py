import copy
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from minima import optimizers as O
from minima.optimizers import OptimizerConfig

DT = torch.float64



# ---- config ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"name": "x"}, "name: must be one of 'sgd', .*got 'x'"),
        ({"name": "sgd", "lr": 0.0}, "lr:"),
        ({"name": "adam", "lr": -1.0}, "lr:"),
        ({"name": "adam", "lr": float("nan")}, "lr:"),
        ({"name": "adam", "betas": (0.9, 1.0)}, r"betas\[1\]: must be < 1"),
        ({"name": "adam", "betas": (-0.1, 0.9)}, r"betas\[0\]: must be >= 0"),
        ({"name": "adam", "betas": (0.9,)}, r"betas\[1\]: is missing"),
        ({"name": "adam", "eps": 0.0}, "eps:"),
        ({"name": "sgd", "momentum": 0.9}, "momentum:"),
        ({"name": "sgd_momentum", "momentum": 1.0}, "momentum:"),
        ({"name": "sgd_momentum", "momentum": 0.0, "nesterov": True}, "nesterov:"),
        ({"name": "adam", "weight_decay": -1e-4}, "weight_decay:"),
        ({"name": "adahessian", "hessian_power": 1.5}, "hessian_power:"),
        ({"name": "adahessian", "update_each": 0}, "update_each:"),
        ({"name": "adahessian", "update_each": 1.5}, "update_each:"),
        ({"name": "sam", "rho": 0.0}, "rho:"),
        ({"name": "sam", "sam_base": "adahessian"}, "sam_base:"),
        ({"name": "adagrad", "initial_accumulator_value": -1.0}, "initial_accumulator_value:"),
    ],
)
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        OptimizerConfig(**kwargs)


def test_defaults_resolve_per_optimizer_and_hyperparameters_list_only_relevant():
    assert OptimizerConfig("adam").eps == 1e-8 and OptimizerConfig("adam").lr == 1e-3
    assert OptimizerConfig("adagrad").eps == 1e-10 and OptimizerConfig("adagrad").initial_accumulator_value == 0.0
    assert OptimizerConfig("adahessian").eps == 1e-4 and OptimizerConfig("adahessian").hessian_power == 1.0
    assert OptimizerConfig("sgd").momentum == 0.0 and OptimizerConfig("sgd_momentum").momentum == 0.9
    assert OptimizerConfig("adam", lr=1) == OptimizerConfig("adam", lr=1.0)  # ints from TOML become floats
    assert OptimizerConfig("adam", betas=[0.5, 0.9]).betas == (0.5, 0.9)
    assert OptimizerConfig("sgd", lr=0.1).hyperparameters() == {"lr": 0.1, "weight_decay": 0.0}
    assert set(OptimizerConfig("adam").hyperparameters()) == {"lr", "betas", "eps", "weight_decay"}
    assert set(OptimizerConfig("adahessian").hyperparameters()) == {
        "lr", "betas", "eps", "hessian_power", "update_each", "weight_decay"
    }
    sam = OptimizerConfig("sam", lr=0.05, rho=0.1).hyperparameters()
    assert sam == {"rho": 0.1, "sam_base": "sgd_momentum", "lr": 0.05, "momentum": 0.9, "nesterov": False,
                   "weight_decay": 0.0}


# ---- a tiny stacked problem --------------------------------------------------------------


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).to(DT)


def _convnet(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(8, 3)).to(DT)


def _stack(modules) -> O.Params:
    return {n: torch.stack([dict(m.named_parameters())[n].detach().clone() for m in modules])
            for n, _ in modules[0].named_parameters()}


def _objective(template: nn.Module, x: torch.Tensor, y: torch.Tensor) -> O.Objective:
    def single(p, xb, yb):
        return F.cross_entropy(functional_call(template, p, (xb,)), yb)

    return lambda params: (vmap(single)(params, x, y), None)


def _data(k: int, shape, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, 8, *shape, generator=g, dtype=DT), torch.randint(0, 3, (k, 8), generator=g)


def _run(config, params, objective, steps, generators=None):
    state = O.init_state(config, params)
    for _ in range(steps):
        result = O.step(config, params, state, objective, generators)
        params, state = result.params, result.state
    return params, state


TORCH_CASES = [
    (OptimizerConfig("sgd", lr=0.3), torch.optim.SGD, {"lr": 0.3}),
    (OptimizerConfig("sgd", lr=0.3, weight_decay=0.1), torch.optim.SGD, {"lr": 0.3, "weight_decay": 0.1}),
    (OptimizerConfig("sgd_momentum", lr=0.2, momentum=0.8), torch.optim.SGD, {"lr": 0.2, "momentum": 0.8}),
    (
        OptimizerConfig("sgd_momentum", lr=0.2, momentum=0.8, nesterov=True, weight_decay=0.05),
        torch.optim.SGD,
        {"lr": 0.2, "momentum": 0.8, "nesterov": True, "weight_decay": 0.05},
    ),
    (OptimizerConfig("adagrad", lr=0.1), torch.optim.Adagrad, {"lr": 0.1}),
    (
        OptimizerConfig("adagrad", lr=0.1, lr_decay=0.3, initial_accumulator_value=0.2, weight_decay=0.1, eps=1e-6),
        torch.optim.Adagrad,
        {"lr": 0.1, "lr_decay": 0.3, "initial_accumulator_value": 0.2, "weight_decay": 0.1, "eps": 1e-6},
    ),
    (OptimizerConfig("adam", lr=0.05, betas=(0.675, 0.999)), torch.optim.Adam, {"lr": 0.05, "betas": (0.675, 0.999)}),
    (
        OptimizerConfig("adam", lr=0.05, weight_decay=0.1, eps=1e-3),
        torch.optim.Adam,
        {"lr": 0.05, "weight_decay": 0.1, "eps": 1e-3},
    ),
]


@pytest.mark.parametrize("config, torch_cls, torch_kwargs", TORCH_CASES)
def test_matches_torch_optim_on_each_stacked_model(config, torch_cls, torch_kwargs):
    seeds, steps = (0, 1), 6
    x, y = _data(len(seeds), (5,))
    modules = [_mlp(s) for s in seeds]
    ours, _ = _run(config, _stack(modules), _objective(_mlp(0), x, y), steps)
    for k, module in enumerate(modules):
        opt = torch_cls(module.parameters(), **torch_kwargs)
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(module(x[k]), y[k]).backward()
            opt.step()
        for name, p in module.named_parameters():
            torch.testing.assert_close(ours[name][k], p.detach(), rtol=1e-12, atol=1e-14)
        # the trajectory must actually move, or the comparison proves nothing
        assert not torch.allclose(ours["0.weight"][k], _mlp(seeds[k])[0].weight.detach())


def test_step_does_not_mutate_inputs():
    x, y = _data(2, (5,))
    params = _stack([_mlp(0), _mlp(1)])
    before = {n: p.clone() for n, p in params.items()}
    config = OptimizerConfig("adam", lr=0.1)
    state = O.init_state(config, params)
    result = O.step(config, params, state, _objective(_mlp(0), x, y))
    O.step(config, result.params, result.state, _objective(_mlp(0), x, y))
    for name in params:
        assert torch.equal(params[name], before[name])
    assert torch.equal(result.state.buffers["exp_avg"]["0.weight"], O.step(
        config, params, state, _objective(_mlp(0), x, y)).state.buffers["exp_avg"]["0.weight"])


def test_sgd_momentum_hand_computed_on_a_quadratic():
    # L(w) = 0.5 * 3 w^2, w0 = 1: g1 = 3, b1 = 3, w1 = 1 - 0.1*3 = 0.7; g2 = 2.1, b2 = 0.9*3 + 2.1 = 4.8, w2 = 0.22
    config = OptimizerConfig("sgd_momentum", lr=0.1, momentum=0.9)
    params = {"w": torch.tensor([[1.0]], dtype=DT)}
    out, _ = _run(config, params, lambda p: (0.5 * 3 * p["w"].pow(2).sum(1), None), 2)
    assert out["w"].item() == pytest.approx(0.22, abs=1e-15)


# ---- AdaHessian --------------------------------------------------------------------------


def test_hutchinson_diagonal_converges_to_the_true_diagonal():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(6, 6, generator=g, dtype=DT)
    hessian = a @ a.T + torch.diag(torch.arange(1.0, 7.0, dtype=DT))
    params = {"w": torch.randn(1, 6, generator=g, dtype=DT)}

    def objective(p):
        w = p["w"][0]
        return (0.5 * w @ hessian @ w).reshape(1), None

    probes = [torch.Generator().manual_seed(11)]
    n = 4000
    samples = []
    for _ in range(n):
        _, _, grads, leaves = O.gradients_with_graph(objective, params)
        samples.append(O.hessian_diagonal_probe(grads, leaves, O.rademacher(params, probes))["w"][0])
    samples = torch.stack(samples)
    # each probe is off (the off-diagonal terms), their mean is not
    assert (samples[0] - hessian.diagonal()).abs().max() > 0.5
    # Var(z_i (Hz)_i) = sum_{j != i} H_ij^2 exactly for Rademacher z
    stderr = ((hessian.pow(2).sum(1) - hessian.diagonal().pow(2)) / n).sqrt()
    assert ((samples.mean(0) - hessian.diagonal()).abs() < 4 * stderr).all()
    assert torch.allclose(samples.var(0), stderr.pow(2) * n, rtol=0.1)


def test_rademacher_probes_are_signs_and_per_model_streams():
    like = {"a": torch.zeros(3, 4, 5, dtype=DT), "b": torch.zeros(3, 2, dtype=DT)}
    stacked = O.rademacher(like, [torch.Generator().manual_seed(s) for s in (5, 6, 7)])
    assert set(torch.cat([t.flatten() for t in stacked.values()]).tolist()) == {-1.0, 1.0}
    for k, s in enumerate((5, 6, 7)):
        alone = O.rademacher({n: t[:1] for n, t in like.items()}, [torch.Generator().manual_seed(s)])
        for name in like:
            assert torch.equal(alone[name][0], stacked[name][k])
    assert not torch.equal(stacked["a"][0], stacked["a"][1])


def test_spatial_average_follows_the_definition():
    g = torch.Generator().manual_seed(0)
    d = {"conv": torch.randn(2, 3, 4, 5, 5, generator=g), "fc": torch.randn(2, 7, 6, generator=g),
         "bias": torch.randn(2, 3, generator=g)}
    out = O.spatial_average(d)
    for k in range(2):
        for o in range(3):
            for i in range(4):
                expected = sum(abs(d["conv"][k, o, i, r, c].item()) for r in range(5) for c in range(5)) / 25
                assert torch.allclose(out["conv"][k, o, i], torch.full((5, 5), expected), atol=1e-6)
    assert torch.equal(out["fc"], d["fc"].abs()) and torch.equal(out["bias"], d["bias"].abs())


def test_adahessian_hand_computed_on_a_diagonal_quadratic():
    # diagonal H: z * Hz = diag(H) for every probe, so each step is known in closed form
    g = torch.Generator().manual_seed(1)
    h_conv = torch.randn(1, 2, 1, 2, 2, generator=g, dtype=DT)  # one stacked conv kernel, signs mixed
    h_bias = torch.randn(1, 3, generator=g, dtype=DT)
    w0 = {"conv": torch.randn(1, 2, 1, 2, 2, generator=g, dtype=DT), "bias": torch.randn(1, 3, generator=g, dtype=DT)}

    def objective(p):
        return 0.5 * ((h_conv * p["conv"] ** 2).sum((1, 2, 3, 4)) + (h_bias * p["bias"] ** 2).sum(1)), None

    lr, (b1, b2), k, eps = 0.1, (0.9, 0.999), 0.5, 1e-4
    config = OptimizerConfig("adahessian", lr=lr, betas=(b1, b2), hessian_power=k)
    gens = [torch.Generator().manual_seed(0)]
    one, _ = _run(config, w0, objective, 1, gens)
    d_conv = h_conv.abs().mean((3, 4), keepdim=True)  # the kernel's averaged diagonal
    # step 1: m_hat = g, v_hat = D^2, so w1 = w0 - lr g / (D^k + eps)
    torch.testing.assert_close(one["conv"], w0["conv"] - lr * h_conv * w0["conv"] / (d_conv**k + eps), rtol=1e-13, atol=0)
    torch.testing.assert_close(one["bias"], w0["bias"] - lr * h_bias * w0["bias"] / (h_bias.abs() ** k + eps), rtol=1e-13, atol=0)

    three, _ = _run(config, w0, objective, 3, [torch.Generator().manual_seed(0)])
    for name, h, d in (("conv", h_conv, d_conv), ("bias", h_bias, h_bias.abs())):
        w, m, v = w0[name], 0.0, 0.0
        for t in (1, 2, 3):
            m = b1 * m + (1 - b1) * h * w
            v = b2 * v + (1 - b2) * d * d
            w = w - lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)) ** (k / 2) + eps)
        torch.testing.assert_close(three[name], w, rtol=1e-13, atol=0)


def _reference_adahessian(module, x, y, gen, *, lr, betas, eps, k, wd, steps):
    """The authors' update (amirgholami/adahessian, image_classification), written imperatively."""
    params = list(module.parameters())
    names = [n for n, _ in module.named_parameters()]
    exp_avg = [torch.zeros_like(p) for p in params]
    exp_hess = [torch.zeros_like(p) for p in params]
    for t in range(1, steps + 1):
        loss = F.cross_entropy(module(x), y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        probe = O.rademacher({n: p.detach().unsqueeze(0) for n, p in zip(names, params)}, [gen])
        hvs = torch.autograd.grad(grads, params, grad_outputs=[probe[n][0] for n in names])
        traces = [hv.abs() if hv.dim() <= 2 else hv.abs().mean(dim=[2, 3], keepdim=True) for hv in hvs]
        with torch.no_grad():
            for i, p in enumerate(params):
                exp_avg[i] = exp_avg[i] * betas[0] + (1 - betas[0]) * grads[i].detach()
                exp_hess[i] = exp_hess[i] * betas[1] + (1 - betas[1]) * traces[i] * traces[i]
                bc1, bc2 = 1 - betas[0] ** t, 1 - betas[1] ** t
                denom = (exp_hess[i].sqrt() ** k) / math.sqrt(bc2) ** k + eps
                p.copy_(p - lr * (exp_avg[i] / bc1 / denom + wd * p))
    return dict(module.named_parameters())


@pytest.mark.parametrize("k, wd", [(1.0, 0.0), (0.5, 0.01)])
def test_adahessian_matches_the_authors_update_on_a_conv_net(k, wd):
    seeds, steps = (0, 1), 4
    x, y = _data(len(seeds), (1, 4, 4))
    modules = [_convnet(s) for s in seeds]
    config = OptimizerConfig("adahessian", lr=0.05, hessian_power=k, weight_decay=wd)
    gens = [torch.Generator().manual_seed(100 + s) for s in seeds]
    ours, _ = _run(config, _stack(modules), _objective(_convnet(0), x, y), steps, gens)
    for i, module in enumerate(modules):
        ref = _reference_adahessian(copy.deepcopy(module), x[i], y[i], torch.Generator().manual_seed(100 + seeds[i]),
                                    lr=0.05, betas=(0.9, 0.999), eps=1e-4, k=k, wd=wd, steps=steps)
        for name, p in ref.items():
            torch.testing.assert_close(ours[name][i], p.detach(), rtol=1e-11, atol=1e-13)
        assert not torch.allclose(ours["0.weight"][i], module[0].weight.detach())


def test_adahessian_update_each_reuses_the_diagonal_between_estimates():
    x, y = _data(1, (1, 4, 4))
    params = _stack([_convnet(0)])
    config = OptimizerConfig("adahessian", lr=0.05, update_each=2)
    gen = torch.Generator().manual_seed(0)
    state = O.init_state(config, params)
    diagonals, gen_states = [], []
    for _ in range(3):
        result = O.step(config, params, state, _objective(_convnet(0), x, y), [gen])
        params, state = result.params, result.state
        diagonals.append(state.buffers["hessian_diag"]["0.weight"])
        gen_states.append(gen.get_state())
    assert torch.equal(diagonals[0], diagonals[1]) and not torch.equal(diagonals[1], diagonals[2])
    assert torch.equal(gen_states[0], gen_states[1]) and not torch.equal(gen_states[1], gen_states[2])


def test_adahessian_needs_generators():
    x, y = _data(1, (5,))
    config = OptimizerConfig("adahessian")
    params = _stack([_mlp(0)])
    with pytest.raises(ValueError, match="^generators:"):
        O.step(config, params, O.init_state(config, params), _objective(_mlp(0), x, y))


# ---- SAM ---------------------------------------------------------------------------------


def test_sam_perturbation_has_norm_rho_per_model():
    g = torch.Generator().manual_seed(0)
    grads = {"a": torch.randn(3, 4, 5, generator=g, dtype=DT) * torch.tensor([1e-3, 1.0, 1e3], dtype=DT).view(3, 1, 1),
             "b": torch.randn(3, 7, generator=g, dtype=DT)}
    e = O.sam_perturbation(grads, O.stacked_norm(grads), 0.05)
    torch.testing.assert_close(O.stacked_norm(e), torch.full((3,), 0.05, dtype=DT), rtol=1e-9, atol=0)
    # a direction, not a new vector: e is parallel to g
    for k in range(3):
        flat_e = torch.cat([e["a"][k].flatten(), e["b"][k].flatten()])
        flat_g = torch.cat([grads["a"][k].flatten(), grads["b"][k].flatten()])
        torch.testing.assert_close(flat_e / flat_e.norm(), flat_g / flat_g.norm())


@pytest.mark.parametrize("base, torch_cls, kwargs", [
    ("sgd_momentum", torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
    ("adam", torch.optim.Adam, {"lr": 0.01}),
])
def test_sam_matches_the_reference_procedure(base, torch_cls, kwargs):
    # Foret et al. Algorithm 1 as davda54/sam runs it: ascend to w + e, take the gradient
    # there, come back to w, let the base optimizer step with that gradient
    seeds, steps, rho = (0, 1, 2), 4, 0.2
    x, y = _data(len(seeds), (5,))
    modules = [_mlp(s) for s in seeds]
    extra = {"momentum": kwargs.get("momentum")} if "momentum" in kwargs else {}
    config = OptimizerConfig("sam", sam_base=base, rho=rho, lr=kwargs["lr"],
                             weight_decay=kwargs.get("weight_decay", 0.0), **extra)
    ours, _ = _run(config, _stack(modules), _objective(_mlp(0), x, y), steps)
    for k, module in enumerate(modules):
        params = list(module.parameters())
        opt = torch_cls(params, **kwargs)
        for _ in range(steps):
            grads = torch.autograd.grad(F.cross_entropy(module(x[k]), y[k]), params)
            norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
            e = [rho * g / (norm + 1e-12) for g in grads]
            with torch.no_grad():
                for p, ei in zip(params, e):
                    p.add_(ei)
            opt.zero_grad()
            F.cross_entropy(module(x[k]), y[k]).backward()
            with torch.no_grad():
                for p, ei in zip(params, e):
                    p.sub_(ei)
            opt.step()
        for name, p in module.named_parameters():
            torch.testing.assert_close(ours[name][k], p.detach(), rtol=1e-11, atol=1e-13)


def test_sam_reports_the_gradient_norm_at_w():
    x, y = _data(2, (5,))
    params = _stack([_mlp(0), _mlp(1)])
    config = OptimizerConfig("sam", rho=0.5)
    result = O.step(config, params, O.init_state(config, params), _objective(_mlp(0), x, y))
    _, _, grads = O.gradients(_objective(_mlp(0), x, y), params)
    torch.testing.assert_close(result.gradient_norm, O.stacked_norm(grads))


def test_select_and_concat_round_trip():
    params = _stack([_mlp(0), _mlp(1), _mlp(2)])
    config = OptimizerConfig("adam")
    state = O.init_state(config, params)
    parts = [O.select(params, [2]), O.select(params, [0, 1])]
    joined = O.concat(parts)
    assert torch.equal(joined["0.weight"][0], params["0.weight"][2])
    assert torch.equal(joined["0.weight"][2], params["0.weight"][1])
    with pytest.raises(ValueError, match="^states:"):
        O.concat_states([state, O.OptimizerState(step=3, buffers=state.buffers)])
