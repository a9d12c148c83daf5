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


def test_batch_groups_match_the_learning_rate_by_value_when_grids_move_with_the_batch():
    # sqrt scaling: B = 32 grid (0.1, 0.2), B = 128 grid (0.2, 0.4); lr level 1 at B 32 is level 0 at B 128
    runs = []
    for (b_level, lrs), lr_level, seed in itertools.product(enumerate(((0.1, 0.2), (0.2, 0.4))), (0, 1), (0, 1)):
        run = _run("sgd", lr_level, b_level, seed, 0.0, 0.0)
        run["hyperparameters"]["lr"] = lrs[lr_level]
        runs.append(run)
    groups = psi_groups(runs, ["lr", "batch_size"])["batch_size"]
    members = {}
    for run, key in zip(runs, groups):
        members.setdefault(key, []).append(run)
    pairs = [g for g in members.values() if len(g) == 2]
    assert len(pairs) == 2 and all({r["hyperparameters"]["lr"] for r in g} == {0.2} for g in pairs)  # one per seed


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
    assert sharp["p_holm"] == sharp["p_value"] and base["p_holm"] is None and base["p_value"] is not None
    # the baseline ranks perfectly too (with the wrong sign): |Psi| = 1, so the measure does not beat it
    assert base["psi_mean"] == pytest.approx(-1.0) and base["beats_baselines"] is None
    assert sharp["beats_baselines"] is False
    assert sharp["versus_baseline"]["baseline"] == "base" and sharp["versus_baseline"]["difference"] == pytest.approx(0.0)


def test_beating_the_baselines_needs_the_interval_of_the_psi_difference_above_zero():
    runs = []
    for o, l, b, s in itertools.product(("sgd", "adam"), (0, 1, 2), (0, 1), (0, 1, 2)):
        gap = 0.03 + 0.01 * l + 0.02 * b + 0.005 * (o == "adam") + 0.0005 * s
        # the measure ranks the gap perfectly; the baseline with it along B, against it along lr: Psi 0
        runs.append(_run(o, l, b, s, gap, measure=gap, baseline=b - 0.001 * l))
    rows = analysis.correlations(runs, ["optimizer", "lr", "batch_size"], {"sharp": "sharpness", "base": "baseline"})
    sharp = next(r for r in rows if r["measure"] == "sharp" and r["target"] == "generalization_gap")
    assert sharp["versus_baseline"]["difference"] > 0 and sharp["versus_baseline"]["ci95"][0] > 0
    assert sharp["beats_baselines"] is True


def test_partial_tau_given_the_final_training_loss():
    runs = []
    for o, l, b, s in itertools.product(("sgd", "adam"), (0, 1), (0, 1), (0, 1, 2)):
        gap = 0.03 + 0.01 * l + 0.02 * b + 0.005 * (o == "adam") + 0.0005 * s
        run = _run(o, l, b, s, gap, measure=gap * 10)
        run["values"]["train_loss"] = gap  # the loss explains the gap entirely
        runs.append(run)
    rows = analysis.correlations(runs, ["optimizer", "lr", "batch_size"], {"sharp": "sharpness"})
    sharp = next(r for r in rows if r["measure"] == "sharp" and r["target"] == "generalization_gap")
    assert sharp["kendall_tau"] == pytest.approx(1.0) and sharp["partial_tau"] is None  # nothing left once loss is given


def test_measure_kinds_sort_every_measure():
    kinds = analysis.measure_kinds(("epsilon_sharpness", "adaptive_linf_m128_rho0.002"))
    assert kinds["top_eigenvalue"] == "hessian" and kinds["adaptive_linf_m128_rho0.002"] == "sharpness"
    assert {m for m, k in kinds.items() if k == "baseline"} == {"weight_norm", "distance_from_init", "log_lr_over_batch",
                                                                "epochs_to_fit", "train_loss"}
