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
       weight's CI lies inside (margin, 1 - margin), and the information-matrix test does not
       reject the fitted interpolation. The last is what text alone needs most: a sibling
       fine-tune of the parents' shared base fits an interpolation with a larger gain than a
       merge's (tiny zoo: weights 0.40 / 0.60), but the fit leaves its samples' second moments
       unexplained. The caller withdraws the verdict from every model when a control meets
       this rule (the calibration);
    3. **derived from one parent** X: the weight on X reaches the vertex, but the samples differ;
    4. **inconclusive** otherwise, with the reasons. Text alone measures no distance to the
       parents, so "related" and "unrelated" are not given; ``excess`` says how much less likely
       the parents find the model's answers than their own."""
    nearest = max(r.weights, key=lambda x: r.weights[x].value or 0.0)
    w = r.weights[nearest]
    at_vertex = (w.hi or 0.0) >= 1 - margin
    eq = r.equality.get(nearest)
    p_same = None if eq is None else (eq.p_adjusted if eq.p_adjusted is not None else eq.p)
    inside = all((x.lo or 0.0) > margin and (x.hi or 1.0) < 1 - margin for x in r.weights.values())
    significant = r.cv_p < alpha and r.cv_gain > 0
    fits = bool(np.isfinite(r.fit_p)) and r.fit_p >= alpha
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
        f"the parents find its answers {r.excess.text(3)} nats/token less likely than their own",
    ]
    if p_same is not None and p_same >= alpha and at_vertex:
        return "copy", nearest, [*reasons, f"indistinguishable from {nearest}'s samples at this sample size"]
    if significant and inside and fits:
        return "interpolation", None, reasons
    if at_vertex and p_same is not None and p_same < alpha:
        return "derived_from_one_parent", nearest, reasons
    return "inconclusive", None, reasons
