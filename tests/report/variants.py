"""Edge cases made from a real summary: deep-copy it, change the facts, validate again.

Each function takes the session's tiny summary (never changed) and returns a new summary that
minima.schema accepts, so the report is tested on what the analysis can write.
"""

from __future__ import annotations

import copy
import json

from minima import verdicts
from minima.schema import Summary, parse_summary, validate_summary

HOSTILE = "a_b%c&d#e$f{g}h~i^j\\k"
TANH_NOTE = "Dinh's rescaling needs positively homogeneous activations (ReLU); the seed variant uses tanh"


def _valid(summary: dict) -> dict:
    return validate_summary(summary, where="test variant")


def typed(summary: dict) -> Summary:
    """A summary dict as the report reads it: minima.schema's model."""
    return parse_summary(summary, where="test summary")


def _copy(summary: dict) -> dict:
    return copy.deepcopy(summary)


def capped_hashes(summary: dict) -> list[str]:
    return [r["run"] for r in summary["runs"] if r["status"] == "ok" and not r["converged"]]


def with_diverged_run(summary: dict) -> tuple[dict, str]:
    """A capped run turned into one that diverged at epoch 3 (no minimum, no values)."""
    s = _copy(summary)
    chosen = (capped_hashes(s) or [r["run"] for r in s["runs"]])[-1]
    target = next(r for r in s["runs"] if r["run"] == chosen)
    was_capped = not target["converged"]
    target.update(status="diverged", converged=False, epochs=3, epochs_to_fit=None, diverged_epoch=3,
                  stop_reason="the training loss became non-finite at epoch 3", train_loss=None,
                  train_accuracy=None, test_loss=None, test_accuracy=None, generalization_gap=None,
                  gap_stderr=None, curvature=None, sharpness=None, landscape=None)
    target["history"] = {k: v[:3] for k, v in target["history"].items()}
    target["history"]["full_train_loss"][-1] = None
    target["values"] = {k: (v if k == "log_lr_over_batch" else None) for k, v in target["values"].items()}
    if was_capped:
        s["limitations"]["capped"].remove(target["run"])
        s["design"].update(n_capped=s["design"]["n_capped"] - 1)
    else:
        s["design"].update(n_converged=s["design"]["n_converged"] - 1)
    s["limitations"]["diverged"] = [target["run"]]
    s["design"].update(n_diverged=1)
    return _valid(s), target["run"]


def with_dinh_not_applicable(summary: dict) -> dict:
    """The tanh variant: no rescaling experiment, and its claim not testable."""
    s = _copy(summary)
    s["dinh"] = []
    s["dinh_info"] = {**s["dinh_info"], "applicable": False, "run": None, "optimizer": None, "seed": None,
                      "layers": None, "note": TANH_NOTE, "reference_test_accuracy": None, "converged": False,
                      "scale_min": None, "scale_max": None, "factors": {}, "moved": [], "stable": [], "nonpositive": [],
                      "accuracy_min": None, "accuracy_max": None, "max_logit_change": None}
    for claim in s["claims"]:
        if claim["id"] == "dinh_rescaling":
            claim.update(value=None, ci95=None, verdict="not_testable", reason=TANH_NOTE, condition=None)
    return _valid(s)


def with_nonpositive_trace(summary: dict) -> dict:
    """The trace takes a value <= 0 at some scale: no factor is defined for it."""
    s = _copy(summary)
    s["dinh"][0]["trace"] = -1.0
    s["dinh_info"]["factors"]["trace"] = None
    s["dinh_info"]["nonpositive"] = ["trace"]
    return _valid(s)


def with_comparable_original(summary: dict) -> dict:
    s = _copy(summary)
    s["original_study"].update(comparable=True, reason="", same_setup=False, rows=[
        {"optimizer": "sgd", "original_test_accuracy": 0.9903, "test_accuracy_mean": 0.708,
         "test_accuracy_std": 0.01, "n": 4, "difference": 0.708 - 0.9903},
    ])
    return _valid(s)


def _decided(claim: dict, **fields) -> None:
    """Change a claim's statistics, then give it the verdict and reason its rule gives them."""
    claim.update(fields)
    claim["verdict"], claim["reason"] = verdicts.decide(claim)


def with_every_verdict(summary: dict) -> dict:
    """At least one claim of each verdict (the first claim not reproduced, the second reproduced)."""
    s = _copy(summary)
    significant = dict(rule_kind="directional", side="above", reference=0.0, n_clusters=12, p=0.0004, p_holm=0.004,
                       p_min=0.0005, note="")
    _decided(s["claims"][0], value=-0.3, ci95=[-0.5, -0.1], **significant)
    _decided(s["claims"][1], value=0.015, ci95=[0.01, 0.02], **significant)
    found = {c["verdict"] for c in s["claims"]}
    assert {"reproduced", "not_reproduced", "inconclusive", "not_testable"} <= found, found
    return _valid(s)


def with_significant_correlation(summary: dict, measure: str = "top_eigenvalue") -> dict:
    s = _copy(summary)
    row = next(c for c in s["correlations"] if c["measure"] == measure and c["target"] == "generalization_gap")
    row.update(kendall_tau=0.6, ci95=[0.2, 0.9], p_holm=0.004, significant=True, direction="positive",
               beats_baselines=True)
    return _valid(s)


def with_hostile_strings(summary: dict) -> dict:
    """Hostile strings where the report prints text: profile, description, command, a run id, the CPU."""
    old = summary["runs"][0]["run"]
    s = json.loads(json.dumps(summary).replace(json.dumps(old), json.dumps(HOSTILE)))  # the run, everywhere
    s["profile"] = HOSTILE
    s["profile_description"] = f"described {HOSTILE} with CJK 中 and emoji \U0001f600"
    s["created_by"] = f"make all PROFILE={HOSTILE}"
    s["environment"]["cpu"] = f"CPU {HOSTILE} é"
    return _valid(s)


def with_fashion(summary: dict) -> dict:
    s = _copy(summary)
    s["data"].update(dataset="fashion-mnist", display_name="Fashion-MNIST")
    return _valid(s)


def with_replication(summary: dict) -> dict:
    """A replication profile's summary: the study itself, and a second dataset (the same runs,
    relabelled Fashion-MNIST, with every verdict), composed as minima.replication composes it."""
    from minima.replication import replication_section

    s = _copy(summary)
    other = with_every_verdict(with_fashion(summary))
    other["profile"] = "tiny-fashion"
    s["replication"] = replication_section([s["profile"], "tiny-fashion"], [summary, other])
    s["profile"] = "replicate-tiny"
    return _valid(s)


def edge_cases(summary: dict) -> dict:
    """Every edge case at once, for one PDF build."""
    s, _ = with_diverged_run(summary)
    for change in (with_dinh_not_applicable, with_comparable_original, with_every_verdict,
                   with_significant_correlation, with_hostile_strings, with_fashion, with_replication):
        s = change(s)
    return s
