"""Function-preserving rescaling of a ReLU network (Dinh et al. 2017, "Sharp minima can generalize
for deep nets", sec. 4 and 5).

For a positively homogeneous activation, relu(a z) = a relu(z) for a > 0 (max and average pooling
commute with it too), scaling layer l's weight by a_l and its bias by the running product
A_l = a_1 ... a_l scales every pre-activation of layer l by A_l. With prod_l a_l = 1 the logits,
hence loss, accuracy and test accuracy, are unchanged: w' = D w with D diagonal and positive, and
L'(w') = L(D^-1 w'). Differentiating twice gives the prediction

    H' = D^-1 H D^-1,

so for f = W2 relu(W1 x) and scales (a, 1/a) the W1 block of the Hessian is divided by a^2 and
the W2 block multiplied by a^2: the top eigenvalue is at least a^2 max_i H_ii over W2's entries,
unbounded as a grows (Dinh et al.'s Theorem: any minimum can be made arbitrarily sharp). The
trace and every Hessian-based measure move the same way. Measures whose perturbations scale with
|w| elementwise (adaptive sharpness with xi = 0, see `minima.sharpness.adaptive`) see the same
function of the relative perturbation and do not move.

For tanh (the original study's `seed` variant) tanh(a z) != a tanh(z): no such rescaling exists,
and `rescale` refuses.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from minima.models import LAYERS
from minima.models import variant as model_variant
from minima.objective import Params, flatten
from minima.specs import DinhSettings, Layer  # noqa: F401  (declared torch-free; imported from here too)

HOMOGENEOUS_ACTIVATIONS = ("relu",)
HOMOGENEOUS_POOLING = ("max", "avg")


def check_homogeneous(activation: str, pooling: str) -> None:
    """Raises ValueError unless the network is positively homogeneous layer by layer."""
    if activation not in HOMOGENEOUS_ACTIVATIONS:
        raise ValueError(
            f"activation {activation!r} is not positively homogeneous ({activation}(a z) != a {activation}(z)),"
            " so Dinh's rescaling would change the network's function (the 'seed' variant uses tanh);"
            " use the 'modern' variant (ReLU, max pooling)"
        )
    if pooling not in HOMOGENEOUS_POOLING:
        raise ValueError(f"pooling {pooling!r} is not known to commute with positive scaling")


def layer_order(params: Params) -> tuple[str, ...]:
    """Layer names in forward order, from the parameter names ('conv1.weight' -> 'conv1')."""
    names: list[str] = []
    for key in params:
        layer = key.rsplit(".", 1)[0]
        if layer not in names:
            names.append(layer)
    return tuple(names)


def rescaling_factors(params: Params, layer_scales: dict[str, float]) -> Params:
    """D as a params dict: a_l on layer l's weight, a_1 ... a_l on its bias; layers not named
    keep scale 1."""
    order = layer_order(params)
    unknown = sorted(set(layer_scales) - set(order))
    if unknown:
        raise ValueError(f"layer_scales: unknown layers {unknown}; the parameters have {list(order)}")
    for layer, a in layer_scales.items():
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 < a < math.inf:
            raise ValueError(f"layer_scales: {layer} must have a positive finite scale, got {a!r}")
    log_product = sum(math.log(a) for a in layer_scales.values())
    if abs(log_product) > 1e-9:
        raise ValueError(f"layer_scales: the scales must multiply to 1, got {math.exp(log_product)!r}")
    running, per_layer = 1.0, {}
    for layer in order:
        a = float(layer_scales.get(layer, 1.0))
        running *= a
        per_layer[layer] = (a, running)
    factors = {}
    for key, p in params.items():
        layer, kind = key.rsplit(".", 1)
        weight_scale, bias_scale = per_layer[layer]
        factors[key] = torch.full_like(p, bias_scale if kind == "bias" else weight_scale)
    return factors


def rescale(params: Params, layer_scales: dict[str, float], *, variant: str = "modern") -> Params:
    """New parameters computing the same function: weight_l * a_l, bias_l * a_1 ... a_l.

    `variant` names the LeNet-5 variant (minima.models) the parameters belong to; its activation
    and pooling decide whether the rescaling preserves the function ("seed", tanh, is refused).
    """
    spec = model_variant(variant)
    check_homogeneous(spec.activation, spec.pooling)
    factors = rescaling_factors(params, layer_scales)
    return {key: p.detach() * factors[key] for key, p in params.items()}


def dinh_scales(
    alpha: float, layers: tuple[str, ...] = ("conv1", "conv2"), all_layers: tuple[str, ...] = LAYERS
) -> dict[str, float]:
    """{layers[0]: alpha, layers[1]: 1/alpha, every other layer of all_layers: 1}."""
    scales = {layer: 1.0 for layer in all_layers}
    scales.update({layers[0]: float(alpha), layers[1]: 1.0 / alpha})
    return scales


def rescaled_family(params: Params, settings: DinhSettings, *, variant: str = "modern") -> list[tuple[float, Params]]:
    """(alpha, rescaled params) for every alpha of the log grid."""
    layers = layer_order(params)
    return [
        (alpha, rescale(params, dinh_scales(alpha, settings.layers, layers), variant=variant))
        for alpha in settings.scales
    ]


def predicted_hessian(hessian: torch.Tensor, factors: Params | torch.Tensor) -> torch.Tensor:
    """H' = D^-1 H D^-1 for the rescaling w' = D w (D from `rescaling_factors`, or flat)."""
    d = factors if isinstance(factors, torch.Tensor) else flatten(factors)
    d = d.to(hessian)
    return hessian / torch.outer(d, d)


def balancing_scales(params: Params) -> dict[str, float]:
    """Per-layer factors a_l = G / ||W_l|| with G the geometric mean of the weight norms.

    prod_l a_l = 1, so `rescale(params, balancing_scales(params))` computes the same function,
    and every layer's weight then has norm G. Comparing lambda_max of networks rescaled this way
    asks whether a ranking by lambda_max survives removing per-layer norm differences, which
    Dinh et al.'s argument says can set lambda_max by itself.
    """
    norms = {layer: float(params[f"{layer}.weight"].double().norm()) for layer in layer_order(params)}
    if any(n <= 0 or not math.isfinite(n) for n in norms.values()):
        raise ValueError(f"params: every layer needs a positive finite weight norm, got {norms}")
    log_g = sum(math.log(n) for n in norms.values()) / len(norms)
    scales = {layer: math.exp(log_g - math.log(n)) for layer, n in norms.items()}
    # exact product 1: put the rounding error of the others on the last layer
    last = list(scales)[-1]
    scales[last] = math.exp(-sum(math.log(a) for layer, a in scales.items() if layer != last))
    return scales


def dinh_rows(
    params: Params, settings: DinhSettings, *, variant: str, measure: Callable[[Params], dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per scale of the log grid: {"scale", **measure(rescaled params)}.

    `measure` computes whatever the experiment reports at a parameter point (curvature,
    sharpness, test accuracy); the family of points is `rescaled_family`.
    """
    return [{"scale": alpha, **measure(scaled)} for alpha, scaled in rescaled_family(params, settings, variant=variant)]
