"""The objective every analysis measures: mean cross-entropy of a model at given parameters.

Analyses never touch the caller's module: they evaluate `torch.func.functional_call` at a
parameter dict, on an eval-mode copy of the model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

Params = dict[str, torch.Tensor]


def frozen_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy whose own parameters are never used (we always pass a params dict)."""
    clone = copy.deepcopy(model).eval()
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone


def params_of(model: nn.Module) -> Params:
    """Detached copies of the trainable parameters, in state_dict order."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def loss_at(model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the batch (differentiable in params)."""
    return F.cross_entropy(functional_call(model, params, (x,)), y)


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    n: int


# On CPU, activations of a few hundred images stay in cache: 10k test images evaluate 1.6x
# faster in chunks of 256 than of 5000 (measured, one thread). GPUs want the large chunks.
CPU_EVAL_CHUNK = 256
# Loss-and-gradient passes and Hessian-vector products on CPU (minima.curvature.hvp,
# minima.sharpness): products on 2,048 LeNet-5 images took 0.24 s per vector in chunks of 512
# against 0.34 s in one chunk; 256 and 128 made no consistent difference (alone or two at once).
CPU_CHUNK = 512


@torch.no_grad()
def evaluate(model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, chunk: int = 5000) -> Evaluation:
    """Mean loss and accuracy over a whole dataset, in chunks so memory stays bounded."""
    if x.device.type == "cpu":
        chunk = min(chunk, CPU_EVAL_CHUNK)
    total_loss, correct = 0.0, 0
    for start in range(0, len(y), chunk):
        xb, yb = x[start : start + chunk], y[start : start + chunk]
        logits = functional_call(model, params, (xb,))
        total_loss += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(-1) == yb).sum().item()
    n = len(y)
    return Evaluation(loss=total_loss / n, accuracy=correct / n, n=n)


def flatten(params: Params) -> torch.Tensor:
    return torch.cat([p.reshape(-1) for p in params.values()])


def unflatten(vector: torch.Tensor, like: Params) -> Params:
    out, offset = {}, 0
    for name, p in like.items():
        out[name] = vector[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    return out


def num_params(params: Params) -> int:
    return sum(p.numel() for p in params.values())
