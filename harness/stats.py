"""Statistics shared by probes: cluster bootstrap, p-values, multiple-comparison correction.

Conventions: the resampling unit is the cluster (a text, a question), never a token; every
random draw comes from a ``numpy.random.Generator`` passed in explicitly (no global seeds).
Statistics are written as functions of per-cluster *sums* so a bootstrap replicate is just a
weighted sum, which keeps thousands of replicates cheap.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float
    se: float
    replicates: np.ndarray

    @property
    def width(self) -> float:
        return self.high - self.low


EXACT_SIGNFLIP_MAX = 16  # clusters up to which a sign-flip test enumerates all 2**n patterns
BOOTSTRAP_CHUNK = 1000  # replicates per block: memory is O(chunk x (clusters + statistics)), not O(replicates x ...)


def bootstrap_weights(n: int, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """(replicates, n) resampling counts: how often each cluster is drawn in each replicate."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(float)


def paired_bootstrap(
    per_cluster: dict[str, np.ndarray],
    statistic: Callable[[np.ndarray], dict[str, np.ndarray]],
    replicates: int,
    rng: np.random.Generator,
    chunk: int = BOOTSTRAP_CHUNK,
) -> dict[str, dict[str, np.ndarray]]:
    """Bootstrap replicates of ``statistic(sums)`` for several inputs resampled *together*.

    ``per_cluster[key]`` is (n_clusters, m) sufficient statistics, the same clusters in the same
    order for every key; ``statistic`` maps summed statistics (..., m) to named arrays (...).
    Every key sees the same resampled clusters in each replicate, so differences between keys
    (a model against a control) have paired replicates. Replicates are drawn and reduced in
    blocks of ``chunk``: only the (replicates,) results are kept, so 100,000 replicates over
    thousands of texts need no more memory than 1,000. The draws are those of one
    ``bootstrap_weights(n, replicates, rng)`` call, whatever the chunk size.
    """
    if not per_cluster:
        return {}
    n = next(iter(per_cluster.values())).shape[0]
    parts: dict[str, list[dict[str, np.ndarray]]] = {key: [] for key in per_cluster}
    for start in range(0, replicates, chunk):
        weights = bootstrap_weights(n, min(chunk, replicates - start), rng)
        for key, x in per_cluster.items():
            parts[key].append(statistic(weights @ x))
    return {
        key: {name: np.concatenate([np.asarray(b[name], dtype=float) for b in blocks]) for name in blocks[0]}
        for key, blocks in parts.items()
    }


def percentile_ci(replicates: np.ndarray, alpha: float) -> tuple[float, float]:
    """Percentile interval of the finite replicates (NaN, NaN when none is finite)."""
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def cluster_bootstrap(
    per_cluster: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    rng: np.random.Generator,
    replicates: int = 1000,
    alpha: float = 0.05,
) -> Interval:
    """Percentile CI for ``statistic(sums)`` where sums are over clusters.

    ``per_cluster`` is (n_clusters, m) sufficient statistics; ``statistic`` maps an array of
    shape (..., m) of summed statistics to (...). Several statistics with paired replicates:
    :func:`paired_bootstrap`.
    """
    per_cluster = np.asarray(per_cluster, dtype=float)
    value = float(statistic(per_cluster.sum(axis=0)))
    reps = paired_bootstrap({"x": per_cluster}, lambda v: {"s": statistic(v)}, replicates, rng)["x"]["s"]
    low, high = percentile_ci(reps, alpha)
    finite = reps[np.isfinite(reps)]
    se = float(finite.std(ddof=1)) if finite.size > 1 else float("nan")
    return Interval(value, low, high, se, reps)


def z_pvalue(estimate: float, null: float, se: float, alternative: str = "two-sided") -> float:
    """Normal-approximation p-value with a bootstrap standard error."""
    from scipy import stats as sps  # imported here: `validate` stays fast

    if not np.isfinite(se) or se <= 0:
        return float("nan")
    z = (estimate - null) / se
    if alternative == "greater":
        return float(sps.norm.sf(z))
    if alternative == "less":
        return float(sps.norm.cdf(z))
    return float(2 * sps.norm.sf(abs(z)))


def paired_floor(n: int) -> float:
    """The smallest one-sided p an exact paired test over ``n`` units can give, whatever the data:
    ``2**-n`` for the sign-flip permutation and the signed-rank test (all n differences positive
    is one sign pattern of 2^n). Why: a test over too few units cannot reach alpha, and a report
    that prints its p without saying so reads as evidence of absence."""
    return 2.0**-n if n > 0 else 1.0


def paired_units_for(alpha: float, tests: int = 1) -> int:
    """The fewest units an exact paired test needs for p * tests < alpha (``paired_floor``)."""
    return math.floor(math.log2(tests / alpha)) + 1


def rank_floor(n: int) -> float:
    """The smallest empirical p of a rank among ``n`` controls: (1 + 0) / (1 + n)."""
    return 1.0 / (n + 1)


def wilcoxon_greater(x: np.ndarray) -> float:
    """One-sided Wilcoxon signed-rank p for "x is above 0" (non-finite values dropped; 1 when
    fewer than two remain or all are 0): the paired per-text / per-prompt test the probes share."""
    from scipy import stats as sps  # imported here: `validate` stays fast

    x = x[np.isfinite(x)]
    if len(x) < 2 or np.allclose(x, 0):
        return 1.0
    return float(sps.wilcoxon(x, alternative="greater", zero_method="wilcox").pvalue)


def adjust(pvalues: list[float], method: str = "holm") -> list[float]:
    """Holm or Benjamini-Hochberg adjusted p-values (NaNs pass through untouched)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if not ok.any():
        return out.tolist()
    from scipy.stats import false_discovery_control

    q = p[ok]
    if method == "bh":
        out[ok] = false_discovery_control(q, method="bh")
    else:
        m = q.size
        order = np.argsort(q)
        adj = np.maximum.accumulate((m - np.arange(m)) * q[order])
        res = np.empty(m)
        res[order] = np.minimum(adj, 1.0)
        out[ok] = res
    return out.tolist()


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion k/n (no continuity correction)."""
    if n == 0:
        return float("nan"), float("nan")
    return _wilson_real(k / n, n, confidence)


def effective_n(k: np.ndarray, n: np.ndarray) -> float:
    """The number of independent answers clustered ones are worth: N / deff (``clustered_wilson``).
    Reported beside the interval, so that two equal counts with different intervals (the claims of
    one on few questions, of the other spread over many) read as what they are."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    total, clusters = n.sum(), len(n)
    if total == 0:
        return 0.0
    p = k.sum() / total
    worst = total / clusters
    if clusters < 2 or p in (0.0, 1.0):
        deff = worst
    else:
        robust = clusters / (clusters - 1) * np.sum((k - p * n) ** 2) / total**2
        deff = float(np.clip(robust / (p * (1 - p) / total), 1.0, worst))
    return float(total / deff)


def clustered_wilson(k: np.ndarray, n: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson interval for a proportion observed in clusters (``k[i]`` of ``n[i]`` in cluster i,
    e.g. the samples of one question), at the effective sample size N / deff.

    Why: samples of one question are correlated (the same prompt, the same model), so treating
    them as independent trials overstates the evidence. deff is the ratio of the cluster-robust
    variance of the pooled rate to the binomial one (at least 1, at most the mean cluster size);
    when every answer is the same there is no variance to measure and the worst case is taken
    (each cluster counts once)."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    if n.sum() == 0:
        return float("nan"), float("nan")
    return _wilson_real(k.sum() / n.sum(), effective_n(k, n), confidence)


def _wilson_real(p: float, n: float, confidence: float) -> tuple[float, float]:
    """The Wilson score interval for rate ``p`` at a (possibly fractional) sample size ``n``."""
    from scipy import stats as sps  # imported here: `validate` stays fast

    z = float(sps.norm.ppf(1 - (1 - confidence) / 2))
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The interval contains p; clamp the rounding error that puts a bound a hair past it (p = 0 gave 3e-17).
    return float(min(max(0.0, centre - half), p)), float(max(min(1.0, centre + half), p))


def permutation_pvalue(observed: float, null: np.ndarray) -> float:
    """Monte-Carlo permutation p-value, the observed statistic counted as one of the draws (so it
    is never 0): (1 + #{null >= observed}) / (1 + draws)."""
    return float((1 + np.sum(null >= observed)) / (1 + len(null)))


def signflip_pvalue(d: np.ndarray, rng: np.random.Generator, permutations: int = 10000) -> float:
    """One-sided p-value that paired differences ``d`` (one per cluster) have a positive mean:
    every difference's sign is flipped at random, which is exact when, under the null, the two
    members of each pair are exchangeable (e.g. two models answering the same question)."""
    d = np.asarray(d, dtype=float)
    if d.size == 0 or not np.any(d):
        return 1.0
    if d.size <= EXACT_SIGNFLIP_MAX:  # every sign pattern: exact, and p can reach 2**-n
        bits = (np.arange(2**d.size)[:, None] >> np.arange(d.size)) & 1
        null = ((2.0 * bits - 1) * d).mean(axis=1)
        return float(np.mean(null >= d.mean() - 1e-12))
    signs = rng.choice(np.array([-1.0, 1.0]), size=(permutations, d.size))
    null = (signs * d).mean(axis=1)
    return permutation_pvalue(d.mean() - 1e-12, null)
