"""Adaptive m-sharpness as Andriushchenko et al. (2023, "A modern look at the relationship between
sharpness and generalization", ICML) measure it in their released code (github.com/tml-epfl/
sharpness-vs-generalization: `sharpness.py`, functions `eval_APGD_sharpness` and
`weight_ascent_step_momentum`; `eval_sharpness.py` for the defaults; `sh/eval_sharpness_final.sh`
for the radii of the paper; `models.py`, `LogitNormalizationWrapper`, for logit normalization).

The measure. n evaluation points are cut into n / m batches of m points; L_b is the mean
cross-entropy of batch b. With T = diag(|w|) (adaptive) and p in {inf, 2},

    S_b(w) = max_{ ||T^{-1} delta||_p <= rho } L_b(w + delta) - L_b(w),
    S(w)   = (1 / n_batches) sum_b S_b(w)        (m-sharpness: one worst case per batch).

Every parameter of the model is perturbed, weights, biases and normalization layers alike (their
`eval_APGD_sharpness` loops over `model.parameters()`; its `layer_name_pattern` is never used).
For LeNet-5 the default is therefore all ten tensors conv1.weight, conv1.bias, ..., fc3.bias;
`perturb` restricts it to a set of names. A weight that is exactly zero has |w| = 0 and is never
moved. Buffers are not perturbed and the model is in eval mode.

Defaults of their code: n = 1024 points (`--n_eval_sharpness`) of the training set, the first n
in data-set order (loaders built with shuffle=False), m = 128 (`--bs_sharpness`; n must be a
multiple of m), 20 iterations (`--n_iters`), one restart, step-size multiplier 1, random start
off (`--sharpness_rand_init` is a store_true flag no script sets), `--adaptive` and
`--normalize_logits` off by default but set in the paper's runs; `--rho` defaults to 0.1 and the
paper scans, for the adaptive measure with normalized logits, rho in {0.001, 0.002, 0.004, 0.008}
(L-infinity, ResNet-18 on CIFAR-10; {5e-4 .. 4e-3} for ViTs) and {0.25, 0.5, 1, 2} (L2,
ResNet-18; {0.5 .. 4} for ViTs). Their average case (`eval_average_sharpness`) replaces the
maximum by the mean over 20 draws of delta = rho |w| * N(0, I) (L2) or rho |w| * U[-1, 1] (L-inf)
per batch; it is not implemented here (`adaptive.adaptive_average_of` is the m = n analogue).

Logit normalization (`normalize_logits=True`): the logits z of each example are centered and
scaled to unit L2 norm before the cross-entropy, z -> (z - mean(z)) / max(||z - mean(z)||_2,
1e-10). It removes the scale of the last layer: the loss is invariant to multiplying fc3 (weight
and bias) by any positive constant, so the sharpness is too.

The optimizer, their APGD variant (Croce & Hein 2020, adapted to weights), per batch:
- start: x_0 = delta_0 = 0, or with rand_init delta_0 = rho |w| * N(0, I) (L2) or
  rho |w| * U[-1, 1] (L-inf) (`random_init_lw`); x_{-1} = x_0.
- step k (k = 0 .. steps - 1), with g the gradient of L_b at the model's current weights:
  L-inf: z = clip(x_k + eta |w| sign(g), -rho |w|, rho |w|);
  L2 (theirs): z = Proj_E(x_k + eta |w| g / (||g||_2 + 1e-12)), Proj_E the Euclidean projection
  (in delta) onto the ellipsoid E = {||delta / |w| ||_2 <= rho}, computed by bisection on the
  Lagrange multiplier to a tolerance of 1e-5 on the norm;
  then x_{k+1} = 0.75 z + 0.25 x_{k-1} (their "momentum": a convex combination with the iterate
  *before* x_k, not APGD's x_k + 0.75 (z - x_k) + 0.25 (x_k - x_{k-1})), and L_b(w + x_{k+1}) is
  evaluated; the best value and point are kept (the best starts at the unperturbed L_b(w)).
- step size: eta_0 = 2 rho; at the checkpoints of APGD (p_0 = 0, p_1 = 0.22, p_{j+1} = p_j +
  max(p_j - p_{j-1} - 0.03, 0.06), 0-based iteration ceil(p_j * steps) in float arithmetic; for 20
  steps 5, 9, 12, 15, 16, 18, 19, for 10 steps 3, 5, 6, 8) eta is halved if fewer than 0.75 of
  the iterations since the last checkpoint improved the best value, or if neither eta nor the best
  value changed since then; on a halving the *model* is reset to the best point, so the next
  gradient is taken there, but the iterates x_k, x_{k-1} are not reset (their code reloads the
  state dict, not `delta_dict`; we reproduce that).
- S_b = best value - L_b(w) >= 0.

Where we follow and where we depart.
- L-infinity: their rule exactly. In u = delta / |w| the step is sign ascent and the clip is a
  clamp to [-rho, rho], so the iteration is invariant under any positive rescaling of the weights
  that preserves the function (Dinh et al. 2017).
- L2: `l2_step="theirs"` is their rule. It is not the steepest ascent of the adaptive problem:
  in u the step is T^{-1} grad_u / ||T^{-1} grad_u|| and the projection is not the one of the
  u-ball, so its fixed points are not the maximizers (on a quadratic 1/2 u^T A u they satisfy
  A u ~ T^{-1} u, not A u ~ u) and the iteration depends on the parametrization even though the
  objective does not. `l2_step="scaled"` (our default) does the same schedule, momentum and
  checkpoints in u: z = Proj(u_k + eta grad_u / (||grad_u||_2 + 1e-12)), grad_u = |w| g, Proj the
  rescaling onto the ball of radius rho. It reaches rho^2 / 2 lambda_max(T H T) on a quadratic
  and is rescaling-invariant. Measured: on a LeNet-5 trained 2 epochs on 12k MNIST images (1024
  points, m = 128, rho = 1, 20 steps, float32) theirs finds 0.114 against 0.125 with normalized
  logits and 1.27 against 1.45 without; on a small ReLU net whose first layer is scaled by 5 or
  0.1 (the second by the inverse) theirs moves by 11 to 25 %, ours by 1e-15.
- Their ellipsoid projection divides 0 by 0 when a weight is exactly zero (the norm is NaN and the
  projection silently never happens); we leave zero weights out of the norm (they never move).
  We solve the projection to 1e-12 relative instead of 1e-5 absolute (Newton on the secular
  equation 1 / ||.|| - 1 / rho, which is concave, started from the left, then a final rescale).
- Their code computes the gradient at x_{k+1} in a second forward pass after evaluating the loss
  there; we take the value and the gradient of one pass (identical numbers, one forward fewer per
  step), skip the gradient after the last step, and keep the gradient of the best point for the
  reset. A step's backward pass runs only when the next step asks for its gradient: after a halving
  at a checkpoint the next step starts from the best point's gradient, and the step's own is never
  computed (the same numbers). From the zero start every radius and norm begins at the same L_b(w) and gradient: they
  are computed once per batch (`batch_bases`) and shared by all the measures of a run, the same
  numbers bit for bit (8 of the 88 loss-and-gradient passes per measure at n = 1024, m = 128,
  10 steps). Running the 8 batches of a step as one `vmap`ped call was measured 1.6x slower on
  one CPU thread (0.19 s against 0.12 s per step), so batches run one after another.
- rand_init: their random start is dead code (`init_fn = partial(...),` makes init_fn a tuple, so
  `--sharpness_rand_init` crashes), which is why their runs use the zero start; we keep the zero
  start as the default. Their L2 random start rho |w| * N(0, I) lies outside the ball (relative
  norm about rho sqrt(d)) and x_1 keeps 0.25 of it, so the first value could break the
  constraint; ours puts u = delta / |w| uniformly on the sphere of radius rho (their unused
  `random_init_on_sphere_delta_dict`, made adaptive). L-inf: their uniform draw in the box. Draws
  come from an explicit torch.Generator (CPU, float64), one per batch in order. At an exact
  minimum of every L_b (a test's quadratic) the gradient at delta = 0 vanishes and the zero start
  never moves: use rand_init there.
- Restarts (n_restarts, 1 in all their runs) and the error increase they also report are left out.
- Evaluation points: by default the first n_points, in order, as theirs; with a generator, a
  uniformly random subset of n_points drawn with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from minima.objective import Params, frozen_copy

LossFn = Callable[[Params], torch.Tensor]  # differentiable scalar
Base = tuple[float, torch.Tensor]  # L_b(w) and the flat gradient of L_b at w over the perturbed coordinates

NORMS = ("linf", "l2")
L2_STEPS = ("scaled", "theirs")
MOMENTUM = 0.75  # their weight of the new projected point; 0.25 goes to x_{k-1}
MIN_UPDATE_RATIO = 0.75  # their min_update_ratio
GRAD_EPS = 1e-12  # their guard in g / (||g|| + 1e-12)
LOGIT_NORM_FLOOR = 1e-10  # their floor on the norm of the centered logits


@dataclass(frozen=True)
class MSharpness:
    value: float  # mean over batches of the worst-case loss increase found
    norm: str  # "linf" | "l2"
    rho: float
    m: int | None  # batch size, when the batch losses carry their size (`BatchLoss`)
    n_batches: int
    n_points: int | None  # evaluation points in all, when known
    normalize_logits: bool | None  # as recorded by the batch losses; None for a generic callable
    steps: int
    adaptive: bool
    rand_init: bool
    l2_step: str
    perturbed: tuple[str, ...]  # parameter names that were perturbed
    per_batch: tuple[float, ...]  # S_b
    per_batch_loss: tuple[float, ...]  # L_b(w)
    per_batch_relative_norm: tuple[float, ...]  # ||delta_b* / |w| ||_p of the best point (0: none beat w)
    per_batch_improvements: tuple[int, ...]  # steps that beat the best value so far
    per_batch_halvings: tuple[int, ...]  # step-size halvings at checkpoints
    per_batch_final_step: tuple[float, ...]  # eta at the end, in units of rho


def checkpoints(steps: int) -> tuple[int, ...]:
    """0-based iterations at which their APGD may halve the step (their float arithmetic)."""
    p = [0.0, 0.22]
    w = [0, math.ceil(steps * 0.22)]
    while w[-1] < steps and w[-1] != w[-2]:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
        w.append(math.ceil(p[-1] * steps))
    return tuple(w[1:])


@dataclass(frozen=True)
class BatchLoss:
    """Mean cross-entropy of one batch of m points, at a parameter dict (an eval-mode copy)."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    normalize_logits: bool

    @property
    def size(self) -> int:
        return len(self.y)

    def __call__(self, params: Params) -> torch.Tensor:
        logits = functional_call(self.model, params, (self.x,))
        if self.normalize_logits:
            logits = normalized_logits(logits)
        return F.cross_entropy(logits, self.y)


def normalized_logits(logits: torch.Tensor) -> torch.Tensor:
    """Their LogitNormalizationWrapper: center each row, divide by its L2 norm (floored at 1e-10)."""
    centered = logits - logits.mean(dim=-1, keepdim=True)
    norms = centered.norm(dim=-1, keepdim=True).clamp_min(LOGIT_NORM_FLOOR)
    return centered / norms


def model_batch_losses(
    model: nn.Module,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    m: int = 128,
    normalize_logits: bool,
    n_points: int = 1024,
    generator: torch.Generator | None = None,
) -> list[BatchLoss]:
    """The n_points / m batch losses of a model on (x, y), on an eval-mode copy, in params' dtype
    and device. generator=None takes the first n_points in order (their code); a generator draws
    a uniformly random subset of n_points (without replacement) and batches it in drawn order."""
    _check_int("m", m, 1)
    _check_int("n_points", n_points, 1)
    if n_points > len(y):
        raise ValueError(f"n_points: must be at most the {len(y)} points given, got {n_points}")
    if n_points % m:
        raise ValueError(f"n_points: must be a multiple of m = {m} (their assertion), got {n_points}")
    if not params:
        raise ValueError("params: must not be empty")
    like = next(iter(params.values()))
    if generator is None:
        index = torch.arange(n_points)
    else:
        index = torch.randperm(len(y), generator=generator)[:n_points]
    clone = frozen_copy(model).to(device=like.device, dtype=like.dtype)
    xs = x[index.to(x.device)].to(device=like.device, dtype=like.dtype)
    ys = y[index.to(y.device)].to(device=like.device)
    return [
        BatchLoss(clone, xs[start : start + m], ys[start : start + m], bool(normalize_logits))
        for start in range(0, n_points, m)
    ]


def m_sharpness_of(
    batch_losses: Sequence[LossFn],
    params: Params,
    *,
    norm: str,
    rho: float,
    steps: int = 20,
    generator: torch.Generator | None,
    rand_init: bool = False,
    adaptive: bool = True,
    l2_step: str = "scaled",
    perturb: Collection[str] | None = None,
    bases: Sequence[Base] | None = None,
) -> MSharpness:
    """Mean over batches of max_{||delta / |w| ||_p <= rho} L_b(w + delta) - L_b(w), by their APGD.

    perturb: names of the parameters to perturb (default: all, as their code). generator: used
    only by rand_init (may be None otherwise). adaptive=False measures with T = I instead.
    bases: `batch_bases(batch_losses, params, perturb)`, L_b(w) and its gradient per batch, when
    several measures share them (computed here otherwise).
    """
    if norm not in NORMS:
        raise ValueError(f"norm: must be one of {NORMS}, got {norm!r}")
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not math.isfinite(rho) or rho <= 0:
        raise ValueError(f"rho: must be a finite number > 0, got {rho!r}")
    _check_int("steps", steps, 1)
    if l2_step not in L2_STEPS:
        raise ValueError(f"l2_step: must be one of {L2_STEPS}, got {l2_step!r}")
    if len(batch_losses) == 0:
        raise ValueError("batch_losses: must hold at least one batch loss")
    if rand_init and generator is None:
        raise ValueError("generator: rand_init needs a torch.Generator")
    names = tuple(params) if perturb is None else tuple(name for name in params if name in set(perturb))
    if perturb is not None:
        unknown = sorted(set(perturb) - set(params))
        if unknown:
            raise ValueError(f"perturb: unknown parameter names {unknown}")
    if not names:
        raise ValueError("perturb: must name at least one parameter")

    frozen = {name: p.detach() for name, p in params.items()}
    w = torch.cat([frozen[name].reshape(-1) for name in names])
    scale = w.abs() if adaptive else torch.ones_like(w)
    if not adaptive:
        l2_step = "scaled"  # with T = I their rule and ours coincide
    if bases is not None and (len(bases) != len(batch_losses) or any(g.shape != w.shape for _, g in bases)):
        raise ValueError("bases: must hold one (loss, gradient over the perturbed coordinates) per batch loss")
    solver = _Solver(frozen, names, w, scale, norm=norm, rho=float(rho), steps=steps, l2_step=l2_step)
    runs = [solver.run(loss, generator if rand_init else None, None if bases is None else bases[b])
            for b, loss in enumerate(batch_losses)]

    sizes = [getattr(loss, "size", None) for loss in batch_losses]
    known = all(isinstance(s, int) for s in sizes)
    flags = {getattr(loss, "normalize_logits", None) for loss in batch_losses}
    return MSharpness(
        value=sum(r.increase for r in runs) / len(runs),
        norm=norm,
        rho=float(rho),
        m=max(sizes) if known else None,
        n_batches=len(runs),
        n_points=sum(sizes) if known else None,
        normalize_logits=flags.pop() if len(flags) == 1 else None,
        steps=steps,
        adaptive=adaptive,
        rand_init=rand_init,
        l2_step=l2_step,
        perturbed=names,
        per_batch=tuple(r.increase for r in runs),
        per_batch_loss=tuple(r.loss for r in runs),
        per_batch_relative_norm=tuple(r.relative_norm for r in runs),
        per_batch_improvements=tuple(r.improvements for r in runs),
        per_batch_halvings=tuple(r.halvings for r in runs),
        per_batch_final_step=tuple(r.final_step for r in runs),
    )


def batch_bases(batch_losses: Sequence[LossFn], params: Params, perturb: Collection[str] | None = None) -> list[Base]:
    """(L_b(w), gradient of L_b at w over the perturbed coordinates, flat) per batch: where every
    zero-start ascent begins, whatever its norm and radius."""
    names = tuple(params) if perturb is None else tuple(name for name in params if name in set(perturb))
    frozen = {name: p.detach() for name, p in params.items()}
    w = torch.cat([frozen[name].reshape(-1) for name in names])
    # the solver's own evaluation, so the shared numbers are bit for bit those a measure computes
    solver = _Solver(frozen, names, w, w.abs(), norm="l2", rho=1.0, steps=1, l2_step="scaled")
    return [solver._value_and_grad(loss, torch.zeros_like(w)) for loss in batch_losses]


def _check_int(name: str, field: object, minimum: int) -> None:
    if isinstance(field, bool) or not isinstance(field, int) or field < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {field!r}")


@dataclass(frozen=True)
class _Run:
    increase: float
    loss: float
    relative_norm: float
    improvements: int
    halvings: int
    final_step: float


class _Solver:
    """Their APGD on one batch loss at a time; iterates are perturbations delta of the perturbed
    coordinates, flat (the L2 'scaled' rule is written in delta too: delta = |w| u)."""

    def __init__(self, params: Params, names: tuple[str, ...], w: torch.Tensor, scale: torch.Tensor, *,
                 norm: str, rho: float, steps: int, l2_step: str):
        self.params, self.names, self.w, self.scale = params, names, w, scale
        self.norm, self.rho, self.steps, self.l2_step = norm, rho, steps, l2_step
        self.moving = scale > 0  # coordinates with |w| = 0 never move
        self.checkpoints = frozenset(checkpoints(steps))

    def _at(self, point: torch.Tensor) -> Params:
        out, offset = dict(self.params), 0
        for name in self.names:
            p = self.params[name]
            out[name] = point[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        return out

    def _value(self, loss: LossFn, delta: torch.Tensor) -> float:
        with torch.no_grad():
            return float(loss(self._at(self.w + delta)))

    def _value_and_grad(self, loss: LossFn, delta: torch.Tensor) -> tuple[float, torch.Tensor]:
        leaf = (self.w + delta).detach().requires_grad_(True)
        with torch.enable_grad():
            out = loss(self._at(leaf))
            (grad,) = torch.autograd.grad(out, leaf)
        return float(out.detach()), grad

    def _value_and_pending_grad(self, loss: LossFn, delta: torch.Tensor) -> tuple[float, "_Pending"]:
        """The value now, the gradient when first asked for (the graph is kept until then)."""
        leaf = (self.w + delta).detach().requires_grad_(True)
        with torch.enable_grad():
            out = loss(self._at(leaf))
        return float(out.detach()), _Pending(out, leaf)

    def _relative_norm(self, delta: torch.Tensor) -> float:
        u = delta[self.moving] / self.scale[self.moving]
        if u.numel() == 0:
            return 0.0
        return float(u.abs().max() if self.norm == "linf" else u.norm())

    def _start(self, generator: torch.Generator | None) -> torch.Tensor:
        if generator is None:
            return torch.zeros_like(self.w)
        shape = tuple(self.w.shape)
        if self.norm == "linf":
            u = 2 * torch.rand(shape, generator=generator, dtype=torch.float64) - 1
            return u.to(self.w) * (self.rho * self.scale)
        direction = torch.randn(shape, generator=generator, dtype=torch.float64).to(self.w)
        direction = direction * self.moving
        length = direction.norm()
        if length == 0:
            return torch.zeros_like(self.w)
        return direction * (self.rho / length) * self.scale  # u on the sphere of radius rho

    def _step(self, delta: torch.Tensor, grad: torch.Tensor, eta: float) -> torch.Tensor:
        s, rho = self.scale, self.rho
        if self.norm == "linf":
            moved = delta + eta * s * grad.sign()
            return torch.maximum(torch.minimum(moved, rho * s), -rho * s)
        if self.l2_step == "theirs":
            moved = delta + (eta / (grad.norm() + GRAD_EPS)) * s * grad
            return _onto_ellipsoid(moved, s, self.moving, rho)
        grad_u = s * grad
        moved = delta + (eta / (grad_u.norm() + GRAD_EPS)) * s * grad_u
        relative = self._relative_norm(moved)
        return moved * (rho / relative) if relative > rho else moved

    def run(self, loss: LossFn, generator: torch.Generator | None, base_and_grad: Base | None = None) -> _Run:
        zero = torch.zeros_like(self.w)
        if generator is None:
            base, grad = self._value_and_grad(loss, zero) if base_and_grad is None else base_and_grad
            delta = zero
        else:
            base = self._value(loss, zero) if base_and_grad is None else base_and_grad[0]
            delta = self._start(generator)
            _, grad = self._value_and_grad(loss, delta)
        previous = delta
        best, best_delta, best_grad = base, delta, grad  # their worst_model_dict starts at the start
        eta = prev_eta = 2 * self.rho
        prev_best, prev_cp, updates, improvements, halvings = base, 0, 0, 0, 0
        improved_any = False
        for i in range(self.steps):
            z = self._step(delta, grad if isinstance(grad, torch.Tensor) else grad(), eta)
            delta, previous = MOMENTUM * z + (1 - MOMENTUM) * previous, delta
            if i + 1 < self.steps:
                # the backward pass waits until the next step asks: a halving that resets the
                # model to the best point discards this gradient (identical numbers either way)
                value, grad = self._value_and_pending_grad(loss, delta)
            else:
                value = self._value(loss, delta)
            if value > best:
                best, best_delta, best_grad = value, delta, grad
                updates, improvements, improved_any = updates + 1, improvements + 1, True
            if i in self.checkpoints:
                stalled = updates < MIN_UPDATE_RATIO * (i - prev_cp)
                unchanged = prev_eta == eta and prev_best == best
                prev_eta, prev_best, prev_cp, updates = eta, best, i, 0
                if stalled or unchanged:
                    eta *= 0.5
                    halvings += 1
                    grad = best_grad  # the model is reset to the best point; delta is not
        return _Run(
            increase=best - base,
            loss=base,
            relative_norm=self._relative_norm(best_delta) if improved_any else 0.0,
            improvements=improvements,
            halvings=halvings,
            final_step=eta / self.rho,
        )


class _Pending:
    """The gradient of one forward pass, computed on first call and kept."""

    def __init__(self, out: torch.Tensor, leaf: torch.Tensor):
        self._out, self._leaf, self._grad = out, leaf, None

    def __call__(self) -> torch.Tensor:
        if self._grad is None:
            with torch.enable_grad():
                (self._grad,) = torch.autograd.grad(self._out, self._leaf)
            self._out = self._leaf = None
        return self._grad


def _onto_ellipsoid(delta: torch.Tensor, scale: torch.Tensor, moving: torch.Tensor, rho: float) -> torch.Tensor:
    """Euclidean projection (in delta) onto {||delta / scale||_2 <= rho}, zero-scale coordinates
    set to zero. The minimizer is b / (c + mu) with b = delta * scale^2, c = scale^2, and mu >= 0
    the root of psi(mu) = 1 / ||b / (c + mu)|| - 1 / rho, increasing and concave (the trust-region
    secular equation), so Newton from mu = 0 increases monotonically to it."""
    out = torch.zeros_like(delta)
    d, s = delta[moving], scale[moving]
    c = s * s
    b = d * c

    def norm_at(mu: float) -> torch.Tensor:
        return (b / (c + mu) / s).norm()  # ||x / s|| with x = b / (c + mu)

    n = norm_at(0.0)
    if not n > rho:
        out[moving] = d
        return out
    mu = 0.0
    for _ in range(100):
        q = b / (c + mu)
        n = (q / s).norm()
        if n <= rho * (1 + 1e-12):
            break
        # d/dmu ||x / s||^2 = -2 sum b^2 / (c + mu)^3 / c ; psi' = -(d n / d mu) / n^2
        dn = -((q / s) ** 2 / (c + mu)).sum() / n
        psi, dpsi = 1 / n - 1 / rho, -dn / n**2
        mu = mu - float(psi / dpsi)
    x = b / (c + mu)
    n = (x / s).norm()
    if n > rho:
        x = x * (rho / n)
    out[moving] = x
    return out
