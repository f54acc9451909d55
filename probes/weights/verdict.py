"""The weights verdict: the decision rule, in one place, printed in the report.

``RULE`` is the text; :func:`decide` implements it. The null a merge must beat is taken from the
data, never tuned: the cos fit the suite's controls reach against the same parents, or, with no
control checkpoints but a shared base, the cos fit the parents reach on each other (how much two
independent fine-tunes of this base share). Only with neither is a fixed 0.9 used, and the
evidence says it is uncalibrated.
"""

from __future__ import annotations

import math

from probes.weights.result import WeightsResult

INSIDE = (0.05, 0.95)  # a parent's share of the weights counts when inside this range
SPARSE_MIN = 0.005  # share of moved coordinates left exactly at the reference: trimming/dropping

RULE = f"""\
Weights verdict (per subject; R is the shared base or the reference parent):
1. copy of P: no element of S is further from P's than rounding P to bfloat16 would move it.
2. The pooled fit (one weight per parent for all tensors, non-negative least squares of S - R on
   the parents' P - R) must explain S - R better than a non-merge would: the lower bound of its cos
   fit's CI (tensors resampled) above the null. The null is the highest of: the cos fit of the
   suite's other control checkpoints; with a shared base, that of an independent fine-tune of the
   base as alike to each parent as the parents are to each other (sqrt(p c^2 / (1 + (p-1) c)));
   without one, 0.5 (what equal-norm siblings of the parents give). Otherwise: not an interpolation.
3. Passing 2, a subject with at least two parents whose weight's share has a CI lower bound above
   {INSIDE[0]:g} is an interpolation; otherwise it is derived from the parent carrying the weight.
4. The family that explains the residual: linear when the line leaves no more than 3x the
   storage floor; slerp when the slerp fit leaves a quarter of the line's residual or less;
   sparse (ties/dare) when at least {100 * SPARSE_MIN:g}% of the coordinates the parents moved sit
   exactly at R. An interpolation whose best family leaves more than 3x the floor was trained
   further (or merged by a method not modelled here).
"""


def decide(r: WeightsResult) -> tuple[str, str | None, list[str]]:
    """(verdict, parent named by it, reasons) for one subject's result."""
    copies = [p for p, share in r.beyond_bf16_rounding.items() if share == 0]
    if copies:
        p = copies[0]
        return "copy", p, [f"every element within bf16 rounding of {p}'s (|S - {p}|/|S| = {r.distance_to[p]:.2g})"]
    null = f"null {r.null_cos:.3f} ({r.null_source})"
    if not math.isfinite(r.cos_fit_lo) or r.cos_fit_lo <= r.null_cos:
        return (
            "not an interpolation",
            None,
            [f"cos fit {r.cos_fit:.3f} (CI lower bound {r.cos_fit_lo:.3f}) not above {null}"],
        )
    total = sum(w.value or 0.0 for w in r.weights.values())
    share = {p: (w.value or 0.0) / total if total > 0 else 0.0 for p, w in r.weights.items()}
    share_lo = {p: (w.lo or 0.0) / total if total > 0 else 0.0 for p, w in r.weights.items()}
    counted = [p for p in r.weights if share_lo[p] > INSIDE[0]]
    reasons = [
        f"cos fit {r.cos_fit:.3f} (CI lower bound {r.cos_fit_lo:.3f}) > {null}",
        "weight shares " + ", ".join(f"{p} {share[p]:.3f} (lower {share_lo[p]:.3f})" for p in r.weights),
    ]
    if len(counted) >= 2:
        return "interpolation", None, reasons
    top = max(share, key=share.__getitem__)
    return "derived", top, reasons
