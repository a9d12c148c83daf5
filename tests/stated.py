"""Read back the settings a rendered report.md states, and check them against the runs' own
config.json (issue 25, try 1: the report stated `[train]`'s defaults, batch_size = 128, for runs
that used 32 and 64). Shared by the report's render test and the end-to-end build test."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from report import style

# A grid profile with lists on every axis, one optimizer's batch size of its own: 18 runs.
LISTS_ON_EVERY_AXIS = """\
description = "Lists on every axis"
seeds = [0]
optimizers = ["sgd", "adam"]
n_train = 64
n_test = 100
interpolate = []
dinh_optimizer = "sgd"

[train]
max_epochs = 1
batch_size = [32, 64]
label_noise = [0.0, 0.2]
test_every = 0

[optimizer.sgd]
lr = [0.05, 0.1]
weight_decay = [0.0, 0.0005]

[optimizer.adam]
lr = 0.001
batch_size = 16
"""

# The same grid with analyses cut to a few seconds a run: one epoch of 64 images fits nothing
# (train loss about 2.3 against stop_loss 0.01), so every run is capped.
CAPPED = LISTS_ON_EVERY_AXIS + """
[curvature]
n_samples = 32
top_k = 2
tol = 0.1
max_iter = 8
trace_probes = 2
density_probes = 1
density_steps = 4
density_runs = "first_seed"

[sharpness]
n_samples = 32
epsilon_steps = 2
adaptive_steps = 2
average_samples = 2
pacbayes_samples = 2
pacbayes_iters = 2
msharp_m = 16
msharp_points = 32
msharp_steps = 2

[landscape]
n_samples = 32
points_1d = 3
points_2d = 3
interp_points = 3

[dinh]
scales = [0.1, 1.0, 10.0]
"""


def parse_value(text: str) -> Any:
    """A value as report.formats.value_text writes it (Markdown-escaped): 0.001, (32, 64),
    true, sgd=(32, 64), adam=16."""
    text = text.strip().replace("\\_", "_")
    if re.fullmatch(r"\w+=.*", text):
        return {key: parse_value(value) for key, value in re.findall(r"(\w+)=(\([^)]*\)|[^,]+)", text)}
    if text.startswith("(") and text.endswith(")"):
        return [parse_value(v) for v in text[1:-1].split(",")]
    if text in ("true", "false"):
        return text == "true"
    try:
        return float(text)
    except ValueError:
        return text


def stated_train(markdown: str) -> dict[str, Any]:
    """The `train` row of the table "Settings of each stage"."""
    row = next(line for line in markdown.splitlines() if line.startswith("| train | `"))
    body = row.removeprefix("| train | ").rstrip(" |")
    return {key: parse_value(value) for key, value in re.findall(r"`(\w+)` = (.*?)(?=, `|$)", body)}


def stated_hyperparameters(markdown: str) -> dict[str, dict[str, Any]]:
    """{hyperparameter: {optimizer: value}} of the table of optimizer hyperparameters (– left out)."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Hyperparameter |"))
    labels = [cell.strip() for cell in lines[start].strip("|").split("|")[1:]]
    names = {style.optimizer_label(name): name for name in style.OPTIMIZER_ORDER}
    out: dict[str, dict[str, Any]] = {}
    for line in lines[start + 2:]:
        if not line.startswith("| `"):
            if line.strip():
                break
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        key = cells[0].strip("`").replace("\\_", "_")
        out[key] = {names[label]: parse_value(cell) for label, cell in zip(labels, cells[1:]) if cell != "–"}
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _matches(stated: Any, used: list[Any]) -> bool:
    """`used`: the distinct values one optimizer's runs recorded (a list-valued setting such as
    betas is one value). A stated list is the levels; a stated scalar the one value."""
    if len(used) == 1 and isinstance(used[0], list):
        return _same(stated, used[0])
    levels = stated if isinstance(stated, list) else [stated]
    return len(levels) == len(used) and all(any(_same(s, u) for u in used) for s in levels)


def check_against_configs(markdown: str, runs_dir: Path) -> int:
    """Assert every train setting and optimizer hyperparameter the report states equals what the
    runs' config.json recorded (per optimizer); returns how many stated values were checked."""
    configs = [json.loads(p.read_text()) for p in Path(runs_dir).glob("*/config.json")]
    assert configs, f"no config.json under {runs_dir}"
    optimizers = sorted({c["optimizer"]["name"] for c in configs})

    def used(section: str, key: str, name: str) -> list[Any]:
        values = [c[section][key] for c in configs if c["optimizer"]["name"] == name]
        return [json.loads(v) for v in sorted({json.dumps(v) for v in values})]

    checked = 0
    for key, value in stated_train(markdown).items():
        if key not in configs[0]["train"]:
            continue  # bookkeeping (test_every, eval_chunk, ...): not part of a run's identity
        for name in optimizers:
            mine = value[name] if isinstance(value, dict) else value
            assert _matches(mine, used("train", key, name)), (key, name, value, used("train", key, name))
            checked += 1
    for key, per_optimizer in stated_hyperparameters(markdown).items():
        for name, value in per_optimizer.items():
            assert _matches(value, used("optimizer", key, name)), (key, name, value, used("optimizer", key, name))
            checked += 1
    return checked
