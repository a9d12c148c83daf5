"""`python -m minima check`: does this Python have what minima needs? (`make all ENV=system`)

Checks that each package imports and meets its minimum version (torch of any build, CUDA or
CPU), and raises one MinimaError line naming everything missing or too old.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re

from minima.io import MinimaError

# package import name -> (distribution name, minimum version)
REQUIRED = {
    "torch": ("torch", "2.4"),
    "numpy": ("numpy", "1.24"),
    "scipy": ("scipy", "1.10"),
    "matplotlib": ("matplotlib", "3.7"),
    "jinja2": ("jinja2", "3.1"),
    "tqdm": ("tqdm", "4.60"),
    "pydantic": ("pydantic", "2.5"),
}
OPTIONAL = {  # what only some commands need
    "torchvision": "the `seed` profile (32x32 resizing)",
    "pytest": "make test",
    "pyhessian": "make bench",
    "curvlinops": "make bench",
    "dask": "EXECUTOR=dask",
    "distributed": "EXECUTOR=dask",
    "dask_jobqueue": "EXECUTOR=slurm",
}


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def problems(required: dict[str, tuple[str, str]] | None = None) -> list[str]:
    out = []
    for module, (dist, minimum) in (REQUIRED if required is None else required).items():
        try:
            importlib.import_module(module)
        except Exception as exc:  # a broken install fails in many ways
            out.append(f"{dist} (>= {minimum}) is missing ({type(exc).__name__})")
            continue
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = getattr(importlib.import_module(module), "__version__", "0")
        if _version_tuple(version) < _version_tuple(minimum):
            out.append(f"{dist} {version} is older than {minimum}")
    return out


def check_environment() -> None:
    found = problems()
    if found:
        raise MinimaError("this Python cannot run minima: " + "; ".join(found) +
                          " (install them, or use the default ENV=venv, which installs pinned versions)")
