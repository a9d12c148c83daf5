import copy

import numpy as np
import pytest

import variants
from variants import typed
from minima.io import MinimaError
from report import figures, style
from report.figures import build, common, landscape


def test_one_colour_per_optimizer_whatever_the_subset():
    full = style.optimizer_styles(["sgd", "adam", "sam"])
    sub = style.optimizer_styles(["sam", "adam"])
    assert full["adam"] == sub["adam"] and full["sam"] == sub["sam"]
    assert len({c for c, _ in style.optimizer_styles(style.OPTIMIZER_ORDER).values()}) == 6
    extra = style.optimizer_styles(["mine", "sgd", "other"])
    assert extra["mine"] != extra["other"] and extra["sgd"] == full["sgd"]
    assert style.order_optimizers(["sam", "x", "sgd"]) == ["sgd", "sam", "x"]


def test_every_figure_has_its_data_in_the_tiny_summary(tiny_summary):
    one = {name: None for name in figures.FIGURES} | {"replication_scatter": "this profile runs one dataset"}
    assert figures.skip_reasons(typed(tiny_summary)) == one
    assert figures.skip_reasons(typed(variants.with_replication(tiny_summary))) == {name: None for name in figures.FIGURES}


def test_skip_reasons_name_absent_data(tiny_summary):
    skipped = figures.skip_reasons(typed(variants.with_dinh_not_applicable(tiny_summary)))
    assert variants.TANH_NOTE in skipped["dinh"] and skipped["claims"] is None
    bare = copy.deepcopy(tiny_summary)
    bare["interpolation"] = None
    for run in bare["runs"]:
        run["landscape"] = None
        if run["curvature"]:
            run["curvature"]["density"] = None
    skipped = figures.skip_reasons(typed(bare))
    assert "interpolation" in skipped["interpolation"] and "landscape" in skipped["landscape_1d"]
    assert "spectral density" in skipped["spectral_densities"] and skipped["training"] is None


def test_scatter_needs_three_converged_runs(tiny_summary):
    few = copy.deepcopy(tiny_summary)
    converged = [r for r in few["runs"] if r["converged"]]
    for run in converged[2:]:
        run["converged"] = False
    assert "only 2 converged runs" in figures.skip_reasons(typed(few))["correlation_scatter"]


def test_decade_labels_are_plain_text():
    assert common.decade_label(1e-3, 0) == "10⁻³"
    assert common.decade_label(10.0, 0) == "10"
    assert common.decade_label(3.0, 0) == ""


def test_tau_titles_come_from_the_correlation_rows(tiny_summary):
    row = next(c for c in tiny_summary["correlations"] if c["kendall_tau"] is not None and c["ci95"])
    title = common.tau_title(typed(tiny_summary).correlation(row["measure"], row["target"]))
    assert f"{row['kendall_tau']:.2f}".replace("-", "\u2212") in title
    assert common.tau_title(None) == r"$\tau$ undetermined"


def test_figure_bytes_are_deterministic(tiny_summary, tmp_path):
    a = figures.render_figure("interpolation", typed(tiny_summary), tmp_path / "a")
    b = figures.render_figure("interpolation", typed(tiny_summary), tmp_path / "b")
    assert a.pdf.read_bytes() == b.pdf.read_bytes()
    assert a.png.read_bytes() == b.png.read_bytes()
    assert b"CreationDate" not in a.pdf.read_bytes()


@pytest.mark.parametrize("name", ["training", "curvature_by_optimizer", "correlation_scatter"])
def test_a_diverged_run_is_drawn_or_left_out(tiny_summary, tmp_path, name):
    diverged, _ = variants.with_diverged_run(tiny_summary)
    result = figures.render_figure(name, typed(diverged), tmp_path)
    assert result.available and result.pdf.read_bytes().startswith(b"%PDF")


def test_claims_figure_draws_every_verdict(tiny_summary, tmp_path):
    result = figures.render_figure("claims", typed(variants.with_every_verdict(tiny_summary)), tmp_path)
    assert result.png.read_bytes().startswith(b"\x89PNG")


def test_claims_labels_stay_on_the_page_and_apart(tiny_summary, tmp_path):
    """Each claim's label (up to four lines for the m-sharpness claims) gets a row as tall as
    itself: no label runs into its neighbour's or off the page's left edge, in the layout both
    files are saved with."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    summary = typed(variants.with_every_verdict(tiny_summary))
    fig = build.draw("claims", summary)
    build.save(fig, tmp_path / "claims")  # lays the figure out once, as the report's files are
    renderer = FigureCanvasAgg(fig).get_renderer()
    boxes = [ax.yaxis.label.get_window_extent(renderer) for ax in fig.axes if ax.get_ylabel()]
    assert len(boxes) == len(summary.claims) and max(b.height for b in boxes) > 4 * min(b.height for b in boxes) / 3
    assert all(box.x0 > 0 for box in boxes)
    for upper, lower in zip(boxes, boxes[1:]):
        assert lower.y1 < upper.y0


def _trimmed(summary):
    """Only the interpolation has data: every other figure is skipped (cheap to draw)."""
    s = copy.deepcopy(summary)
    s["claims"], s["dinh"], s["correlations"] = [], [], []
    s["dinh_info"] = {**s["dinh_info"], "applicable": False}
    for run in s["runs"]:
        run.update(curvature=None, sharpness=None, landscape=None, values={}, layer_norms={},
                   history={key: [] for key in run["history"]})
    for agg in s["aggregates"]:
        agg["layer_norms"] = {}
    return s


def test_skipped_figure_removes_a_stale_file(tiny_summary, tmp_path):
    (tmp_path / "dinh.pdf").write_bytes(b"old")
    results = figures.render_figures(typed(_trimmed(tiny_summary)), tmp_path)
    assert not (tmp_path / "dinh.pdf").exists()
    assert [n for n, r in results.items() if r.available] == ["interpolation"]


def test_render_figures_is_a_no_op_when_current(tiny_summary, tmp_path, monkeypatch):
    summary = _trimmed(tiny_summary)
    figures.render_figures(typed(summary), tmp_path)

    def redrawn(*args):
        raise AssertionError("redrawn")  # pickles: the figures are drawn in worker processes

    monkeypatch.setattr(build, "draw", redrawn)
    assert figures.render_figures(typed(summary), tmp_path)["interpolation"].available
    provenance = {**summary, "created_by": "another command", "timing": {"total": 1.0}}
    assert figures.render_figures(typed(provenance), tmp_path)["interpolation"].available  # drawn from neither
    # a run trained and measured again to the same numbers: only its durations differ
    retrained = copy.deepcopy(summary)
    run = retrained["runs"][0]
    run["train_seconds"] += 1.0
    run["history"]["wall_time"] = [t + 1.0 for t in run["history"]["wall_time"]]
    run["analysis_core_seconds"] = {kind: 2.0 for kind in run["analysis_core_seconds"]}
    assert figures.render_figures(typed(retrained), tmp_path)["interpolation"].available
    summary["interpolation"]["loss"][0] = 5.0
    with pytest.raises(AssertionError, match="redrawn"):
        figures.render_figures(typed(summary), tmp_path)


def test_landscape_grid_orientation():
    alphas, betas = np.arange(3.0), np.arange(4.0)
    by_alpha = alphas[:, None] * 10 + betas[None, :]  # loss[i][j] at (alphas[i], betas[j])
    assert np.array_equal(landscape.rows_along_beta(by_alpha, alphas, betas), by_alpha.T)
    assert np.array_equal(landscape.rows_along_beta(by_alpha.T, alphas, betas), by_alpha.T)
    with pytest.raises(ValueError, match="does not match"):
        landscape.rows_along_beta(np.zeros((2, 2)), alphas, betas)


def test_malformed_data_is_a_one_line_error(tiny_summary, tmp_path):
    summary = copy.deepcopy(tiny_summary)
    summary["interpolation"]["loss"] = summary["interpolation"]["loss"][:3]
    with pytest.raises(MinimaError, match="figure interpolation"):
        figures.render_figure("interpolation", typed(summary), tmp_path)
