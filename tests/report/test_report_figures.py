import copy

import numpy as np
import pytest

from fake_summary import make_summary
from minima.io import MinimaError
from report import figures, style


def test_one_colour_per_optimizer_whatever_the_subset():
    full = style.optimizer_styles(["sgd", "adam", "sam"])
    sub = style.optimizer_styles(["sam", "adam"])
    assert full["adam"] == sub["adam"] and full["sam"] == sub["sam"]
    assert len({c for c, _ in style.optimizer_styles(style.OPTIMIZER_ORDER).values()}) == 6
    extra = style.optimizer_styles(["mine", "sgd", "other"])
    assert extra["mine"] != extra["other"] and extra["sgd"] == full["sgd"]
    assert style.order_optimizers(["sam", "x", "sgd"]) == ["sgd", "sam", "x"]


def test_plan_skips_absent_data_with_a_reason():
    seed = make_summary(profile="seed", seeds=(100,), interpolation=False)
    plan = figures.plan(seed)
    assert "tanh" in plan["dinh"] and "interpolation" in plan["interpolation"]
    assert plan["training_curves"] is None and plan["spectral_densities"] is None
    assert all(reason is None for reason in figures.plan(make_summary()).values())


def test_history_of_nulls_is_no_history():
    summary = make_summary()
    for run in summary["runs"]:
        run["history"]["gradient_norm"] = [None] * len(run["history"]["epoch"])
    plan = figures.plan(summary)
    assert "gradient norm" in plan["gradient_norms"] and plan["training_curves"] is None


def test_decade_labels_are_plain_text():
    assert figures._decade_label(1e-3, 0) == "10⁻³"
    assert figures._decade_label(10.0, 0) == "10"
    assert figures._decade_label(3.0, 0) == ""


def test_figure_bytes_are_deterministic(tmp_path):
    summary = make_summary()
    a = figures.render_figure("interpolation", summary, tmp_path / "a")
    b = figures.render_figure("interpolation", summary, tmp_path / "b")
    assert a.pdf.read_bytes() == b.pdf.read_bytes()
    assert a.png.read_bytes() == b.png.read_bytes()
    assert b"CreationDate" not in a.pdf.read_bytes()


@pytest.mark.parametrize("name", ["training_curves", "curvature_by_optimizer", "correlation_scatter"])
def test_single_seed_profile_figures(tmp_path, name):
    # One seed: no bands, no spread; four runs only.
    result = figures.render_figure(name, make_summary(profile="seed", seeds=(100,)), tmp_path)
    assert result.available and result.pdf.stat().st_size > 1000


def _trimmed():
    """Only the interpolation has data: every other figure is skipped (cheap to draw)."""
    summary = copy.deepcopy(make_summary(dinh=False))
    for run in summary["runs"]:
        run.update(curvature=None, sharpness=None, landscape=None, history=None)
    return summary


def test_skipped_figure_removes_a_stale_file(tmp_path):
    (tmp_path / "dinh.pdf").write_bytes(b"old")
    results = figures.render_figures(_trimmed(), tmp_path)
    assert not (tmp_path / "dinh.pdf").exists()
    assert [n for n, r in results.items() if r.available] == ["interpolation"]


def test_render_figures_is_a_no_op_when_current(tmp_path, monkeypatch):
    summary = _trimmed()
    figures.render_figures(summary, tmp_path)
    def redrawn(*args):
        raise AssertionError("redrawn")  # pickles: the figures are drawn in worker processes

    monkeypatch.setattr(figures, "draw", redrawn)
    assert figures.render_figures(summary, tmp_path)["interpolation"].available
    summary["interpolation"]["loss"][0] = 5.0
    with pytest.raises(AssertionError, match="redrawn"):
        figures.render_figures(summary, tmp_path)


def test_landscape_grid_orientation():
    alphas, betas = np.arange(3.0), np.arange(4.0)
    by_alpha = alphas[:, None] * 10 + betas[None, :]  # loss[i][j] at (alphas[i], betas[j])
    assert np.array_equal(figures._rows_along_beta(by_alpha, alphas, betas), by_alpha.T)
    assert np.array_equal(figures._rows_along_beta(by_alpha.T, alphas, betas), by_alpha.T)
    with pytest.raises(ValueError, match="does not match"):
        figures._rows_along_beta(np.zeros((2, 2)), alphas, betas)


def test_malformed_data_is_a_one_line_error(tmp_path):
    summary = make_summary()
    summary["interpolation"]["loss"] = summary["interpolation"]["loss"][:3]
    with pytest.raises(MinimaError, match="figure interpolation"):
        figures.render_figure("interpolation", summary, tmp_path)
