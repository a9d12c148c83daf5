"""Device-dependent code paths run on every device present: CPU always, CUDA where there is one
(marked `cuda`: scripts/gpu_check.sh runs them on a GPU machine)."""

import pytest
import torch

DEVICES = [pytest.param("cpu", id="cpu"),
           pytest.param("cuda", id="cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
               not torch.cuda.is_available(), reason="no CUDA device")])]
