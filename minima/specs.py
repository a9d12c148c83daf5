"""What a profile can say, with no torch: every stage's settings, the model variants and the
measures the sharpness settings ask for.

The stages that compute import these from here (their modules re-export them); `plan`,
`execute`, `summarize` and the report need nothing else, so they run without importing torch
(about 2 s of CPU per process: a `make all` runs several such processes, a `make report` one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

from minima.settings import (Fraction, NonNegativeFloat, NonNegativeInt, Optimizer, PositiveFloat, PositiveInt,
                             settings)

# ---- the model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    activation: str  # "relu" | "tanh"
    pooling: str  # "max" | "avg"
    input_size: int  # side of the square input image
    conv1_padding: int

    @property
    def n_params(self) -> int:
        """LeNet-5's parameter count, weights and biases, from LAYER_SHAPES (the input size
        changes conv1's padding, not its weights)."""
        return sum(out * (inputs * (kernel * kernel if kernel else 1) + 1) for inputs, out, kernel in LAYER_SHAPES.values())


VARIANTS = {
    "modern": Variant("modern", activation="relu", pooling="max", input_size=28, conv1_padding=2),
    "seed": Variant("seed", activation="tanh", pooling="avg", input_size=32, conv1_padding=0),
}


def variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"unknown model variant {name!r}; choose one of {sorted(VARIANTS)}")
    return VARIANTS[name]


# LeNet-5's layers in order, name -> (input channels or features, outputs, kernel side; 0 for a
# fully connected layer): what minima.models builds and what Variant.n_params counts.
LAYER_SHAPES: dict[str, tuple[int, int, int]] = {
    "conv1": (1, 6, 5), "conv2": (6, 16, 5), "fc1": (16 * 5 * 5, 120, 0), "fc2": (120, 84, 0), "fc3": (84, 10, 0)}
LAYERS = tuple(LAYER_SHAPES)


# ---- training -------------------------------------------------------------------------------

# Defaults that depend on the optimizer (None in the dataclass means "this optimizer's default").
_DEFAULT_LR = {"sgd": 0.1, "sgd_momentum": 0.01, "adagrad": 0.01, "adam": 0.001, "adahessian": 0.15}
_DEFAULT_EPS = {"adagrad": 1e-10, "adam": 1e-8, "adahessian": 1e-4}
_DEFAULT_MOMENTUM = 0.9

_RELEVANT = {
    "sgd": ("lr", "weight_decay"),
    "sgd_momentum": ("lr", "momentum", "nesterov", "weight_decay"),
    "adagrad": ("lr", "lr_decay", "eps", "initial_accumulator_value", "weight_decay"),
    "adam": ("lr", "betas", "eps", "weight_decay"),
    "adahessian": ("lr", "betas", "eps", "hessian_power", "update_each", "weight_decay"),
}


@settings
class OptimizerConfig:
    """One optimizer and its hyperparameters.

    `lr`, `eps` and `momentum` left at None take the optimizer's default (for `sam`: its base's):
    lr sgd 0.1 (the original study), sgd_momentum 0.01, adagrad 0.01, adam 0.001 (torch),
    adahessian 0.15 (the authors' code); eps adagrad 1e-10, adam 1e-8 (torch), adahessian 1e-4
    (the paper); momentum 0.9 (plain `sgd` has none). After construction they are floats.
    """

    name: Optimizer = "sgd"
    lr: PositiveFloat | None = None
    momentum: Annotated[float, Field(ge=0, lt=1)] | None = None
    nesterov: bool = False
    betas: tuple[Fraction, Fraction] = (0.9, 0.999)
    eps: PositiveFloat | None = None
    weight_decay: NonNegativeFloat = 0.0
    lr_decay: NonNegativeFloat = 0.0  # adagrad
    initial_accumulator_value: NonNegativeFloat = 0.0  # adagrad
    hessian_power: Annotated[float, Field(ge=0, le=1)] = 1.0  # adahessian
    update_each: PositiveInt = 1  # adahessian
    rho: PositiveFloat = 0.05  # sam
    sam_base: Literal["sgd", "sgd_momentum", "adagrad", "adam"] = "sgd_momentum"  # sam

    def __post_init__(self) -> None:
        rule = self.base
        if rule == "sgd" and self.momentum not in (None, 0.0):
            raise ValueError(f"momentum: plain 'sgd' has no momentum (got {self.momentum}); use 'sgd_momentum'")
        defaults = {"lr": _DEFAULT_LR[rule], "eps": _DEFAULT_EPS.get(rule, 1e-8),
                    "momentum": 0.0 if rule == "sgd" else _DEFAULT_MOMENTUM}
        for field, default in defaults.items():
            if getattr(self, field) is None:
                object.__setattr__(self, field, float(default))
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov: needs momentum > 0")

    @property
    def base(self) -> str:
        """The rule that turns a gradient into a step (SAM's base; the optimizer itself otherwise)."""
        return self.sam_base if self.name == "sam" else self.name

    def hyperparameters(self) -> dict[str, Any]:
        """Only the hyperparameters this optimizer uses, for the report's setup table."""
        out: dict[str, Any] = {}
        if self.name == "sam":
            out = {"rho": self.rho, "sam_base": self.sam_base}
        out.update({name: getattr(self, name) for name in _RELEVANT[self.base]})
        if isinstance(out.get("betas"), tuple):
            out["betas"] = list(out["betas"])
        return out


@settings
class TrainSettings:
    max_epochs: PositiveInt = 100
    stop_loss: NonNegativeFloat = 0.01  # full-training-set cross-entropy that counts as fitted
    stop_early: bool = True  # False: train all max_epochs (the original study), convergence still recorded
    batch_size: PositiveInt = 128
    label_noise: Fraction = 0.0  # fraction of training labels replaced by another class (seeded)
    shuffle: bool = True  # False: batches in the fixed order 0..N-1, as the original study
    stack_seeds: bool = False  # train the seeds of one optimizer config at once (vmap)
    test_every: NonNegativeInt = 1  # evaluate the test set every n epochs; 0: only at the end
    eval_chunk: PositiveInt = 5000
    checkpoint_every: PositiveInt = 1  # epochs

    def trajectory(self) -> dict[str, Any]:
        """What decides the weights after each epoch: a checkpoint must agree on it to resume."""
        return {"batch_size": self.batch_size, "shuffle": self.shuffle, "stop_loss": self.stop_loss,
                "stop_early": self.stop_early}

    def identity(self) -> dict[str, Any]:
        """The settings that decide a run's trained weights (its hash); bookkeeping is left out."""
        return {**self.trajectory(), "max_epochs": self.max_epochs, "label_noise": self.label_noise,
                "stack_seeds": self.stack_seeds}


# ---- analyses -------------------------------------------------------------------------------

@settings
class CurvatureSettings:
    """Settings of the curvature stage (one TOML table)."""

    n_samples: NonNegativeInt = 0  # training samples in the curvature set; 0 = the run's whole training set
    top_k: PositiveInt = 5  # top eigenpairs
    tol: Annotated[float, Field(gt=0, lt=1)] = 1e-3  # Lanczos: stop when every wanted |beta_m s_m| / |theta| <= tol
    max_iter: PositiveInt = 100  # Lanczos steps at most
    # Lanczos steps at least (for the most negative eigenvalue; see the module docstring)
    min_steps: NonNegativeInt = 0
    trace_probes: Annotated[int, Field(ge=2)] = 100  # Rademacher probes of the (deflated) Hutchinson trace, at most
    # stop the probes once the stderr bound <= trace_rel_stderr * |trace| (0: always trace_probes probes)
    trace_rel_stderr: Annotated[float, Field(ge=0, lt=1)] = 0.0
    trace_min_probes: Annotated[int, Field(ge=2)] = 8  # probes before trace_rel_stderr is checked (capped at trace_probes)
    density_probes: PositiveInt = 5  # SLQ Gaussian probes
    density_steps: Annotated[int, Field(ge=2)] = 60  # Lanczos steps per SLQ probe
    density_points: Annotated[int, Field(ge=10)] = 500  # grid points of the density
    density_sigma: NonNegativeFloat = 0.0  # Gaussian broadening; 0 = 1 % of the Ritz-node range
    density_runs: Literal["all", "first_seed"] = "all"  # first_seed: one density per configuration
    balanced_tol: Annotated[float, Field(gt=0, lt=1)] = 1e-2  # lambda_max of the layer-balanced net
    chunk_size: PositiveInt = 5000  # samples per forward/backward pass
    seed: NonNegativeInt = 0  # seeds the probe and start-vector generators

    def __post_init__(self) -> None:
        if self.max_iter < self.top_k:
            raise ValueError(f"max_iter: must be >= top_k ({self.top_k}), got {self.max_iter}")
        if self.min_steps > self.max_iter:
            raise ValueError(f"min_steps: must be <= max_iter ({self.max_iter}), got {self.min_steps}")


@settings
class SharpnessSettings:
    """Settings of the sharpness stage; see each measure's module for the paper behind a default.

    adaptive_rho and average_rho are different radii on purpose: the worst case bounds the norm
    of the whole relative perturbation, the average case sets each coordinate's relative standard
    deviation. Andriushchenko et al. 2023 scan 0.25..2 and 0.05..0.4 for CNNs; we take values
    inside those grids. On a LeNet-5 at 97 % training accuracy (3 epochs on 12k MNIST images,
    measured on 1000 of them, float32), rho = 0.5 raises the loss from 0.13 to 0.27 in the worst
    case; in the average case rho = 0.1, 0.2, 0.4 give 0.006 +- 0.003, 0.021 +- 0.006 and
    0.10 +- 0.016 with 20 draws, so 0.2 is the smallest radius whose mean stands clear of its
    Monte Carlo error.
    """

    n_samples: NonNegativeInt = 0  # recorded training subset; 0 = the run's whole training set
    epsilon: PositiveFloat = 1e-3  # Keskar et al.'s box size
    epsilon_steps: PositiveInt = 20
    adaptive_rho: PositiveFloat = 0.5  # radius of ||delta / (|w| + xi)||_2
    adaptive_steps: PositiveInt = 20
    adaptive_xi: NonNegativeFloat = 0.0  # Andriushchenko et al.'s code scales by |w| exactly
    average_rho: PositiveFloat = 0.2  # relative noise level: delta ~ N(0, rho^2 (|w| + xi)^2)
    average_samples: Annotated[int, Field(ge=2)] = 20  # a standard error needs two samples
    pacbayes_target: PositiveFloat = 0.1  # deviation of the training accuracy (Jiang et al. 2020)
    pacbayes_samples: PositiveInt = 10
    pacbayes_iters: PositiveInt = 12
    pacbayes_sigma_max: PositiveFloat = 2.0  # bisection bracket [0, sigma_max]
    pacbayes_tolerance: NonNegativeFloat = 0.01  # stop once |deviation - target| is below this
    pacbayes_mag_eps: NonNegativeFloat = 1e-3  # eps of the magnitude-aware noise (Jiang et al. 2020)
    pacbayes_criterion: Literal["accuracy", "loss"] = "accuracy"  # loss: mean cross-entropy increase
    pacbayes_search: Literal["secant", "bisection"] = "secant"  # how sigma is sought (pacbayes.py)
    # Adaptive m-sharpness as Andriushchenko et al.'s code runs it (see msharpness.py): one
    # measure per radius and norm; n points of the training set in order, batches of m.
    msharp_rhos_linf: tuple[PositiveFloat, ...] = (0.002, 0.008)
    msharp_rhos_l2: tuple[PositiveFloat, ...] = (0.5, 2.0)
    msharp_m: PositiveInt = 128
    msharp_points: PositiveInt = 1024
    msharp_steps: PositiveInt = 20
    msharp_normalize_logits: bool = True
    seed: NonNegativeInt = 0

    def __post_init__(self) -> None:
        if not self.pacbayes_tolerance < self.pacbayes_target:
            raise ValueError(f"pacbayes_tolerance: must be below pacbayes_target ({self.pacbayes_target}), got {self.pacbayes_tolerance}")


MEASURES = (
    "epsilon_sharpness",
    "adaptive_worst",
    "adaptive_average",
    "pacbayes_flatness",
    "pacbayes_mag_flatness",
)
NORM_WORDS = {"linf": "ℓ∞", "l2": "ℓ₂"}


def msharpness_names(settings: SharpnessSettings) -> dict[str, tuple[str, float]]:
    """Measure name -> (norm, rho) of every adaptive m-sharpness the settings ask for."""
    out = {}
    for norm, rhos in (("linf", settings.msharp_rhos_linf), ("l2", settings.msharp_rhos_l2)):
        for rho in rhos:
            out[f"adaptive_{norm}_m{settings.msharp_m}_rho{rho:g}"] = (norm, rho)
    return out


def measure_names(settings: SharpnessSettings) -> tuple[str, ...]:
    return MEASURES + tuple(msharpness_names(settings))


def descriptions(settings: SharpnessSettings) -> dict[str, str]:
    out = dict(DESCRIPTIONS)
    for name, (norm, rho) in msharpness_names(settings).items():
        out[name] = (f"adaptive {NORM_WORDS[norm]} m-sharpness, m = {settings.msharp_m}, ρ = {rho:g}, "
                     f"normalized logits (Andriushchenko et al. 2023)")
    return out

DESCRIPTIONS = {
    "epsilon_sharpness": "ε-sharpness (Keskar et al. 2017)",
    "adaptive_worst": "adaptive worst-case sharpness (Kwon et al. 2021; Andriushchenko et al. 2023)",
    "adaptive_average": "adaptive average-case sharpness (Andriushchenko et al. 2023)",
    "pacbayes_flatness": "PAC-Bayes flatness 1/σ² (Jiang et al. 2020)",
    "pacbayes_mag_flatness": "magnitude-aware PAC-Bayes flatness 1/σ′² (Jiang et al. 2020)",
}


@settings
class LandscapeSettings:
    n_samples: NonNegativeInt = 1000  # recorded training subset; 0 = the run's whole training set
    span_1d: PositiveFloat = 1.0  # unit-eigenvector slice on [-span, span] (the original study's)
    points_1d: Annotated[int, Field(ge=2)] = 41
    span_2d: PositiveFloat = 2.0  # unit-eigenvector surface on [-span, span]^2
    points_2d: Annotated[int, Field(ge=2)] = 21
    normalized_span_1d: PositiveFloat = 1.0  # filter-normalized directions: as long as the weights
    normalized_span_2d: PositiveFloat = 1.0
    interp_points: Annotated[int, Field(ge=2)] = 31
    interp_low: float = -0.25  # interpolation coefficients run from low to high
    interp_high: float = 1.25
    seed: NonNegativeInt = 0

    def __post_init__(self) -> None:
        if not self.interp_low < self.interp_high:
            raise ValueError(f"interp_low: must be below interp_high ({self.interp_high}), got {self.interp_low}")


Layer = Literal[LAYERS]  # one of LAYERS (Literal of a tuple: its items)


def _default_scales() -> tuple[float, ...]:
    return tuple(10.0 ** (k / 2) for k in range(-4, 5))  # 1e-2 .. 1e2, 9 points


@settings
class DinhSettings:
    scales: Annotated[tuple[PositiveFloat, ...], Field(min_length=1)] = _default_scales()  # a: first layer x a, second x 1/a
    layers: tuple[Layer, Layer] = ("conv1", "conv2")

    def __post_init__(self) -> None:
        if self.layers[0] == self.layers[1]:
            raise ValueError(f"layers: must name two different layers, got {list(self.layers)}")
