"""Functional optimizers over stacked parameters: K models take one step together.

Every parameter tensor carries a leading model axis K (a single model is K = 1), so one code
path trains one model or many seeds at once. A step never mutates its inputs: it returns new
parameters and a new state. Gradients come from an *objective*, a closure
`params -> (losses [K], aux)`, which the step may evaluate more than once (SAM) or
differentiate twice (AdaHessian). Model k's loss must depend on model k's slice only; then
d(sum_k L_k)/dw_k = dL_k/dw_k and all per-model gradients come from one backward pass.

Update rules (g: minibatch gradient, t: step count from 1, lambda: weight decay):

- `sgd`, `sgd_momentum` (torch.optim.SGD, dampening 0): g <- g + lambda w;
  b <- mu b + g (b_1 = g); d = g + mu b if nesterov else b; w <- w - lr d.
- `adagrad` (torch.optim.Adagrad): g <- g + lambda w; s <- s + g^2 (s_0 = initial accumulator);
  w <- w - lr / (1 + (t - 1) lr_decay) * g / (sqrt(s) + eps).
- `adam` (torch.optim.Adam, L2 weight decay): g <- g + lambda w; m <- lerp(m, g, 1 - b1);
  v <- b2 v + (1 - b2) g^2; w <- w - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
- `adahessian` (Yao et al. 2021, "ADAHESSIAN: An Adaptive Second Order Optimizer for Machine
  Learning", AAAI, Algorithm 1). Hutchinson: for a Rademacher z, E[z * (H z)] = diag(H); H z is
  the gradient of <g, z> (double backward on the minibatch loss). D = |z * H z|, and for a conv
  kernel [out, in, kh, kw] D is replaced by its mean over the kh x kw positions (the paper's
  spatial averaging, Eq. 10; the absolute value before averaging follows the authors' code,
  amirgholami/adahessian, image_classification/optim_adahessian.py). Other tensors are not
  averaged. Then m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) D^2;
  w <- w - lr * ( (m / (1 - b1^t)) / ((v / (1 - b2^t))^(k/2) + eps) + lambda w ),
  with k = hessian_power: the paper's v_t = (sqrt(v_hat))^k, eps added after the power and
  weight decay decoupled and scaled by lr, exactly as the authors' code. With update_each = n
  the Hessian diagonal is re-estimated on steps 1, n + 1, 2n + 1, ... and reused in between (as
  davda54/ada-hessian does); the moments are updated every step.
  Library versions differ: pytorch_optimizer 4.1.0 `AdaHessian` uses lr 0.15 and eps 1e-16 and
  does not average conv kernels (it diverged to 9.8 % test accuracy within 3 epochs on LeNet-5
  here); torch-optimizer 0.3.0 defaults hessian_power to 0.5 (the paper's default is 1) and
  fails on 3-D tensors. Ours: eps 1e-4, hessian_power 1, lr 0.15, conv kernels averaged.
- `sam` (Foret et al. 2021, "Sharpness-Aware Minimization for Efficiently Improving
  Generalization", ICLR, Algorithm 1): e = rho g / (||g|| + 1e-12), the norm over all of one
  model's parameters; g_sam = gradient at w + e; the base optimizer (`sam_base`) steps from w
  with g_sam. The 1e-12 guard is the reference implementation's (davda54/sam).

Random draws (AdaHessian's probes) come from one explicit torch.Generator per stacked model,
each model drawing one flat vector of all its parameters per probe, so a model's trajectory is
the same whether it is trained alone or stacked with others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from minima.specs import OptimizerConfig  # noqa: F401  (declared torch-free; imported from here too)

Params = dict[str, torch.Tensor]  # name -> stacked tensor [K, *shape]
Objective = Callable[[Params], tuple[torch.Tensor, Any]]  # params -> (losses [K], aux)

_SAM_NORM_GUARD = 1e-12

@dataclass(frozen=True)
class OptimizerState:
    """`step`: steps taken (shared by the stack); `buffers`: buffer name -> stacked Params."""

    step: int
    buffers: dict[str, Params]


@dataclass(frozen=True)
class StepResult:
    params: Params  # after the step
    state: OptimizerState
    loss: torch.Tensor  # [K] minibatch loss at the parameters before the step
    aux: Any  # the objective's aux at the parameters before the step
    gradient_norm: torch.Tensor  # [K] norm of the minibatch gradient there


_BUFFERS = {
    "sgd": (),
    "sgd_momentum": ("momentum",),
    "adagrad": ("sum",),
    "adam": ("exp_avg", "exp_avg_sq"),
    "adahessian": ("exp_avg", "exp_hessian_diag_sq", "hessian_diag"),
}


def init_state(config: OptimizerConfig, params: Params) -> OptimizerState:
    fill = {"sum": config.initial_accumulator_value}
    buffers = {
        name: {p_name: torch.full_like(p, fill.get(name, 0.0)) for p_name, p in params.items()}
        for name in _BUFFERS[config.base]
    }
    return OptimizerState(step=0, buffers=buffers)


def step(
    config: OptimizerConfig,
    params: Params,
    state: OptimizerState,
    objective: Objective,
    generators: Sequence[torch.Generator] | None = None,
) -> StepResult:
    """One step of every stacked model; `generators` (one per model) only for adahessian."""
    if config.name == "adahessian":
        return _adahessian_step(config, params, state, objective, generators)
    if config.name == "sam":
        return _sam_step(config, params, state, objective)
    loss, aux, grads = gradients(objective, params)
    new_params, new_state = _base_update(config, params, grads, state)
    return StepResult(new_params, new_state, loss, aux, stacked_norm(grads))


def gradients(objective: Objective, params: Params) -> tuple[torch.Tensor, Any, Params]:
    """(losses [K] detached, aux, per-model gradients), all from one backward pass."""
    loss, aux, grads, _ = gradients_with_graph(objective, params, create_graph=False)
    return loss, aux, grads


def gradients_with_graph(
    objective: Objective, params: Params, *, create_graph: bool = True
) -> tuple[torch.Tensor, Any, Params, Params]:
    """As `gradients`, the gradients still differentiable, plus the leaves they belong to."""
    leaves = {name: p.detach().requires_grad_(True) for name, p in params.items()}
    loss, aux = objective(leaves)
    grads = torch.autograd.grad(loss.sum(), list(leaves.values()), create_graph=create_graph)
    return loss.detach(), aux, dict(zip(leaves, grads)), leaves


def stacked_norm(tensors: Params) -> torch.Tensor:
    """Per-model Euclidean norm over all of that model's tensors: [K]."""
    flat = torch.cat([t.detach().reshape(t.shape[0], -1) for t in tensors.values()], dim=1)
    return torch.linalg.vector_norm(flat, dim=1)  # one kernel, not one per tensor


def _per_model(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape [K] so it broadcasts against a stacked tensor [K, ...]."""
    return values.reshape((-1,) + (1,) * (like.dim() - 1))


def _base_update(config: OptimizerConfig, params: Params, grads: Params, state: OptimizerState):
    rule = {"sgd": _sgd, "sgd_momentum": _sgd, "adagrad": _adagrad, "adam": _adam}[config.base]
    t = state.step + 1
    new_params: Params = {}
    new_buffers: dict[str, Params] = {name: {} for name in state.buffers}
    for name, p in params.items():
        g = grads[name].detach()
        if config.weight_decay:
            g = g.add(p, alpha=config.weight_decay)
        buffers = {b: state.buffers[b][name] for b in state.buffers}
        new_params[name], updated = rule(config, p.detach(), g, buffers, t)
        for b, value in updated.items():
            new_buffers[b][name] = value
    return new_params, OptimizerState(step=t, buffers=new_buffers)


def _sgd(config, p, g, buffers, t):
    if config.base == "sgd":
        return p.add(g, alpha=-config.lr), {}
    # torch starts the buffer at g; mu * 0 + g is g exactly, so a zero start is the same
    buf = buffers["momentum"].mul(config.momentum).add_(g)
    direction = g.add(buf, alpha=config.momentum) if config.nesterov else buf
    return p.add(direction, alpha=-config.lr), {"momentum": buf}


def _adagrad(config, p, g, buffers, t):
    clr = config.lr / (1 + (t - 1) * config.lr_decay)
    total = buffers["sum"].addcmul(g, g, value=1)
    std = total.sqrt().add_(config.eps)
    return p.addcdiv(g, std, value=-clr), {"sum": total}


def _adam(config, p, g, buffers, t):
    beta1, beta2 = config.betas
    exp_avg = buffers["exp_avg"].lerp(g, 1 - beta1)
    exp_avg_sq = buffers["exp_avg_sq"].mul(beta2).addcmul_(g, g, value=1 - beta2)
    step_size = config.lr / (1 - beta1**t)
    denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**t)).add_(config.eps)
    return p.addcdiv(exp_avg, denom, value=-step_size), {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}


def _sam_step(config: OptimizerConfig, params: Params, state: OptimizerState, objective: Objective) -> StepResult:
    loss, aux, grads = gradients(objective, params)
    norm = stacked_norm(grads)
    ascent = sam_perturbation(grads, norm, config.rho)
    perturbed = {name: p.detach() + ascent[name] for name, p in params.items()}
    _, _, sam_grads = gradients(objective, perturbed)
    new_params, new_state = _base_update(config, params, sam_grads, state)
    return StepResult(new_params, new_state, loss, aux, norm)


def sam_perturbation(grads: Params, norm: torch.Tensor, rho: float) -> Params:
    """e = rho g / (||g|| + 1e-12), each model scaled by its own norm."""
    scale = rho / (norm + _SAM_NORM_GUARD)
    return {name: g.detach() * _per_model(scale, g) for name, g in grads.items()}


def rademacher(like: Params, generators: Sequence[torch.Generator]) -> Params:
    """One Rademacher (+-1) probe per model, drawn as one flat vector from that model's generator."""
    first = next(iter(like.values()))
    if len(generators) != first.shape[0]:
        raise ValueError(f"generators: need one per stacked model ({first.shape[0]}), got {len(generators)}")
    size = sum(p[0].numel() for p in like.values())
    flat = torch.stack(
        [torch.randint(0, 2, (size,), generator=g, device=g.device).to(first.device) for g in generators]
    ).to(first.dtype).mul_(2).sub_(1)
    out, offset = {}, 0
    for name, p in like.items():
        n = p[0].numel()
        out[name] = flat[:, offset : offset + n].reshape(p.shape)
        offset += n
    return out


def hessian_diagonal_probe(grads: Params, leaves: Params, probe: Params) -> Params:
    """z * (H z): an unbiased estimate of diag(H) (Hutchinson); grads must carry a graph."""
    names = list(leaves)
    hz = torch.autograd.grad(
        [grads[n] for n in names], [leaves[n] for n in names], grad_outputs=[probe[n] for n in names]
    )
    return {n: probe[n] * h.detach() for n, h in zip(names, hz)}


def spatial_average(diagonal: Params) -> Params:
    """|D|, averaged over the kernel positions of each conv weight [K, out, in, kh, kw]."""
    out = {}
    for name, d in diagonal.items():
        d = d.abs()
        if d.dim() - 1 == 4:
            d = d.mean(dim=(-2, -1), keepdim=True).expand_as(d)
        out[name] = d
    return out


def _adahessian_step(
    config: OptimizerConfig,
    params: Params,
    state: OptimizerState,
    objective: Objective,
    generators: Sequence[torch.Generator] | None,
) -> StepResult:
    t = state.step + 1
    fresh = (t - 1) % config.update_each == 0
    if fresh:
        if generators is None:
            raise ValueError("generators: adahessian needs one torch.Generator per stacked model")
        loss, aux, grads, leaves = gradients_with_graph(objective, params)
        probe = rademacher(params, generators)
        hessian = spatial_average(hessian_diagonal_probe(grads, leaves, probe))
    else:
        loss, aux, grads = gradients(objective, params)
        hessian = state.buffers["hessian_diag"]
    beta1, beta2 = config.betas
    k = config.hessian_power
    buffers: dict[str, Params] = {"exp_avg": {}, "exp_hessian_diag_sq": {}, "hessian_diag": hessian}
    new_params: Params = {}
    for name, p in params.items():
        p, g, d = p.detach(), grads[name].detach(), hessian[name]
        m = state.buffers["exp_avg"][name].mul(beta1).add_(g, alpha=1 - beta1)
        v = state.buffers["exp_hessian_diag_sq"][name].mul(beta2).addcmul_(d, d, value=1 - beta2)
        denom = (v / (1 - beta2**t)).pow(k / 2).add_(config.eps)
        update = (m / (1 - beta1**t)).div_(denom)
        if config.weight_decay:
            update = update.add_(p, alpha=config.weight_decay)
        new_params[name] = p.add(update, alpha=-config.lr)
        buffers["exp_avg"][name], buffers["exp_hessian_diag_sq"][name] = m, v
    grad_norm = stacked_norm({n: g.detach() for n, g in grads.items()})
    return StepResult(new_params, OptimizerState(step=t, buffers=buffers), loss, aux, grad_norm)


def select(params: Params, index: torch.Tensor | Sequence[int]) -> Params:
    """The stacked models at `index`, in that order."""
    index = torch.as_tensor(index, dtype=torch.long)
    return {name: p.index_select(0, index.to(p.device)) for name, p in params.items()}


def select_state(state: OptimizerState, index: torch.Tensor | Sequence[int]) -> OptimizerState:
    return OptimizerState(state.step, {b: select(values, index) for b, values in state.buffers.items()})


def concat(parts: Sequence[Params]) -> Params:
    """Stack groups of models along the model axis."""
    return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}


def concat_states(states: Sequence[OptimizerState]) -> OptimizerState:
    steps = {s.step for s in states}
    if len(steps) != 1:
        raise ValueError(f"states: models stacked together must have taken the same steps, got {sorted(steps)}")
    buffers = {b: concat([s.buffers[b] for s in states]) for b in states[0].buffers}
    return OptimizerState(steps.pop(), buffers)
