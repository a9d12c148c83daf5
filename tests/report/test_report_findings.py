import copy

import pytest

from fake_summary import make_summary
from report import findings as F


@pytest.fixture(scope="module")
def summary():
    return make_summary()


@pytest.fixture(scope="module")
def found(summary):
    return F.findings(summary)


def test_sharpest_and_flattest_by_mean_over_seeds(summary, found):
    top = next(e for e in found.extremes if e.quantity == "top_eigenvalue")
    means = {
        opt: F.aggregate(summary, opt, "top_eigenvalue")["mean"] for opt in F.optimizers_of(summary)
    }
    assert top.sharpest == max(means, key=means.get) == "adam"
    assert top.flattest == min(means, key=means.get) == "sam"
    assert top.sharpest_mean == pytest.approx(means["adam"])
    assert {e.quantity for e in found.extremes} == {"top_eigenvalue", "trace", *summary["measures"]}


def test_extremes_follow_the_numbers(summary):
    changed = copy.deepcopy(summary)
    for run in changed["runs"]:
        if run["optimizer"] == "sgd" and run["status"] == "ok":
            run["curvature"]["top_eigenvalues"][0] = 1e6
    for row in changed["aggregates"]:
        row["metrics"].pop("top_eigenvalue")  # the aggregate is recomputed from the runs
    top = next(e for e in F.extremes(changed) if e.quantity == "top_eigenvalue")
    assert top.sharpest == "sgd"


def test_best_accuracy(summary, found):
    assert found.best.optimizer == max(
        F.optimizers_of(summary), key=lambda o: F.aggregate(summary, o, "test_accuracy")["mean"]
    )
    assert found.best.n == 2


def test_diverged_run_is_excluded(summary, found):
    assert [(d.optimizer, d.seed) for d in found.diverged] == [("adahessian", 1)]
    assert F.aggregate(summary, "adahessian", "test_accuracy")["n"] == 1
    assert any("1 of 12 runs diverged" in s for s in found.abstract)


def test_correlation_sentence_significant_and_not(summary):
    text = F._correlation_sentence(summary, F.correlation_findings(summary))
    assert "correlate with the generalization gap" in text and "Kendall τ" in text
    flat = copy.deepcopy(summary)
    for row in flat["correlations"]:
        row["ci95"] = [-0.2, 0.4]
    text = F._correlation_sentence(flat, F.correlation_findings(flat))
    assert text.startswith("No measure correlates")
    none = copy.deepcopy(summary)
    for row in none["correlations"]:
        row.update(kendall_tau=None, spearman=None, ci95=None, n=2)
    assert "too few" in F._correlation_sentence(none, F.correlation_findings(none))


def test_dinh_factors(found):
    factors = dict(found.dinh.factors)
    assert factors["top_eigenvalue"] == pytest.approx(1e4)
    assert factors["adaptive_average"] == pytest.approx(1.0)
    assert found.dinh.accuracy_min == found.dinh.accuracy_max
    text = " ".join(found.dinh_text)
    assert "1.00×10⁴" in text and "stay within a factor" in text


def test_seed_profile_has_no_dinh_and_same_setup():
    seed = make_summary(profile="seed", seeds=(100,), interpolation=False)
    found = F.findings(seed)
    assert found.dinh is None and found.same_setup
    assert any("not tested on this profile" in s for s in found.abstract)
    assert any("One seed per optimizer" in s for s in found.limitations)
    assert [d.item for d in found.differences] == ["Epochs"]  # the fake trains 12, not 150
    error_bars = next(c for c in found.checklist if c.item == "Error bars")
    assert error_bars.answer.startswith("no")


def test_quick_profile_lists_differences_and_limitations(found):
    items = {d.item: (d.ours, d.original) for d in found.differences}
    assert items["Activation"] == ("relu", "tanh")
    assert items["Adam betas"] == ("(0.9, 0.999)", "(0.675, 0.999)")
    assert items["SAM"] == ("run", "not run")
    text = " ".join(found.limitations)
    assert "Only 2 seeds" in text and "2,000 of the 60,000" in text and "5 epochs" in text


def test_checklist_sections_are_known_labels(found):
    labels = {"app:repro", "sec:data", "tab:hparams", "sec:setup", "tab:main", "sec:correlation",
              "sec:diverged", "sec:original", "sec:limitations"}
    assert {c.section for c in found.checklist} <= labels
