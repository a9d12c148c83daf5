"""The facts the report states: Dinh's factors and the departures from the original study."""

import pytest

from minima import facts
from minima.config import load_profile


def test_dinh_facts_never_call_a_nonpositive_value_a_factor():
    record = {"applicable": True, "rows": [
        {"scale": 0.1, "top_eigenvalue": 5.0, "trace": -1.0, "adaptive_worst": 0.2, "test_accuracy": 0.95, "max_logit_change": 1e-8},
        {"scale": 1.0, "top_eigenvalue": 50.0, "trace": 2.0, "adaptive_worst": 0.2, "test_accuracy": 0.95, "max_logit_change": 0.0},
        {"scale": 10.0, "top_eigenvalue": 500.0, "trace": 40.0, "adaptive_worst": 0.21, "test_accuracy": 0.95, "max_logit_change": 2e-8},
    ]}
    found = facts.dinh_facts(record, ["top_eigenvalue", "trace", "adaptive_worst"], [])
    assert found["factors"]["top_eigenvalue"] == pytest.approx(100.0)
    assert found["factors"]["trace"] is None and found["nonpositive"] == ["trace"]
    assert found["moved"] == ["top_eigenvalue"] and found["stable"] == ["adaptive_worst"]
    assert found["max_logit_change"] == 2e-8 and found["accuracy_min"] == found["accuracy_max"] == 0.95


def test_dinh_facts_say_whether_the_rescaled_run_converged():
    record = {"applicable": True, "run": "abc", "optimizer": "sgd", "note": "", "rows": [{"scale": 1.0, "test_accuracy": 0.5}]}
    run = {"run": "abc", "status": "ok", "converged": True}
    assert facts.dinh_facts(record, [], [run])["converged"] is True
    capped = facts.dinh_facts(record, [], [{**run, "converged": False}])
    assert capped["converged"] is False and "did not converge" in capped["note"] and "abc" in capped["note"]


def test_setup_differences_come_from_the_packaged_seed_profile():
    quick, seed = load_profile("quick"), load_profile("seed")
    differences = {(d["optimizer"], d["setting"]): d for d in facts.setup_differences(quick, seed)}
    # values, not text: the report formats them (it prints flags as true/false everywhere)
    assert differences[None, "activation"] == {"setting": "activation", "optimizer": None, "ours": "relu", "original": "tanh"}
    assert differences[None, "n_train"]["ours"] == 1024 and differences[None, "n_train"]["original"] == 60000
    assert differences[None, "shuffle"]["ours"] is True and differences[None, "shuffle"]["original"] is False
    assert differences[None, "stop_loss"]["original"] is None and differences[None, "max_epochs"]["original"] == 150
    assert differences["sgd", "lr"]["original"] == [0.1] and differences["sam", "trained"]["original"] is False
    assert facts.setup_differences(seed, seed) == []


def test_extremes_name_the_sharpest_and_flattest_optimizer_and_tally_them():
    def row(name, **means):
        return {"optimizer": name, "metrics": {q: {"mean": v} for q, v in means.items()}}

    rows = [row("sgd", top_eigenvalue=40.0, trace=300.0, epsilon_sharpness=0.2),
            row("adam", top_eigenvalue=10.0, trace=500.0, epsilon_sharpness=0.1),
            row("sam", top_eigenvalue=5.0, trace=100.0, epsilon_sharpness=None)]
    found = facts.extremes(rows, ["top_eigenvalue", "trace", "epsilon_sharpness"])
    assert [(e["quantity"], e["sharpest"], e["flattest"]) for e in found] == [
        ("top_eigenvalue", "sgd", "sam"), ("trace", "adam", "sam"), ("epsilon_sharpness", "sgd", "adam")]
    assert found[0]["ratio"] == pytest.approx(8.0) and found[2]["n_optimizers"] == 2
    assert facts.extremes_tally(found) == {"sharpest": {"optimizer": "sgd", "measures": 2},
                                           "flattest": {"optimizer": "sam", "measures": 2}, "n_measures": 3}
    assert facts.extremes_tally([]) is None


def _tuned_run(optimizer, lr, batch, seed, val, test=0.9):
    return {"run": f"{optimizer}-{lr}-{batch}-{seed}", "optimizer": optimizer, "seed": seed, "status": "ok",
            "converged": True, "hyperparameters": {"lr": lr, "batch_size": batch}, "val_accuracy": val,
            "val_loss": 1 - val, "test_accuracy": test}


def test_lr_optima_flag_an_optimum_on_an_edge_of_its_batch_sizes_grid():
    grid = {"sgd": {"lr": [0.05, 0.1, 0.2, 0.4], "lr_by_batch": {"32": [0.05, 0.1, 0.2], "128": [0.1, 0.2, 0.4]}}}
    runs = []
    for seed in (0, 1):
        runs += [_tuned_run("sgd", lr, 32, seed, val) for lr, val in ((0.05, 0.90), (0.1, 0.93), (0.2, 0.92))]
        runs += [_tuned_run("sgd", lr, 128, seed, val) for lr, val in ((0.1, 0.90), (0.2, 0.91), (0.4, 0.92))]
    optima = {row["fixed"]["batch_size"]: row for row in facts.lr_optima(runs, grid)}
    assert optima[32]["best_lr"] == 0.1 and not optima[32]["at_edge"] and optima[32]["n_seeds"] == 2
    assert optima[128]["best_lr"] == 0.4 and optima[128]["at_edge"]  # the largest of B = 128's own grid
    tuning = facts.tuning(runs, ["sgd"], grid, n_val=1000)
    assert tuning["n_at_edge"] == 1 and tuning["best"]["optimizer"] == "sgd"
    assert facts.tuning(runs, ["sgd"], grid, n_val=0)["available"] is False


def test_tuning_picks_by_validation_accuracy_and_reports_test_accuracy():
    runs = [_tuned_run("adam", 0.001, 32, 0, val=0.95, test=0.80), _tuned_run("adam", 0.002, 32, 0, val=0.90, test=0.99),
            _tuned_run("sgd", 0.1, 32, 0, val=0.93, test=0.97)]
    chosen = facts.tuned(runs, ("adam",))
    assert [r["hyperparameters"]["lr"] for r in chosen.values()] == [0.001]  # not the test-best 0.002
    tuning = facts.tuning(runs, ["sgd", "adam"], {"sgd": {"lr": [0.1]}, "adam": {"lr": [0.001, 0.002]}}, n_val=100)
    assert tuning["best"]["optimizer"] == "adam" and tuning["best"]["mean"] == 0.80  # chosen on validation
