"""Each claim's verdict rule on constructed runs whose answer is known by construction."""

import itertools
import math

import numpy as np
import pytest

from minima import analysis, claims
from minima.settings import OPTIMIZERS

LRS = {"sgd": (0.05, 0.2), "sgd_momentum": (0.005, 0.02), "adagrad": (0.02, 0.05), "adam": (0.001, 0.003),
       "adahessian": (0.05, 0.15), "sam": (0.005, 0.02)}


def make_runs(value, optimizers=OPTIMIZERS, batches=(32, 128), seeds=(0, 1, 2)):
    """One converged run per (optimizer, lr, batch, seed); value(opt, lr_index, batch, seed, rng)
    returns the run's values."""
    rng = np.random.default_rng(0)
    runs = []
    for opt, li, (bi, b), seed in itertools.product(optimizers, (0, 1), enumerate(batches), seeds):
        lr = LRS[opt][li]
        runs.append({
            "run": f"{opt}-{li}-{b}-{seed}", "configuration": f"{opt}-{li}-{b}", "optimizer": opt, "seed": seed,
            "status": "ok", "converged": True, "hyperparameters": {"lr": lr, "batch_size": b},
            "levels": {"optimizer": OPTIMIZERS.index(opt), "lr": li, "batch_size": bi},
            "values": value(opt, li, b, seed, rng),
        })
    return runs


def summary_of(runs, **extra):
    """The summary fields the claims read; correlation rows come from the analysis itself."""
    axes = ["optimizer", "lr", "batch_size"] if len({r["optimizer"] for r in runs}) > 1 else ["lr", "batch_size"]
    kinds = {"adaptive_linf_m128_rho0.002": "sharpness"}
    return {"runs": runs, "design": {"axes": axes}, "optimizers": {"sam": {"sam_base": "sgd_momentum"}},
            "measure_kinds": kinds, "correlations": analysis.correlations(runs, axes, kinds),
            "dinh": [], "dinh_info": {"applicable": False, "note": "tanh"}, **extra}


def base_values(opt, li, b, seed, rng, **override):
    values = {"top_eigenvalue": 10.0 * math.exp(0.05 * rng.standard_normal()), "generalization_gap": 0.05 + 0.002 * rng.standard_normal(),
              "test_accuracy": 0.95 + 0.002 * rng.standard_normal(), "pacbayes_mag_flatness": rng.standard_normal(),
              "adaptive_linf_m128_rho0.002": rng.standard_normal(), "balanced_top_eigenvalue": 5.0}
    values.update(override)
    values["test_error"] = 1.0 - values["test_accuracy"]
    return values


def verdicts(rows):
    return [row["verdict"] for row in rows]


def test_rule_helpers_at_their_boundaries():
    assert claims.directional((0.1, 0.3), +1) == "reproduced"
    assert claims.directional((-0.3, -0.1), +1) == "not_reproduced"
    assert claims.directional((-0.1, 0.3), +1) == "inconclusive"
    assert claims.directional((-0.3, -0.1), -1) == "reproduced"
    assert claims.directional(None, +1) == "inconclusive"
    assert claims.noninferior((-0.002, 0.01), 0.0025) == "reproduced"
    assert claims.noninferior((-0.02, -0.003), 0.0025) == "not_reproduced"
    assert claims.noninferior((-0.004, 0.001), 0.0025) == "inconclusive"
    assert claims.no_ranking((-0.5, 0.2), 0.3) == "reproduced"
    assert claims.no_ranking((0.4, 0.9), 0.3) == "not_reproduced"
    assert claims.no_ranking((0.1, 0.5), 0.3) == "inconclusive"


def test_keskar_larger_batches_sharper_and_worse():
    sharper = lambda o, li, b, s, rng: base_values(o, li, b, s, rng, top_eigenvalue=(40.0 if b == 128 else 10.0) * (1 + 0.01 * rng.standard_normal()),  # noqa: E731
                                                    generalization_gap=(0.07 if b == 128 else 0.05) + 0.001 * rng.standard_normal())
    rows = claims.keskar(summary_of(make_runs(sharper)))
    assert verdicts(rows) == ["reproduced", "reproduced"]
    assert rows[0]["value"] == pytest.approx(math.log10(4), abs=0.02) and rows[0]["n"] == 6 * 2 * 3
    flatter = lambda o, li, b, s, rng: base_values(o, li, b, s, rng, top_eigenvalue=10.0 if b == 128 else 40.0)  # noqa: E731
    assert claims.keskar(summary_of(make_runs(flatter)))[0]["verdict"] == "not_reproduced"
    assert verdicts(claims.keskar(summary_of(make_runs(base_values))))[0] == "inconclusive"
    assert verdicts(claims.keskar(summary_of(make_runs(base_values, batches=(64,))))) == ["not_testable"] * 2


def test_foret_sam_against_its_base_at_equal_settings():
    flat = lambda o, li, b, s, rng: base_values(o, li, b, s, rng, top_eigenvalue=5.0 if o == "sam" else 20.0,  # noqa: E731
                                                 generalization_gap=(0.04 if o == "sam" else 0.06) + 0.001 * rng.standard_normal())
    rows = claims.foret(summary_of(make_runs(flat)))
    assert verdicts(rows) == ["reproduced", "reproduced"] and rows[0]["value"] == pytest.approx(math.log10(0.25))
    without_sam = make_runs(flat, optimizers=("sgd", "sgd_momentum"))
    assert verdicts(claims.foret(summary_of(without_sam))) == ["not_testable"] * 2


def test_wilson_adaptive_methods_generalize_worse():
    worse = lambda o, li, b, s, rng: base_values(o, li, b, s, rng, generalization_gap=(0.08 if o in ("adam", "adagrad") else 0.05) + 0.002 * rng.standard_normal())  # noqa: E731
    [row] = claims.wilson(summary_of(make_runs(worse)))
    assert row["verdict"] == "reproduced" and row["value"] == pytest.approx(0.03, abs=0.002)
    better = lambda o, li, b, s, rng: base_values(o, li, b, s, rng, generalization_gap=0.04 if o in ("adam", "adagrad") else 0.06)  # noqa: E731
    assert claims.wilson(summary_of(make_runs(better)))[0]["verdict"] == "not_reproduced"
    assert claims.wilson(summary_of(make_runs(worse, optimizers=("sgd", "sam"))))[0]["verdict"] == "not_testable"


def test_yao_adahessian_reaches_adam_within_the_margin():
    equal = lambda o, li, b, s, rng: base_values(o, li, b, s, rng, test_accuracy=0.95 + 0.0002 * rng.standard_normal())  # noqa: E731
    assert claims.yao(summary_of(make_runs(equal)))[0]["verdict"] == "reproduced"
    worse = lambda o, li, b, s, rng: base_values(o, li, b, s, rng, test_accuracy=0.93 if o == "adahessian" else 0.95)  # noqa: E731
    [row] = claims.yao(summary_of(make_runs(worse)))
    assert row["verdict"] == "not_reproduced" and row["value"] == pytest.approx(-0.02)


def test_jiang_psi_difference_decides():
    # within every group the magnitude-aware measure orders runs like the gap; lambda_max reverses it
    def values(o, li, b, s, rng):
        gap = 0.05 + 0.01 * OPTIMIZERS.index(o) + 0.003 * li + 0.002 * (b == 128) + 0.0001 * s
        return base_values(o, li, b, s, rng, generalization_gap=gap, pacbayes_mag_flatness=gap, top_eigenvalue=1 / gap)

    [row] = claims.jiang(summary_of(make_runs(values)))
    assert row["verdict"] == "reproduced" and row["value"] == pytest.approx(2.0)  # Psi: +1 minus -1
    def reversed_(*a):
        v = values(*a)
        return {**v, "pacbayes_mag_flatness": 1 / v["generalization_gap"], "top_eigenvalue": v["generalization_gap"]}

    assert claims.jiang(summary_of(make_runs(reversed_)))[0]["verdict"] == "not_reproduced"


def test_andriushchenko_no_reliable_ranking():
    def values(o, li, b, s, rng, sign):
        gap = 0.05 + 0.01 * OPTIMIZERS.index(o) + 0.003 * li + 0.002 * (b == 128) + 0.0001 * s
        return base_values(o, li, b, s, rng, generalization_gap=gap, **{"adaptive_linf_m128_rho0.002": sign * gap})

    [ranks] = claims.andriushchenko(summary_of(make_runs(lambda *a: values(*a, sign=+1))))
    assert ranks["verdict"] == "not_reproduced" and ranks["value"] == pytest.approx(1.0)
    [reverse] = claims.andriushchenko(summary_of(make_runs(lambda *a: values(*a, sign=-1))))
    assert reverse["verdict"] == "reproduced" and reverse["note"] == "variant: adaptive_linf_m128_rho0.002"


def test_dinh_rescaling_and_the_ranking_after_balancing():
    rows = [{"scale": a} for a in (0.1, 1.0, 10.0)]
    moved = {"applicable": True, "converged": True, "factors": {"top_eigenvalue": 250.0}, "max_logit_change": 1e-7,
             "accuracy_min": 0.95, "accuracy_max": 0.95}
    assert claims.dinh(summary_of(make_runs(base_values), dinh=rows, dinh_info=moved))[0]["verdict"] == "reproduced"
    still = {**moved, "factors": {"top_eigenvalue": 2.0}}
    assert claims.dinh(summary_of(make_runs(base_values), dinh=rows, dinh_info=still))[0]["verdict"] == "not_reproduced"
    changed = {**moved, "max_logit_change": 0.5}
    assert claims.dinh(summary_of(make_runs(base_values), dinh=rows, dinh_info=changed))[0]["verdict"] == "inconclusive"
    assert claims.dinh(summary_of(make_runs(base_values)))[0]["verdict"] == "not_testable"
    capped = {**moved, "converged": False, "note": "the rescaled sgd run abc did not converge"}  # issue 25, try 6
    [claim] = claims.dinh(summary_of(make_runs(base_values), dinh=rows, dinh_info=capped))[:1]
    assert claim["verdict"] == "not_testable" and claim["note"] == capped["note"]

    def ranking(reverse):
        def values(o, li, b, s, rng):
            lam = 10.0 * (1 + OPTIMIZERS.index(o)) * (1 + 0.01 * rng.standard_normal())
            return base_values(o, li, b, s, rng, top_eigenvalue=lam, balanced_top_eigenvalue=1000 / lam if reverse else 2 * lam)
        return claims.dinh(summary_of(make_runs(values)))[1]

    same, flipped = ranking(False), ranking(True)
    assert same["value"] == pytest.approx(1.0) and same["verdict"] == "not_reproduced"
    assert flipped["value"] == pytest.approx(-1.0) and flipped["verdict"] == "reproduced"


def test_every_claim_row_has_the_contract_fields():
    rows = claims.evaluate(summary_of(make_runs(base_values)))
    assert len(rows) == 10 and len({r["source"] for r in rows}) == 7
    for row in rows:
        assert {"claim", "source", "test", "statistic", "value", "ci95", "verdict", "rule"} <= set(row)
        assert row["verdict"] in claims.VERDICTS
