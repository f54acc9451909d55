"""The weights verdict: the decision rule, in one place, printed in the report.

``RULE`` is the text; :func:`decide` implements it. The null a merge must beat is taken from the
data, never tuned: the cos fit the suite's controls reach against the same parents, or, with no
control checkpoints but a shared base, the cos fit the parents reach on each other (how much two
independent fine-tunes of this base share). Only with neither is a fixed 0.9 used, and the
evidence says it is uncalibrated.
"""

from __future__ import annotations

import math

from probes.weights.gguf_file import QUANT_GROUPS
from probes.weights.result import WeightsResult

INSIDE = (0.05, 0.95)  # a parent's share of the weights counts when inside this range
# S - P_top of an equal-norm sibling of the parents (their base plus an update as alike to each
# parent's as the parents' are to each other, cosine c) against P_k - P_top: (1 - c) / (2 - 2c)
SIBLING_TOWARD = 0.5
SPARSE_MIN = 0.005  # share of moved coordinates left exactly at the reference: trimming/dropping

RULE = f"""\
Weights verdict (per subject; R is the shared base or the reference parent):
1. copy of P: no element of S is further from P's than converting P to another dtype moves it
   (one bfloat16 ulp, 2^-7 relative, which covers rounding and truncation; for a float16 S also
   float16's smallest normal, 2^-14, where P's value is a subnormal there; for a quantized GGUF S,
   one quantization step, 2 max|P| / (2^bits - 1) over the elements a scale covers). With S's
   dtypes differing from P's, it is named a dtype conversion (or a quantization). Within reach of
   several parents, the nearest is named and the others listed.
2. The pooled fit (one weight per parent for all tensors, non-negative least squares of S - R on
   the parents' P - R) must explain S - R better than a non-merge would: the lower bound of its cos
   fit's CI (tensors resampled) above the null. The null is the highest of: the cos fit of the
   suite's other control checkpoints; with a shared base, that of an independent fine-tune of the
   base as alike to each parent as the parents are to each other (sqrt(p c^2 / (1 + (p-1) c)));
   without one, 0.5 (what equal-norm siblings of the parents give). Otherwise: not an interpolation.
   Before that, **unrelated** (no weights of theirs at all): S's raw weights near-orthogonal to R's
   and every parent's, as separate initialisations are (the median over weight matrices of the
   cosine at or below 5 / sqrt(numel), five standard deviations of that cosine between independent
   random vectors; relatives sit near 1). This needs no null from the suite, and it holds where the
   fit's does not: against parents that share no weights with each other, an own initialisation's
   S - R has cosine 1/2 with every P - R through R alone.
3. Passing 2, a subject is an interpolation when at least two parents' weight shares have CI lower
   bounds above {INSIDE[0]:g} and S's departure from the parent carrying the weight points to the
   others more than a non-merge's does: the cos fit of S - P_top on the P_k - P_top, its CI's lower
   bound above the controls' highest, and at least {SIBLING_TOWARD:g} (what an equal-norm sibling of
   the parents gives, whatever their mutual cosine).
   Otherwise it is derived from the parent carrying the weight (a fine-tune whose update leans
   toward another parent puts that parent's weight at the simplex's edge, not inside it).
4. The family that explains the residual: linear when the line leaves no more than 3x the
   storage floor; slerp when the slerp fit leaves a quarter of the line's residual or less;
   sparse (ties/dare) when at least {100 * SPARSE_MIN:g}% of the coordinates the parents moved sit
   exactly at R. An interpolation whose best family leaves more than 3x the floor was trained
   further (or merged by a method not modelled here).
"""


def conversion(r: WeightsResult, parent: str) -> str:
    """How a copy of ``parent`` was stored: "", "dtype conversion F32 -> F16", or "quantized,
    GGUF Q4_K_M (mixed (F32, Q4_K, Q6_K))"."""
    theirs = r.dtypes_of.get(parent, r.dtype)
    if any(q in r.dtype for q in QUANT_GROUPS):
        return f"quantized, {r.storage} ({r.dtype})"
    return "" if theirs == r.dtype else f"dtype conversion {theirs} -> {r.dtype}"


def decide(r: WeightsResult) -> tuple[str, str | None, list[str]]:
    """(verdict, parent named by it, reasons) for one subject's result."""
    copies = sorted((p for p, share in r.beyond_conversion.items() if share == 0), key=lambda p: r.distance_to[p])
    if copies:
        p = copies[0]
        how = conversion(r, p)
        also = [
            f"also within a conversion of {q}'s (|S - {q}|/|S| = {r.distance_to[q]:.2g}): a coarse storage cannot "
            f"tell them apart; {p} is the nearer"
            for q in copies[1:]
        ]
        return (
            "copy",
            p,
            [f"every element within a dtype conversion of {p}'s (|S - {p}|/|S| = {r.distance_to[p]:.2g})"]
            + ([f"a {how}"] if how else [])
            + also,
        )
    kin = {m: c for m, c in r.kin_to.items() if math.isfinite(c)}
    if kin and math.isfinite(r.kin_bound) and all(c <= r.kin_bound for c in kin.values()):
        return (
            "unrelated",
            None,
            [
                "its weights are near-orthogonal to every one of theirs, as separate initialisations are: median "
                "matrix cosine "
                + ", ".join(f"{m} {c:.3f}" for m, c in kin.items())
                + f", at or below {r.kin_bound:.3f}: it shares no weights with them"
            ],
        )
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
    top = max(share, key=share.__getitem__)
    toward = (
        f"S - {top} toward the other parents: cos fit {r.toward_others:.3f} (CI lower bound {r.toward_others_lo:.3f})"
    )
    if len(counted) >= 2 and math.isfinite(r.toward_others_lo) and r.toward_others_lo > r.toward_null:
        return "interpolation", None, [*reasons, f"{toward} > {r.toward_null:.3f} for a non-merge"]
    if len(counted) >= 2:
        reasons.append(f"{toward}, not above {r.toward_null:.3f} for a non-merge: a fine-tune of {top}, not a merge")
    return "derived", top, reasons


def family_name(r: WeightsResult) -> str:
    f = r.family
    floor3 = 3 * r.storage_floor
    if f.linear_residual <= floor3:
        return "linear"
    if math.isfinite(f.slerp_residual) and (f.slerp_residual <= floor3 or f.slerp_residual <= f.linear_residual / 4):
        return "slerp"
    if f.zero_where_parents_moved >= SPARSE_MIN:
        return "sparse (ties/dare)"
    return "linear, trained further (or another method)"
