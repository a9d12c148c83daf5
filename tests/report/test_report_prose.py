"""The sentences: words chosen from the summary's facts, never a computation of the report's own."""

import copy
import json
import re

import pytest

import variants
from minima import paths
from report import prose, tables
from report.formats import words_int, words_num, words_pp, words_sci
from variants import typed


def _all_text(summary) -> str:
    s = typed(summary)
    parts = [*prose.abstract(s), *prose.discussion(s), *prose.limitations(s), *prose.dinh_sentences(s),
             prose.correlation_sentence(s), prose.correlation_sentence(s, "test_error"), prose.noise_floor_sentence(s)]
    return " ".join(parts)


def test_abstract_states_the_design(tiny_summary):
    design = tiny_summary["design"]
    sentence = prose.design_sentence(typed(tiny_summary))
    assert f"{design['n_runs']} runs" in sentence
    assert f"{design['n_configurations']} configurations" in sentence
    assert f"{design['n_converged']} of the {design['n_runs']} runs converged" in sentence
    assert words_pp(design["gap_spread"]) in sentence
    assert f"cross-entropy ≤ {design['stop_loss']:g}" in sentence
    for axis in design["axes"]:
        assert prose.axis_levels(typed(tiny_summary), axis) in sentence
    assert tiny_summary["data"]["display_name"] in sentence


def test_learning_rate_levels_are_counted_per_batch_size_when_each_batch_has_its_own_grid(tiny_summary):
    """With lr_batch_scaling each batch size runs its own rates: 3 per batch make 4 distinct values
    over two batch sizes, and the abstract once said "4 levels per optimizer"."""
    summary = copy.deepcopy(tiny_summary)
    for table in summary["design"]["grid"].values():
        table["lr_by_batch"] = {"32": [0.1, 0.2, 0.4], "128": [0.2, 0.4, 0.8]}
        table["lr"] = [0.1, 0.2, 0.4, 0.8]
    assert prose.axis_levels(typed(summary), "lr") == "3 levels per optimizer and batch size"
    for table in summary["design"]["grid"].values():
        table["lr_by_batch"] = {"32": [0.1, 0.2], "128": [0.1, 0.2]}
        table["lr"] = [0.1, 0.2]
    assert "batch size" not in prose.axis_levels(typed(summary), "lr")


def test_abstract_gives_the_verdict_of_every_claim(tiny_summary):
    sentence = prose.claims_sentence(typed(tiny_summary))
    claims = tiny_summary["claims"]
    assert sentence.startswith(f"Of {len(claims)} published claims tested, ")
    counted = 0
    for verdict, words in (("reproduced", "reproduced"), ("not_reproduced", "not reproduced"),
                           ("inconclusive", "inconclusive"), ("not_testable", "not testable")):
        n = sum(c["verdict"] == verdict for c in claims)
        counted += n
        if n:
            assert f"{n} " in sentence and words in sentence
    assert counted == len(claims)
    for claim in claims:
        if claim["verdict"] == "reproduced":
            assert claim["claim"] in sentence


def test_every_verdict_is_named(tiny_summary):
    sentence = prose.claims_sentence(typed(variants.with_every_verdict(tiny_summary)))
    assert "1 is not reproduced" not in sentence  # the verb goes with the first group only
    for words in ("reproduced (", "not reproduced (", "inconclusive", "not testable"):
        assert words in sentence


def test_no_significant_test_means_undetermined_never_no_correlation(tiny_summary):
    assert not any(c["significant"] for c in tiny_summary["correlations"])
    sentence = prose.correlation_sentence(typed(tiny_summary))
    assert "undetermined" in sentence and "Holm-adjusted" in sentence
    assert "no correlation" not in _all_text(tiny_summary).lower()


def test_a_significant_test_is_named_with_its_direction(tiny_summary):
    changed = variants.with_significant_correlation(tiny_summary)
    sentence = prose.correlation_sentence(typed(changed))
    assert "a positive one for λ_max (τ = 0.60, 95 % CI [0.20, 0.90])" in sentence
    assert "the other 11 measures the direction is undetermined" in sentence
    assert "λ_max" in prose.baselines_sentence(typed(changed))


def test_dinh_sentences_use_the_summary_factors(tiny_summary):
    info = tiny_summary["dinh_info"]
    text = " ".join(prose.dinh_sentences(typed(tiny_summary)))
    assert f"λ_max by a factor of {words_sci(info['factors']['top_eigenvalue'])}" in text
    # the rescaled run is a converged one (issue 25, try 6: it was the first SGD run, capped)
    assert "stay put" in text and "which did not reach the stop rule" not in text
    capped = json.loads(json.dumps(tiny_summary))
    next(r for r in capped["runs"] if r["run"] == info["run"])["converged"] = False
    assert "which did not reach the stop rule" in " ".join(prose.dinh_sentences(typed(capped)))
    abstract = prose.dinh_abstract(typed(tiny_summary))
    stable = [q for q in typed(tiny_summary).measures_of("sharpness") if q in info["stable"]]
    assert f"{len(stable)} of the " in abstract and "sign change" not in abstract


def test_nonpositive_quantity_has_no_factor_never_a_sign_change(tiny_summary):
    changed = variants.with_nonpositive_trace(tiny_summary)
    text = _all_text(changed)
    assert "tr H takes values ≤ 0, so no factor is defined" in text
    assert "sign change" not in text


def test_dinh_not_applicable(tiny_summary):
    changed = variants.with_dinh_not_applicable(tiny_summary)
    assert prose.dinh_sentences(typed(changed)) == (
        f"The rescaling experiment of Dinh et al. (2017) was not run: {variants.TANH_NOTE}.",)
    assert any(variants.TANH_NOTE in s for s in prose.limitations(typed(changed)))


def test_limitations_come_from_the_summary(tiny_summary):
    text = " ".join(prose.limitations(typed(tiny_summary)))
    lim = tiny_summary["limitations"]
    assert f"{len(lim['capped'])} of {tiny_summary['design']['n_runs']} runs did not reach the stop rule" in text
    assert f"Only {lim['n_seeds']} seeds per configuration" in text
    assert prose.coverage(lim["landscape_runs"]) in text and "first seed of each configuration" in text
    assert tiny_summary["original_study"]["reason"] in text
    assert "LeNet-5" in text and tiny_summary["data"]["display_name"] in text
    diverged, _ = variants.with_diverged_run(tiny_summary)
    assert "1 of 12 runs diverged" in " ".join(prose.limitations(typed(diverged)))


def test_noise_floor_sentence(tiny_summary):
    floor = tiny_summary["noise_floor"]["generalization_gap"]
    assert f"τ = {words_num(floor['kendall_tau'])}" in prose.noise_floor_sentence(typed(tiny_summary))


def test_the_data_set_name_is_written_as_given(tiny_summary):
    fashion = variants.with_fashion(tiny_summary)
    text = _all_text(fashion)
    assert "Fashion-MNIST" in text and "FASHION" not in text
    assert "Fashion-MNIST" in tables.data_descriptions(typed(fashion))["test"]
    assert words_int(fashion["data"]["n_train"]) in prose.design_sentence(typed(fashion))


def test_checklist_points_at_sections_the_report_defines(tiny_summary):
    body = (paths.TEMPLATES_DIR / "report.j2").read_text()
    labels = set(re.findall(r'm\.(?:sub)?section\("sec:(\w+)"\)', body))
    keys = {item.section for item in prose.checklist(typed(tiny_summary))}
    assert keys <= labels and {"repro", "data", "claims", "limitations"} <= keys
    statistics = next(i for i in prose.checklist(typed(tiny_summary)) if i.item == "Statistics")
    assert statistics.answer.startswith("Kendall τ with jackknife intervals over configurations, exact sign-flip tests")
    assert "no result depends on a random seed" in statistics.answer
    prior = next(i for i in prose.checklist(typed(tiny_summary)) if i.item == "Comparison with prior work")
    assert prior.answer.startswith("no:")
    comparable = variants.with_comparable_original(tiny_summary)
    assert next(i for i in prose.checklist(typed(comparable)) if i.item == "Comparison with prior work").answer.startswith("yes")


@pytest.mark.parametrize("target", ["generalization_gap", "test_error"])
def test_correlation_table_rows_are_the_summary_rows(tiny_summary, target):
    table = tables.correlations(typed(tiny_summary), target)
    rows = [row for group in table["groups"] for row in group["rows"]]
    source = [c for c in tiny_summary["correlations"] if c["target"] == target]
    assert [r["head"].name for r in rows] == [c["measure"] for c in source
                                               if c["kind"] in ("hessian", "sharpness", "baseline")]
    for row, c in zip(rows, source):
        assert row["tau"] == c["kendall_tau"] and row["p_holm"] == c["p_holm"] and row["psi_mean"] == c["psi_mean"]
    assert [g["kind"] for g in table["groups"]] == ["Hessian", "Sharpness", "Baseline"]


def test_optimizer_tables_are_the_aggregates(tiny_summary):
    rows = {row["head"].name: row for row in tables.optimizer_block(typed(tiny_summary), tables.ACCURACY_ROWS)}
    aggregates = tiny_summary["aggregates"]
    assert [c["mean"] for c in rows["test_accuracy"]["cells"]] == [a["metrics"]["test_accuracy"]["mean"]
                                                                   for a in aggregates]
    assert rows["generalization_gap"]["unit"] == "pp" and rows["test_accuracy"]["unit"] == "%"


def test_the_session_summary_is_left_alone(tiny_summary):
    before = copy.deepcopy(tiny_summary)
    variants.edge_cases(tiny_summary)
    _all_text(tiny_summary)
    assert tiny_summary == before


def test_timing_table_gives_core_seconds_per_run(tiny_summary):
    s = copy.deepcopy(tiny_summary)
    n = len(s["runs"])
    s["timing"] = {"train": 100.0, "curvature": 50.0, "dinh": 3.0, "total": 153.0}
    s["core_timing"] = {"train": 90.0, "curvature": None, "dinh": 2.5, "total": None}
    rows = {row[0]: row[1:] for row in tables.timing(typed(s))}
    assert rows["train"] == ("100.0 s", "90.0 s", f"{words_num(90.0 / n, 2)} s")
    assert rows["curvature"] == ("50.0 s", "–", "–")  # results cached before CPU time was recorded
    assert rows["dinh"] == ("3.0 s", "2.5 s", "–")  # a study part: not a per-run cost
    del s["core_timing"]  # a summary written before core_timing existed still renders
    assert all(row[2] == "–" for row in tables.timing(typed(s)))
