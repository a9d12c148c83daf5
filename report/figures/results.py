"""The figures of the findings: the published claims, sharpness against the gap, and psi."""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from minima.schema import GAP, Claim, Run, Summary
from report import style
from report.figures import common
from report.figures.rcparams import TEXTWIDTH
from report.formats import words_num

# The claims figure fits one page with its caption: about 20 claims in 9 inches. Each row is as
# tall as its label (and at least as tall as a value's axis with its ticks and statistic), so that
# no label runs into its neighbours'; LaTeX still scales a taller figure (more claims) to the page.
CLAIM_ROW = 0.42  # inches per claim, at least
CLAIM_FONT = 6.0  # points, the label's and the note's
STATISTIC_FONT = 5.5  # points, the statistic under each axis
CLAIM_LINE = 0.11  # inches per line of a label (6 pt text, as matplotlib spaces its lines)
CLAIM_WRAP = 60  # characters per line of a claim's label
NOTE_WRAP = 62  # ... and of the note shown in place of a missing value
SCATTER_COLUMNS = 4


# ---- the published claims: one small panel per claim, each on its own scale ----------------

def _claim_limits(points: list[float]) -> tuple[float, float]:
    lo, hi = min(points), max(points)
    pad = 0.15 * (hi - lo) if hi > lo else max(abs(lo) * 0.2, 0.1)
    return lo - pad, hi + pad


def claim_label(number: int, claim: Claim) -> str:
    """A claim's row label: its number, words, source and verdict, wrapped."""
    return textwrap.fill(f"{number}. {claim.claim} ({claim.source}): {style.verdict_words(claim.verdict)}", CLAIM_WRAP)


def claims(summary: Summary) -> Figure:
    """Each claim's statistic and 95 % interval, coloured by verdict, on the claim's own axis
    (the statistics have different units); a dotted line marks the rule's threshold where the
    summary gives it."""
    rows = summary.claims
    labels = [claim_label(i, claim) for i, claim in enumerate(rows, 1)]
    # each row as tall as its label, so that no label runs into its neighbours'
    heights = [max(CLAIM_ROW, CLAIM_LINE * (label.count("\n") + 1) + 0.04) for label in labels]
    fig = Figure(figsize=(TEXTWIDTH, sum(heights) + 0.3))
    axes = fig.subplots(len(rows), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    # constrained layout measured the widest label a few points narrower than it prints (its
    # first letters fell off the page): a wider pad keeps them on it
    fig.get_layout_engine().set(w_pad=8 / 72)
    for ax, claim, label in zip(axes, rows, labels):
        colour = style.VERDICTS[claim.verdict][2]
        # hung from the top of its row, beside the value's axis, its ticks and its statistic
        ax.set_ylabel(style.mpl_text(label), rotation=0, ha="right", va="top", fontsize=CLAIM_FONT)
        ax.yaxis.set_label_coords(-0.02, 1.0)
        ax.set_yticks([])
        ax.set_ylim(-1, 1)
        ax.spines["left"].set_visible(False)
        ax.grid(axis="y", visible=False)
        ax.tick_params(axis="x", labelsize=6, pad=1)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        if claim.value is None:
            note = claim.reason or claim.note or "the summary gives none"
            text = textwrap.fill(f"{style.verdict_words(claim.verdict)}, no value: {note}", NOTE_WRAP)
            ax.text(0.02, 1.0, style.mpl_text(text), transform=ax.transAxes, ha="left", va="top",
                    fontsize=CLAIM_FONT, color=colour)
            # an empty axis that takes the room of a drawn one (invisible ticks and statistic), so
            # that every row's height is its own and the labels stay apart
            ax.grid(False)
            ax.tick_params(axis="x", colors="none")
            ax.set_xlabel(" ", fontsize=STATISTIC_FONT, labelpad=1)
            ax.spines["bottom"].set_visible(False)
            continue
        scale = style.claim_scale(claim.unit)  # fractions are drawn in percentage points
        value, interval = claim.value * scale, [v * scale for v in claim.ci95 or []]
        points = [value, *interval]
        thresholds = [claim.reference]
        if claim.rule_kind == "equivalence":  # the band the effect must stay within
            thresholds = [-claim.margin, claim.margin]
        for threshold in thresholds:
            ax.axvline(threshold * scale, color="0.4", linestyle=":", linewidth=0.9)
            points.append(threshold * scale)
        if interval:
            ax.plot(interval, [0, 0], color=colour, linewidth=2.2, solid_capstyle="butt")
        ax.plot([value], [0], marker="o", color=colour, markersize=5,
                markerfacecolor=colour if interval else "white")
        ax.set_xlim(*_claim_limits(points))
        ax.set_xlabel(style.mpl_text(style.claim_statistic(claim.statistic, claim.unit)), fontsize=STATISTIC_FONT, labelpad=1)
    handles = [Line2D([], [], color=hex_colour, marker="o", linewidth=2.2, label=words)
               for words, _, hex_colour in style.VERDICTS.values()]
    handles.append(Line2D([], [], color="0.3", marker="o", markerfacecolor="white", linestyle="none",
                          label="value without interval"))
    common.legend(fig, handles)
    return fig


# ---- sharpness against the generalization gap ----------------------------------------------

def scatter_measures(summary: Summary) -> list[str]:
    return summary.measures_of("hessian", "sharpness")


def correlation_scatter(summary: Summary) -> Figure:
    """Each Hessian and sharpness measure against the gap, one point per converged run."""
    measures = scatter_measures(summary)
    fig, axes = common.grid(len(measures), SCATTER_COLUMNS, 1.7, sharey=True)
    runs = summary.converged_runs()
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.optimizer, common.level_marker(summary, run)), []).append(run)
    for i, (ax, measure) in enumerate(zip(axes, measures)):
        xs = []
        for (optimizer, marker), members in groups.items():
            pairs = [(r.value(measure), r.value(GAP)) for r in members]
            pairs = [(x, 100 * y) for x, y in pairs if x is not None and y is not None]
            if pairs:
                x, y = zip(*pairs)
                ax.scatter(x, y, color=common.colour(summary, optimizer), marker=marker, s=14, linewidths=0)
                xs += list(x)
        if common.wants_log(xs):
            common.log(ax, "x")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=3))  # long decimals would overlap
        row = summary.correlation(measure)
        ax.set_title(common.qlabel(summary, measure) + "\n" + common.tau_title(row), fontsize=7)
        if i % SCATTER_COLUMNS == 0:
            ax.set_ylabel("gap (pp)")
    names = [o for o in style.optimizer_names(summary) if any(r.optimizer == o for r in runs)]
    # Colour is the optimizer, marker shape the second axis's level: optimizers get a plain dot.
    common.legend(fig, common.optimizer_handles(summary, names, marker="o", line=False)
                  + common.level_handles(summary, "marker"), ncols=4)
    return fig


# ---- Jiang et al.'s granulated coefficient -------------------------------------------------

def _psi_matrix(summary: Summary, measures: list[str], target: str, axes: list[str]) -> np.ndarray:
    table = np.full((len(measures), len(axes) + 1), np.nan)
    for i, measure in enumerate(measures):
        row = summary.correlation(measure, target)
        if row is None:
            continue
        values = [row.psi.get(a) for a in axes] + [row.psi_mean]
        table[i] = [np.nan if v is None else v for v in values]
    return table


def psi_heatmap(summary: Summary) -> Figure:
    """psi per varied axis and their mean Psi, per measure (rows, by kind) and target (panels)."""
    axes_names = summary.design.axes
    measures = summary.measures_of()
    targets = [t for t in summary.targets if summary.correlations_of(t)]
    fig = Figure(figsize=(TEXTWIDTH, 0.17 * len(measures) + 1.1))
    panels = fig.subplots(1, len(targets), sharey=True, squeeze=False)[0]
    norm = TwoSlopeNorm(vmin=-1.0, vcenter=0.0, vmax=1.0)
    image = None
    kinds = [summary.measure_kinds[m] for m in measures]
    for j, (ax, target) in enumerate(zip(panels, targets)):
        table = _psi_matrix(summary, measures, target, axes_names)
        image = ax.imshow(np.ma.masked_invalid(table), cmap="RdBu_r", norm=norm, aspect="auto")
        ax.set_facecolor("0.88")  # no value
        for (i, k), v in np.ndenumerate(table):
            text = words_num(v)  # an en dash where no value
            ax.text(k, i, text, ha="center", va="center", fontsize=5.5,
                    color="white" if not np.isnan(v) and abs(v) > 0.6 else "black")
        columns = [style.mpl_text(style.axis_words(a)) for a in axes_names] + [r"$\Psi$ (mean)"]
        ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
        ax.set_yticks(range(len(measures)), [common.qlabel(summary, m) for m in measures])
        for i in range(1, len(kinds)):
            if kinds[i] != kinds[i - 1]:
                ax.axhline(i - 0.5, color="black", linewidth=0.8)
        ax.axvline(len(axes_names) - 0.5, color="black", linewidth=0.8)
        ax.grid(False)
        ax.tick_params(length=0)
        ax.set_title(style.mpl_text(f"against {style.words(summary, target)}"), fontsize=8)
        if j:
            ax.tick_params(labelleft=False)
    if image is not None:
        fig.colorbar(image, ax=list(panels), shrink=0.8,
                     label=r"$\psi$: mean Kendall $\tau$ where only that axis changes")
    return fig


# ---- replication: the same measures on every dataset -----------------------------------------

REPLICATION_MEASURES = 4  # panels: the Hessian measures, then the sharpness measures with the largest |Ψ|


def replication_measures(summary: Summary) -> list[str]:
    """λ_max and the trace, then the primary dataset's sharpness measures by |Ψ| against the gap,
    up to REPLICATION_MEASURES panels: the measures a reader compares across datasets."""
    hessian = [m for m in ("top_eigenvalue", "trace") if m in summary.measure_kinds]
    rows = [summary.correlation(m) for m in summary.measures_of("sharpness")]
    ranked = sorted((r for r in rows if r is not None and r.psi_mean is not None), key=lambda r: (-abs(r.psi_mean), r.measure))
    return (hessian + [r.measure for r in ranked])[:REPLICATION_MEASURES]


def replication_scatter(summary: Summary) -> Figure:
    """Each compared measure against the gap, one point per converged run, coloured by dataset;
    titles give each dataset's Kendall τ."""
    studies = summary.studies()
    measures = replication_measures(summary)
    fig, axes = common.grid(len(measures), REPLICATION_MEASURES, 1.9, sharey=True)
    for i, (ax, measure) in enumerate(zip(axes, measures)):
        xs, titles = [], []
        for study, colour in zip(studies, style.DATASET_COLOURS):
            pairs = [(r.value(measure), r.value(GAP)) for r in study.converged_runs()]
            pairs = [(x, 100 * y) for x, y in pairs if x is not None and y is not None]
            if pairs:
                x, y = zip(*pairs)
                ax.scatter(x, y, color=colour, s=10, linewidths=0, alpha=0.8)
                xs += list(x)
            row = study.correlation(measure)
            tau = r"$\tau$ –" if row is None or row.kendall_tau is None else rf"$\tau$ = {words_num(row.kendall_tau)}"
            titles.append(f"{study.data.display_name}: {tau}")
        if common.wants_log(xs):
            common.log(ax, "x")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=3))
        ax.set_title(common.qlabel(summary, measure) + "\n" + "\n".join(titles), fontsize=6.5)
        if i % REPLICATION_MEASURES == 0:
            ax.set_ylabel("gap (pp)")
    handles = [Line2D([], [], color=colour, marker="o", linestyle="", markersize=4, label=study.data.display_name)
               for study, colour in zip(studies, style.DATASET_COLOURS)]
    common.legend(fig, handles, ncols=len(handles))
    return fig
