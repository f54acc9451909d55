"""From per-tensor statistics to one subject's result: per-tensor fits, the pooled single a with
its tensor-bootstrap CI, module and layer summaries, the heterogeneity test, the family."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.evidence import Interval
from probes.weights.checkpoint import FLOAT_DTYPES
from probes.weights.fit import Fit, fit, slerp_residual, subject_gram
from probes.weights.gguf_file import QUANT_GROUPS
from probes.weights.result import Family, GroupSummary
from probes.weights.stream import TensorStats

MODULES = (  # first pattern found in a tensor's name decides its class
    ("experts", r"experts?\b|\.experts\."),
    ("embeddings", r"embed|wte\b|wpe\b|word_embeddings"),
    ("lm_head", r"lm_head|output\.weight$"),
    ("norms", r"norm|\bln_|layernorm"),
    ("attention", r"attn|attention|q_proj|k_proj|v_proj|o_proj"),
    ("mlp", r"mlp|ffn|gate_proj|up_proj|down_proj|fc\d"),
)


def module_of(name: str) -> str:
    return next((m for m, pat in MODULES if re.search(pat, name)), "other")


def layer_of(name: str) -> str:
    hit = re.search(r"(?:layers|h|blocks|layer)\.(\d+)\.", name)
    return hit.group(1) if hit else "-"


@dataclass
class TensorFit:
    stats: TensorStats
    fit: Fit
    slerp: tuple[float, float, float] | None


def fits_of(stats: list[TensorStats], n_parents: int, subject: int, two_parent_slerp: bool) -> list[TensorFit]:
    out = []
    for s in stats:
        g = subject_gram(np.array(s.gram), n_parents, subject)
        out.append(TensorFit(s, fit(g, s.numel), slerp_residual(g) if two_parent_slerp else None))
    return out


def pooled(stats: list[TensorStats], n_parents: int, subject: int) -> Fit:
    g = sum(subject_gram(np.array(s.gram), n_parents, subject) for s in stats)
    return fit(np.asarray(g), sum(s.numel for s in stats))


def bootstrap(
    stats: list[TensorStats], n_parents: int, subject: int, level: float, reps: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, float]:
    """Percentile CI of the pooled NNLS weights (lo, hi) and the lower bound of the pooled cos
    fit, tensors resampled (the units that vary), and in the sampled mode each sampled tensor's
    groups of blocks too (the sample's own variation)."""
    n = sum(s.numel for s in stats)
    fits = [fit(g, n) for g in replicates(stats, n_parents, subject, reps, rng)]
    return _percentiles([f.weights for f in fits], [f.cos for f in fits], level)


def replicates(
    stats: list[TensorStats], n_parents: int, subject: int, reps: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Bootstrap replicates of the pooled Gram of [R, X_1..X_p, y]: tensors drawn with
    replacement; a sampled tensor's Gram drawn again from its groups of blocks, scaled up."""
    full = np.stack([subject_gram(np.array(s.gram), n_parents, subject) for s in stats])
    groups = {
        i: np.stack([subject_gram(np.array(g), n_parents, subject) for g in s.group_grams]) * s.scale
        for i, s in enumerate(stats)
        if s.group_grams
    }
    out = []
    for _ in range(reps):
        grams = full
        if groups:
            grams = full.copy()
            for i, g in groups.items():
                grams[i] = g[rng.integers(0, len(g), len(g))].sum(axis=0)
        out.append(grams[rng.integers(0, len(stats), len(stats))].sum(axis=0))
    return out


def _percentiles(weights: list[np.ndarray], cos: list[float], level: float) -> tuple[np.ndarray, np.ndarray, float]:
    w = np.array(weights)
    q = (1 - level) / 2
    return np.nanquantile(w, q, axis=0), np.nanquantile(w, 1 - q, axis=0), float(np.nanquantile(cos, q))


def toward_others(
    stats: list[TensorStats],
    n_parents: int,
    subject: int,
    models: list[np.ndarray],
    top: int,
    level: float,
    reps: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """How much of S's departure from the parent carrying the weight (``top``) points to the other
    parents: the cos fit (and its lower bound, tensors resampled) of S - P_top on P_k - P_top, by
    the same NNLS. A merge moves S toward every parent it took; a fine-tune of P_top moves it where
    its training went, which the other parents share no more than a non-merge does. So a second
    parent's weight at the simplex's edge (a fine-tune whose update happens to lean toward it) is
    told from a merge by this, not by the weight's size. ``models``: each parent as coefficients
    over the Gram's rows [R, X_1..X_p] (R's own row is the reference parent, when there is one)."""
    k = n_parents + 2
    subject_vec = np.zeros(k)
    subject_vec[[0, k - 1]] = 1.0
    tops = [np.pad(m, (0, k - len(m))) for m in models]
    rows = [tops[top]] + [m - tops[top] for i, m in enumerate(tops) if i != top] + [subject_vec - tops[top]]
    t = np.array(rows)
    n = sum(s.numel for s in stats)
    pooled_gram = sum(subject_gram(np.array(s.gram), n_parents, subject) for s in stats)
    cos = [fit(t @ g @ t.T, n).cos for g in replicates(stats, n_parents, subject, reps, rng)]
    return fit(t @ np.asarray(pooled_gram) @ t.T, n).cos, float(np.nanquantile(cos, (1 - level) / 2))


def sibling_null(g: np.ndarray, n_parents: int) -> float:
    """The cos fit an independent fine-tune of the base would reach if it resembled each parent as
    much as the most similar two parents resemble each other (cosine c of their differences from
    the base): projecting a vector with cosine c to each of p such vectors gives
    cos^2 = p c^2 / (1 + (p - 1) c)."""
    x = g[1 : n_parents + 1, 1 : n_parents + 1]
    d = np.sqrt(np.diag(x))
    corr = x / np.outer(d, d)
    c = max(float(corr[i, k]) for i in range(n_parents) for k in range(n_parents) if i != k)
    c = max(c, 0.0)
    return math.sqrt(n_parents * c * c / (1 + (n_parents - 1) * c))


# Independently initialised weight matrices are near-orthogonal: their cosine is about N(0, 1/numel).
# Beyond this many of those standard deviations (the median over matrices), two models share weights.
KIN_Z = 5.0


def kinship(stats: list[TensorStats], pairs: list[tuple[int, int]]) -> list[float]:
    """Per pair of Gram rows (0: R; i > 0: the model R + row i, a parent or a subject), the median
    over the weight matrices (tensors of two or more dimensions) of the cosine between the two
    models' raw weights. Why raw weights: fine-tuning and merging keep a model's weights within a
    few per cent of where they started (cosine near 1), while two initialisations of their own are
    near-orthogonal however alike their training (tiny zoo: 0.98-0.99 between relatives, -0.001 to
    0.001 between separate initialisations), so the statistic needs no unit from the models."""
    mats = [np.asarray(x.gram) for x in stats if len(x.shape) >= 2]
    out = []
    for i, j in pairs:
        cos = []
        for g in mats:
            v = [np.eye(len(g))[0] + (np.eye(len(g))[k] if k else 0) for k in (i, j)]
            a, b = v[0] @ g @ v[0], v[1] @ g @ v[1]
            if a > 0 and b > 0:
                cos.append(float(v[0] @ g @ v[1] / math.sqrt(a * b)))
        out.append(float(np.median(cos)) if cos else math.nan)
    return out


def kin_bound(stats: list[TensorStats]) -> float:
    """The cosine two separately initialised models stay below: ``KIN_Z`` null standard
    deviations of the median matrix's size."""
    sizes = [x.numel for x in stats if len(x.shape) >= 2]
    return KIN_Z / math.sqrt(float(np.median(sizes))) if sizes else math.nan


def summarise(fits: list[TensorFit], key: Any) -> dict[str, GroupSummary]:
    groups: dict[str, list[TensorFit]] = {}
    for f in fits:
        groups.setdefault(key(f.stats.name), []).append(f)
    out = {}
    for g, fs in groups.items():
        a = np.array([f.fit.weights[0] for f in fs])
        res2 = sum((f.fit.rel_residual * f.fit.norm_y) ** 2 for f in fs)
        yy = sum(f.fit.norm_y**2 for f in fs)
        out[g] = GroupSummary(
            tensors=len(fs),
            a_mean=float(np.nanmean(a)),
            a_sd=float(np.nanstd(a, ddof=1)) if len(a) > 1 else math.nan,
            a_min=float(np.nanmin(a)),
            a_max=float(np.nanmax(a)),
            cos_median=float(np.nanmedian([f.fit.cos for f in fs])),
            residual_rms=math.sqrt(res2 / yy) if yy > 0 else math.nan,
        )
    return out


def heterogeneity(fits: list[TensorFit], a_pooled: float) -> tuple[float, int]:
    """Cochran's Q of the per-tensor least-squares a around the pooled a (first parent)."""
    a = np.array([f.fit.lsq[0] for f in fits])
    se = np.array([f.fit.se[0] for f in fits])
    ok = np.isfinite(a) & np.isfinite(se) & (se > 0)
    q = float((((a[ok] - a_pooled) / se[ok]) ** 2).sum())
    return q, max(int(ok.sum()) - 1, 0)


def family(fits: list[TensorFit], stats: list[TensorStats], n_parents: int, subject: int, w: np.ndarray) -> Family:
    yy = sum(f.fit.norm_y**2 for f in fits)
    lin = math.sqrt(sum((f.fit.rel_residual * f.fit.norm_y) ** 2 for f in fits) / yy) if yy > 0 else math.nan
    slerps = [(f.slerp, f.fit.norm_y) for f in fits if f.slerp is not None and math.isfinite(f.slerp[1])]
    if slerps:
        sl = math.sqrt(sum((s[1] * ny) ** 2 for s, ny in slerps) / sum(ny**2 for _, ny in slerps))
        t = float(np.median([s[0] for s, _ in slerps]))
    else:
        sl, t = math.nan, math.nan
    moved = sum(s.moved for s in stats)
    zero = sum(s.zero_moved[subject] for s in stats) / moved if moved else math.nan
    gnz = sum(np.array(s.gram_nonzero[subject]) for s in stats)
    xtx, xty = np.asarray(gnz)[:n_parents, :n_parents], np.asarray(gnz)[:n_parents, n_parents]
    denom = float(w @ xtx @ w)
    rescale = float(w @ xty) / denom if denom > 0 else math.nan
    sign_n = sum(s.sign_n[subject] for s in stats)
    agree = sum(s.sign_agree[subject] for s in stats) / sign_n if sign_n else math.nan
    return Family(
        name="",
        linear_residual=lin,
        slerp_residual=sl,
        slerp_t=t,
        zero_where_parents_moved=zero,
        rescale=rescale,
        sign_agreement=agree,
    )


def floor_of(fits: list[TensorFit], row: int) -> float:
    """Pooled storage floor: each tensor of S rounded to its own stored dtype (``row``: S's row in
    the statistics, so a checkpoint mixing bf16 and fp32 tensors gets each its own), relative to
    |S - R| over all tensors."""
    num = sum((ulp(f.stats.dtypes[row]) * f.fit.norm_s) ** 2 for f in fits)
    ny2 = sum(f.fit.norm_y**2 for f in fits)
    return math.sqrt(num / ny2) if ny2 > 0 else math.nan


def dtype_summary(stats: list[TensorStats], row: int) -> str:
    """One model's stored dtype(s) over the fitted tensors: "F16", or "mixed (BF16, F32)"."""
    dtypes = sorted({x.dtypes[row] for x in stats})
    return dtypes[0] if len(dtypes) == 1 else "mixed (" + ", ".join(dtypes) + ")"


def ulp(dtype: str) -> float:
    """Relative spacing of ``dtype``'s numbers (2^-mantissa bits): rounding moves a value by at most
    half of it. For a quantized type, its step relative to the group's largest value, 2 / (2^bits - 1)."""
    if dtype in QUANT_GROUPS:
        return 2 / (2 ** QUANT_GROUPS[dtype][1] - 1)
    return 2.0 ** -FLOAT_DTYPES.get(dtype, ("", 52))[1]


def interval(value: float, lo: float, hi: float) -> Interval:
    return Interval(value=value, lo=lo, hi=hi)
