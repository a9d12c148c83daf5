"""LeNet-5 in the two variants the study compares.

Both variants share the state_dict keys conv1, conv2, fc1, fc2, fc3 (weight/bias), so every
analysis treats them alike.

- `modern`: ReLU, max pooling, 28x28 input padded by 2 in conv1 (inputs normalized by the data
  stage). ReLU and max pooling are positively homogeneous, which Dinh's rescaling needs.
- `seed`: the original study's net (LeCun et al. 1998 as re-implemented there): tanh, average
  pooling, 32x32 input. Its C5 layer, a 5x5 convolution over a 5x5 map, is exactly `fc1`.
"""

from __future__ import annotations

import torch
from minima.specs import LAYER_SHAPES, LAYERS, VARIANTS, Variant, variant  # noqa: F401  (declared torch-free; imported from here too)
from torch import nn
from torch.nn import functional as F


class LeNet5(nn.Module):
    def __init__(self, spec: Variant):
        super().__init__()
        self.spec = spec
        # in LAYER_SHAPES' order, which is the order the seed initializes them in
        for name, (inputs, outputs, kernel) in LAYER_SHAPES.items():
            padding = spec.conv1_padding if name == "conv1" else 0
            layer = nn.Conv2d(inputs, outputs, kernel, padding=padding) if kernel else nn.Linear(inputs, outputs)
            self.add_module(name, layer)

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) if self.spec.activation == "relu" else torch.tanh(x)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.pooling == "avg":
            return F.avg_pool2d(x, 2)
        if torch.is_grad_enabled():
            return F.max_pool2d(x, 2)
        return max_pool_2x2_forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._pool(self._act(self.conv1(x)))
        x = self._pool(self._act(self.conv2(x)))
        x = x.flatten(-3)
        x = self._act(self.fc1(x))
        x = self._act(self.fc2(x))
        return self.fc3(x)


def max_pool_2x2_forward(x: torch.Tensor) -> torch.Tensor:
    """max_pool2d(x, 2), exactly, as the max of the four strided corners of each 2x2 window.

    Why: evaluation (test sets, landscapes, sharpness searches) is forward-only, and on CPU this
    is about 6x faster than max_pool2d's kernel (1.0 vs 6.5 ms at 128x6x28x28, one thread),
    which made pooling most of LeNet-5's forward time. Its backward is slower than
    max_pool2d's, so it is used only where autograd is off.
    """
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    return torch.maximum(torch.maximum(x[..., ::2, ::2], x[..., 1::2, ::2]), torch.maximum(x[..., ::2, 1::2], x[..., 1::2, 1::2]))


def build_model(
    variant_name: str, *, seed: int, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> LeNet5:
    """A freshly initialized LeNet-5; the seed alone decides the weights (PyTorch default init)."""
    with torch.random.fork_rng(devices=[]):  # no global side effect for the caller
        torch.manual_seed(seed)
        model = LeNet5(variant(variant_name))
    return model.to(device=device, dtype=dtype)
