"""The analysis stage's judgments on constructed runs: which runs enter the statistics, the
granulated groups, Holm over the tested measures only, the baselines rule, Dinh's factors."""

import itertools

import pytest

from minima import analysis
from minima.claims import psi_groups


def _run(opt, lr_level, b_level, seed, gap, measure, baseline=0.0, converged=True, status="ok"):
    return {
        "run": f"{opt}{lr_level}{b_level}{seed}", "configuration": f"{opt}{lr_level}{b_level}", "optimizer": opt,
        "seed": seed, "status": status, "converged": converged, "layer_norms": {},
        "levels": {"optimizer": ["sgd", "adam"].index(opt), "lr": lr_level, "batch_size": b_level},
        "hyperparameters": {"lr": 0.1 * (1 + lr_level), "batch_size": 32 * (1 + 3 * b_level)},
        "generalization_gap": gap, "gap_stderr": 0.002,
        "values": {"generalization_gap": gap, "test_error": gap + 0.01, "sharp": measure, "base": baseline,
                   "test_accuracy": 1 - gap},
    }


def test_psi_groups_hold_every_other_axis_and_the_seed_fixed():
    runs = [_run(o, l, b, s, 0.0, 0.0) for o, l, b, s in itertools.product(("sgd", "adam"), (0, 1), (0, 1), (0, 1))]
    groups = psi_groups(runs, ["optimizer", "lr", "batch_size"])
    by_lr = {}
    for run, key in zip(runs, groups["lr"]):
        by_lr.setdefault(key, []).append(run)
    # each lr group: one optimizer, one batch size, one seed, both learning rates
    assert len(by_lr) == 2 * 2 * 2 and all(len(g) == 2 for g in by_lr.values())
    for group in by_lr.values():
        assert len({(r["optimizer"], r["levels"]["batch_size"], r["seed"]) for r in group}) == 1
        assert {r["levels"]["lr"] for r in group} == {0, 1}
    by_optimizer = {}
    for run, key in zip(runs, groups["optimizer"]):
        by_optimizer.setdefault(key, set()).add(run["optimizer"])
    assert all(v == {"sgd", "adam"} for v in by_optimizer.values())


def test_correlations_use_converged_runs_holm_only_over_tested_measures_and_the_baseline_rule():
    runs = []
    for o, l, b, s in itertools.product(("sgd", "adam"), (0, 1), (0, 1), (0, 1, 2)):
        gap = 0.03 + 0.01 * l + 0.02 * b + 0.005 * (o == "adam") + 0.0005 * s
        runs.append(_run(o, l, b, s, gap, measure=gap * 10, baseline=-gap))
    runs.append(_run("sgd", 0, 0, 9, 0.9, measure=-50.0, converged=False))  # capped: must not count
    runs.append(_run("adam", 0, 0, 9, 0.9, measure=-50.0, status="diverged"))
    rows = analysis.correlations(runs, ["optimizer", "lr", "batch_size"], {"sharp": "sharpness", "base": "baseline"})
    sharp = next(r for r in rows if r["measure"] == "sharp" and r["target"] == "generalization_gap")
    base = next(r for r in rows if r["measure"] == "base" and r["target"] == "generalization_gap")
    assert sharp["n"] == 24 and sharp["n_clusters"] == 8
    assert sharp["kendall_tau"] == pytest.approx(1.0) and sharp["psi"] == {"optimizer": 1.0, "lr": 1.0, "batch_size": 1.0}
    assert sharp["direction"] == "positive" and sharp["significant"]
    # one tested measure per target: Holm leaves its p-value alone; the baseline is not tested
    assert sharp["p_holm"] == sharp["p_value"] and base["p_holm"] == base["p_value"]
    # the baseline ranks perfectly too (with the wrong sign): |Psi| = 1, so the measure does not beat it
    assert base["psi_mean"] == pytest.approx(-1.0) and base["beats_baselines"] is None
    assert sharp["beats_baselines"] is False


def test_measure_kinds_sort_every_measure():
    kinds = analysis.measure_kinds(("epsilon_sharpness", "adaptive_linf_m128_rho0.002"))
    assert kinds["top_eigenvalue"] == "hessian" and kinds["adaptive_linf_m128_rho0.002"] == "sharpness"
    assert {m for m, k in kinds.items() if k == "baseline"} == {"weight_norm", "distance_from_init", "log_lr_over_batch", "epochs_to_fit"}
