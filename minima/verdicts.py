"""The verdict rules of the claims table: one pure function from a claim's statistics to its
verdict and the reason for it, used when the analysis decides and again when a summary is
loaded (a verdict that contradicts its own rule is refused). Torch- and numpy-free.

Rule kinds (each claim names one; the thresholds are declared here once):

- `directional`: the claim gives an effect a sign (`side` above or below the `reference`).
  Reproduced when the Holm-adjusted p is below ALPHA and the estimate lies on the claimed side,
  not reproduced when it is below ALPHA on the other side, else inconclusive. `side = "either"`:
  the claim says only that there is an effect; then not reproduced needs the 95 % interval inside
  +-`margin` (an effect too small to matter).
- `noninferiority`: directional about -margin (as good, or no more than the margin worse).
- `equivalence`: the claim says there is no effect: reproduced when the two one-sided tests at
  +-margin (TOST) give a Holm-adjusted p below ALPHA; not reproduced when the 95 % interval lies
  entirely outside [-margin, margin]; else inconclusive.
- `check`: a deterministic check (Dinh's rescaling): reproduced when the statistic reaches the
  reference while its condition (the function did not change) holds.
- `bound`: every run's statistic at most the reference (the linear-stability bound).

A claim whose test has too few clusters to reach ALPHA at all (its smallest attainable p is
above ALPHA) is inconclusive with that reason, and stays out of the Holm family: its p could never
reject, and p_min depends on the design alone, not on the outcome (Tarone 1990), so leaving it out
keeps the family-wise error rate. `not_testable` means the design lacks the runs.
"""

from __future__ import annotations

from typing import Any, Mapping

ALPHA = 0.05
VERDICTS = ("reproduced", "not_reproduced", "inconclusive", "not_testable")
TESTED = ("directional", "noninferiority", "equivalence")  # the Holm family: rules decided by a p-value
RULE_KINDS = (*TESTED, "check", "bound")


def _on_side(value: float, reference: float, side: str) -> bool:
    return value > reference if side == "above" else value < reference


def _p_text(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def can_reject(claim: Mapping[str, Any]) -> bool:
    """A claim enters the Holm family when its rule is decided by a p-value it has, and its
    clusters can reach ALPHA."""
    return (claim["rule_kind"] in TESTED and claim.get("p") is not None
            and (claim.get("p_min") is None or claim["p_min"] <= ALPHA))


def _no_power(claim: Mapping[str, Any]) -> str | None:
    p_min = claim.get("p_min")
    if p_min is not None and p_min > ALPHA:
        k = claim.get("n_clusters")
        return f"{k} cluster{'' if k == 1 else 's'}: the smallest attainable p is {_p_text(p_min)} > α = {ALPHA:g}"
    return None


def decide(claim: Mapping[str, Any]) -> tuple[str, str]:
    """(verdict, reason) of a claim from its fields: rule_kind, value, ci95, p_holm, p_min,
    reference, side, margin, condition. A claim without the data its rule needs is
    not_testable (its builder gives the reason)."""
    kind = claim["rule_kind"]
    value, ci, reference = claim.get("value"), claim.get("ci95"), claim["reference"]
    if kind not in RULE_KINDS:
        raise ValueError(f"rule_kind: unknown {kind!r}")
    if value is None:
        return "not_testable", claim.get("reason") or "no data"
    if kind == "check":
        if not claim.get("condition"):
            return "inconclusive", "the rescaled network's logits or accuracy changed: rounding, not the argument"
        reached = value >= reference
        return ("reproduced" if reached else "not_reproduced",
                f"factor {value:.3g} {'≥' if reached else '<'} {reference:g} with the same function")
    if kind == "bound":
        below = value <= reference
        return ("reproduced" if below else "not_reproduced",
                f"largest ratio {value:.3g} {'≤' if below else '>'} {reference:g}")
    p_holm = claim.get("p_holm")
    margin = claim.get("margin") or 0.0
    if kind == "equivalence" and ci is not None and (ci[0] > margin or ci[1] < -margin):
        return "not_reproduced", f"the 95 % interval lies outside ±{margin:g}: the effect exceeds the margin"
    weak = _no_power(claim)
    if weak:
        return "inconclusive", weak
    if p_holm is None:
        return "not_testable", claim.get("reason") or "no p-value"
    significant = p_holm < ALPHA
    held = f"Holm-adjusted p = {_p_text(p_holm)} {'<' if significant else '≥'} α = {ALPHA:g}"
    if kind == "equivalence":
        return ("reproduced", f"{held}: equivalent within ±{margin:g}") if significant else ("inconclusive", held)
    if claim["side"] == "either":
        if significant:
            return "reproduced", held
        if ci is not None and -margin < ci[0] and ci[1] < margin:
            return "not_reproduced", f"{held}, and the 95 % interval lies within ±{margin:g}"
        return "inconclusive", held
    if not significant:
        return "inconclusive", held
    claimed = _on_side(value, reference, claim["side"])
    return ("reproduced" if claimed else "not_reproduced",
            f"{held}, {'on' if claimed else 'against'} the claimed side of {reference:g}")


def check(claim: Mapping[str, Any]) -> str | None:
    """None when the claim's verdict and reason follow from its rule, else what disagrees."""
    verdict, reason = decide(claim)
    if verdict != claim["verdict"]:
        return f"claim {claim.get('id', claim.get('claim'))!r}: verdict {claim['verdict']!r} contradicts its rule ({verdict}: {reason})"
    return None
