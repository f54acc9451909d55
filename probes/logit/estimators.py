"""Every named estimate of the logit probe as a function of summed per-text statistics.

Because each estimate is a function of sums over texts, the point estimate uses the plain sum
and a bootstrap replicate the reweighted sum (``harness.stats.paired_bootstrap``): one function
serves both, so they cannot drift apart.
"""

from __future__ import annotations

import math

import numpy as np

from harness.evidence import Estimate
from probes.logit.interpolation import (
    GEO_GRID,
    MIX_GRID,
    Layout,
    fit_simplex,
    fit_unconstrained,
    grid_min,
    parent_scale,
    sq_distance,
)
from probes.logit.result import LogitResult


def summed_statistics(v: np.ndarray, layout: Layout, parents: list[str]) -> dict[str, np.ndarray]:
    """Every estimator as a function of summed per-text statistics ``v`` (..., L).

    Degenerate sums (no usable positions) give NaN, which the CIs skip and the report prints as n/a.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return _summed_statistics(v, layout, parents)


def _summed_statistics(v: np.ndarray, layout: Layout, parents: list[str]) -> dict[str, np.ndarray]:
    g = layout.get(v, "gram")
    k = len(parents)
    scale = parent_scale(g)
    out: dict[str, np.ndarray] = {}
    if k == 2:
        w, resid = fit_unconstrained(g)
        out["a_hat"] = w[..., 0]
    else:
        w, resid = fit_simplex(g)
    for i, p in enumerate(parents):
        out[f"weight[{p}]"] = w[..., i]
    out["residual"] = np.sqrt(resid / scale)
    d2 = np.stack([sq_distance(g, 0, i + 1) for i in range(k)], axis=-1)
    for i, p in enumerate(parents):
        out[f"distance[{p}]"] = np.sqrt(d2[..., i] / scale)
        out[f"unexplained_from[{p}]"] = resid / d2[..., i]
    out["nearest_parent_distance"] = np.sqrt(d2.min(axis=-1) / scale)
    positions = layout.get(v, "positions")
    for name in ("kl", "js", "tv"):
        vals = layout.get(v, name)
        for i, p in enumerate(parents):
            out[f"{name}[{p}]"] = vals[..., i] / positions
    if k == 2:
        srt = np.sort(d2, axis=-1)
        out["distance_ratio"] = np.sqrt(srt[..., 0] / srt[..., 1])
        out["betweenness"] = layout.get(v, "between") / layout.get(v, "disagree")
        ce_geo, ce_mix, ent = layout.get(v, "ce_geo"), layout.get(v, "ce_mix"), layout.get(v, "entropy")
        a_geo, ce_geo_min = grid_min(ce_geo, GEO_GRID)
        w_mix, ce_mix_min = grid_min(ce_mix, MIX_GRID)
        out["a_geometric"], out["w_mixture"] = a_geo, w_mix
        out["kl[geometric fit]"] = (ce_geo_min - ent) / positions
        out["kl[mixture fit]"] = (ce_mix_min - ent) / positions
        out["kl_geometric_minus_mixture"] = out["kl[geometric fit]"] - out["kl[mixture fit]"]
    return out


MERGE_WEIGHT_METHOD = (
    "a_hat's CI widened by the residual on each side. a_hat is the weight in log-prob space; a merge "
    "is linear in its weights, and its log-probs leave the parents' line by the residual. The part of "
    "that deviation along the line shifts a_hat and cannot be seen; this range assumes it is no larger "
    "than the part across the line. Measured (results/bench-2026-11-30/headline.md): it contained the "
    "weight-space a in 86 of 87 merge x seed x mode cases (|a_hat - a| at most 0.67 residuals for "
    "merges not trained afterwards); the miss was a merge trained further by on-policy distillation, "
    "read from next-token data"
)


def merge_weight_range(model: str, r: LogitResult, n: int, level: float) -> Estimate:
    """What a_hat says about the weight-space merge weight: its CI widened by the residual.

    Why: a_hat's bootstrap CI is sampling error of the logit-space weight only. A weight-space
    merge is not exactly linear in log-probs, and the error that puts in a_hat is systematic
    (next-token mode, which sees only the first answer position, reads 0.55-0.57 for 0.6 merges
    with CIs 0.02 wide). The residual measures that nonlinearity from the data itself.
    """
    a, resid = r.a_hat, r.residual.value
    widen = resid if resid is not None and math.isfinite(resid) else None
    ok = a is not None and a.lo is not None and a.hi is not None and widen is not None
    return Estimate(
        name="merge_weight",
        model=model,
        value=a.value if a else None,
        ci_low=a.lo - widen if ok else None,  # type: ignore[operator,union-attr]
        ci_high=a.hi + widen if ok else None,  # type: ignore[operator,union-attr]
        ci_level=level,
        n=n,
        method=MERGE_WEIGHT_METHOD,
    )


DESCRIPTIONS = {
    "a_hat": "logit-space weight of the first parent (centred log-prob regression)",
    "merge_weight": "weight-space merge weight of the first parent: a_hat with its CI widened by the residual",
    "weight": "weight of this parent (non-negative, summing to 1 over parents)",
    "residual": "RMS distance off the parents' line/simplex, in units of the distance between parents",
    "distance": "RMS distance to this parent, in units of the distance between parents",
    "unexplained_from": "fraction of the suspect's deviation from this parent not explained by interpolation",
    "nearest_parent_distance": "RMS distance to the nearest parent (copy test), in parent-distance units",
    "kl": "KL(suspect || parent) per position on the support, nats",
    "js": "Jensen-Shannon divergence per position, nats",
    "tv": "total variation distance per position",
    "distance_ratio": "distance to the nearer parent / distance to the farther parent",
    "betweenness": "share of points where the parents disagree and the suspect lies between them",
    "a_geometric": "weight of the KL-minimising geometric (logit-space) interpolation",
    "w_mixture": "weight of the KL-minimising arithmetic (probability-space) mixture",
    "kl[geometric fit]": "KL(suspect || fitted geometric interpolation) per position",
    "kl[mixture fit]": "KL(suspect || fitted arithmetic mixture) per position",
    "kl_geometric_minus_mixture": "negative: the weight-merge (geometric) model fits better than output mixing",
}


def describe(name: str) -> str:
    return DESCRIPTIONS.get(name) or DESCRIPTIONS.get(name.split("[")[0], "")
