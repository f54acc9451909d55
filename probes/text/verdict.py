"""The text-only verdict rule: copy, interpolation, derived from one parent, or inconclusive,
with the reasons that led there (what the calibration against controls then withdraws is in
``probe.py``)."""

from __future__ import annotations

import numpy as np

from harness.format import fmt, fmt_p
from probes.text.result import TextResult


def decide(r: TextResult, alpha: float, margin: float) -> tuple[str, str | None, list[str]]:
    """The text-only verdict, in order:

    1. **copy** of X: the stratified equality test does not reject "same model as X" and the
       likelihood's weight on X reaches the vertex (its CI's upper end >= 1 - margin);
    2. **interpolation**: the held-out gain over the better single parent is significant, every
       weight's CI lies inside (margin, 1 - margin), the information-matrix test does not
       reject the fitted interpolation, and the interpolation explains the answers better than
       the parents explain each other's (``excess``'s CI below ``parents_excess``). The fit test
       is what text alone needs most: a sibling fine-tune of the parents' shared base fits an
       interpolation with a larger gain than a merge's (tiny zoo: weights 0.40 / 0.60), but the
       fit leaves its samples' second moments unexplained. The yardstick keeps models of their
       own initialisation out: one trained on the parents' kind of data can fit weights inside
       the margins with a significant gain and pass the fit test (tiny zoo seed 2, 32 x 8), but
       the parents find its answers 0.50-0.73 nats/token less likely than their own, against
       0.19-0.31 for each other's and at most 0.16 for a merge's. The caller withdraws the
       verdict from every model when a control meets this rule (the calibration);
    3. **derived from one parent** X: the weight on X reaches the vertex, the samples differ, and
       the answers are within the yardstick too (a model trained on X's data and persona from an
       initialisation of its own puts its weight near X, but the parents find its answers less
       likely than each other's);
    4. **inconclusive** otherwise, with the reasons. Text gives no lineage word short of these:
       "related" and "unrelated" are not given (a model outside the yardstick may be of its own
       initialisation, or a distant relative); ``excess`` says how much less likely the parents
       find the model's answers than their own, and the reasons compare it with the yardstick."""
    nearest = max(r.weights, key=lambda x: r.weights[x].value or 0.0)
    w = r.weights[nearest]
    at_vertex = (w.hi or 0.0) >= 1 - margin
    eq = r.equality.get(nearest)
    p_same = None if eq is None else (eq.p_adjusted if eq.p_adjusted is not None else eq.p)
    inside = all((x.lo or 0.0) > margin and (x.hi or 1.0) < 1 - margin for x in r.weights.values())
    significant = r.cv_p < alpha and r.cv_gain > 0
    fits = bool(np.isfinite(r.fit_p)) and r.fit_p >= alpha
    # NaN (no yardstick: too few of the parents' own answers) never passes
    within = bool((r.excess.hi if r.excess.hi is not None else np.inf) < r.parents_excess)
    reasons = [
        f"weights {', '.join(f'{x} {v.text()}' for x, v in r.weights.items())}; fitted temperature "
        f"{r.temperature.text(2)} (sampled at {r.sampling_temperature:g})",
        f"held-out gain {fmt(r.cv_gain, 4)} nats/token over the better single parent, p {fmt_p(r.cv_p)}",
        f"the interpolation {'fits' if fits else 'does not fit'} its samples: information-matrix test T² "
        f"{fmt(r.fit_statistic, 1)} on {r.fit_df} components, p {fmt_p(r.fit_p)}",
        "gain above every control's: "
        + (
            "no control to compare with"
            if r.p_gain_above_controls is None
            else f"p {fmt_p(r.p_gain_above_controls)} (worst: {r.closest_control})"
        ),
        f"samples equal to {nearest}'s: p {fmt_p(p_same)} (stratified permutation test, Holm)",
        f"the parents find its answers {r.excess.text(3)} nats/token less likely than their own, "
        f"{'within' if within else 'not within'} their distance from each other ({fmt(r.parents_excess, 3)}: "
        "how much less likely a parent finds the other's answers than its own)",
    ]
    if p_same is not None and p_same >= alpha and at_vertex:
        return "copy", nearest, [*reasons, f"indistinguishable from {nearest}'s samples at this sample size"]
    if significant and inside and fits and within:
        return "interpolation", None, reasons
    if at_vertex and p_same is not None and p_same < alpha and within:
        return "derived_from_one_parent", nearest, reasons
    return "inconclusive", None, reasons
