"""The mathematics of "does the suspect sit on an interpolation between the parents?".

Everything works on *aligned* log-probs: for one text, an array ``lp`` of shape (P, K, M) —
P positions, K support tokens per position (padded; ``weight`` is 0 on padding), and M
models in the order [suspect, parent_1, ..., parent_k]. The support is the whole vocabulary
in full mode (or, in compact storage, the head plus a uniform sample weighted by V / n, so every
sum below estimates the full-vocabulary one), the tokens every model reported in top-k mode.
Log-probs are centred over the support at each position, which removes each model's
normaliser, so on any support

    exact geometric interpolation  lS = sum_i w_i lP_i + const  =>  cS = sum_i w_i cP_i.

Per text we keep small sufficient statistics (a Gram matrix of centred log-probs, divergence
sums, betweenness counts, cross-entropy curves); every estimator is a function of their sum
over texts, so a cluster-bootstrap replicate is a weighted sum and a CV split is a masked sum.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

GEO_GRID = np.linspace(-0.25, 1.25, 31)  # geometric (logit-space) weight of parent 1
MIX_GRID = np.linspace(0.0, 1.0, 21)  # arithmetic (probability-space) mixture weight of parent 1


@dataclass
class TextStats:
    """Sufficient statistics of one text for one suspect against its parents."""

    gram: np.ndarray  # (M, M) inner products of centred log-prob columns
    kl: np.ndarray  # (k,) sum over positions of KL(suspect || parent_i) on the support
    js: np.ndarray  # (k,) Jensen-Shannon, summed over positions
    tv: np.ndarray  # (k,) total variation, summed over positions
    between: float  # points where the parents disagree by > tau and the suspect lies between them
    disagree: float  # points where the parents disagree by > tau
    ce_geo: np.ndarray  # (len(GEO_GRID),) cross-entropy of the suspect under softmax(a l1 + (1-a) l2)
    ce_mix: np.ndarray  # (len(MIX_GRID),) cross-entropy of the suspect under w p1 + (1-w) p2
    entropy: float  # the suspect's own entropy, summed over positions (so CE - entropy = KL)
    positions: int

    def vector(self) -> np.ndarray:
        return np.concatenate(
            [
                self.gram.ravel(),
                self.kl,
                self.js,
                self.tv,
                [self.between, self.disagree],
                self.ce_geo,
                self.ce_mix,
                [self.entropy, self.positions],
            ]
        )


class Layout:
    """Where each statistic lives in the flat per-text vector (so sums of vectors are sums of stats)."""

    def __init__(self, n_models: int):
        m, k = n_models, n_models - 1
        sizes = [("gram", m * m), ("kl", k), ("js", k), ("tv", k), ("between", 1), ("disagree", 1)]
        sizes += [("ce_geo", len(GEO_GRID)), ("ce_mix", len(MIX_GRID)), ("entropy", 1), ("positions", 1)]
        self.m, self.k = m, k
        self.slices: dict[str, slice] = {}
        start = 0
        for name, size in sizes:
            self.slices[name] = slice(start, start + size)
            start += size
        self.size = start

    def get(self, v: np.ndarray, name: str) -> np.ndarray:
        out = v[..., self.slices[name]]
        if name == "gram":
            return out.reshape(*v.shape[:-1], self.m, self.m)
        return out[..., 0] if out.shape[-1] == 1 and name in ("between", "disagree", "entropy", "positions") else out


def weighted_gram(c: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """(P, K, M) centred log-probs and (P, K) support weights -> the (M, M) Gram summed over the
    text: every distance between models is read from it."""
    return np.einsum("pk,pkm,pkn->mn", weight, c, c)


def logsumexp(x: np.ndarray, axis: int, keepdims: bool = False) -> np.ndarray:
    """Plain max-shifted logsumexp (scipy's handles complex input and is several times slower)."""
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    out = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)


def _log_renorm(lp: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Log-probs renormalised over the (weighted) support at each position: the weighted sum of
    their exponentials is 1. Entries outside the support are -inf."""
    w = weight[..., None] if lp.ndim == 3 else weight
    with np.errstate(divide="ignore"):
        x = np.where(w > 0, lp + np.log(w), -np.inf)
    return np.where(w > 0, lp, -np.inf) - logsumexp(x, axis=1, keepdims=True)


def centred(lp: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Log-probs minus their (weighted) mean over the support at each position; 0 outside it."""
    w = weight[..., None]
    mean = np.where(w > 0, w * lp, 0.0).sum(axis=1, keepdims=True) / weight.sum(axis=1)[:, None, None]
    return np.where(w > 0, lp - mean, 0.0)


def text_stats(lp: np.ndarray, weight: np.ndarray, tau: float = 1.0) -> TextStats:
    """Sufficient statistics for one text. ``lp`` is (P, K, M) with the suspect in column 0;
    ``weight`` (P, K) is each support token's weight in every sum (``align.align``): 1 for a
    token taken exactly, V / n for a sampled one, 0 outside the support.

    The divergences renormalise over the (weighted) support: exact in full mode, a consistent
    set of distributions in top-k mode, and in compact storage a self-normalised estimate. Left
    unnormalised, compact KL to each parent would be unbiased, but the fitted-interpolation KL
    (cross-entropy minus entropy, a small difference of large sums) was off by 130% on rio_mini
    instead of 7%, so the self-normalised form is used everywhere."""
    lp = np.asarray(lp, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    keep = (weight > 0).sum(axis=1) >= 2  # a position with fewer than two shared tokens carries no information
    lp, weight = lp[keep], weight[keep]
    mask = weight > 0
    P, _, M = lp.shape
    if P == 0:
        k = M - 1
        zero = np.zeros(k)
        return TextStats(
            np.zeros((M, M)), zero, zero, zero, 0.0, 0.0, np.zeros(len(GEO_GRID)), np.zeros(len(MIX_GRID)), 0.0, 0
        )
    c = centred(lp, weight)
    gram = weighted_gram(c, weight)

    logq = _log_renorm(lp, weight)
    q = np.where(mask[..., None], np.exp(logq), 0.0)
    safe_logq = np.where(mask[..., None], logq, 0.0)
    qs, ls = q[..., 0], safe_logq[..., 0]
    wqs = weight * qs  # the suspect's probability mass carried by each support token
    kl = np.array([np.sum(wqs * (ls - safe_logq[..., i])) for i in range(1, M)])
    tv = np.array([0.5 * np.sum(weight * np.abs(qs - q[..., i])) for i in range(1, M)])
    js = []
    for i in range(1, M):
        mid = 0.5 * (qs + q[..., i])
        lm = np.log(np.where(mid > 0, mid, 1.0))
        js.append(0.5 * np.sum(wqs * (ls - lm)) + 0.5 * np.sum(weight * q[..., i] * (safe_logq[..., i] - lm)))
    entropy = -np.sum(wqs * ls)

    between = disagree = 0.0
    ce_geo = np.full(len(GEO_GRID), np.nan)
    ce_mix = np.full(len(MIX_GRID), np.nan)
    if M == 3:
        ca, cb, cs = c[..., 1], c[..., 2], c[..., 0]
        dis = mask & (np.abs(ca - cb) > tau)
        disagree = float(np.sum(weight * dis))
        between = float(np.sum(weight * (dis & ((cs - ca) * (cs - cb) <= 0))))
        # Geometric family softmax(l2 + a (l1 - l2)) on the support. Its cross-entropy is linear in a
        # except for the per-position normaliser, so only logsumexp needs evaluating per grid point.
        l1 = np.where(mask, lp[..., 1], 0.0)
        l2 = np.where(mask, lp[..., 2], 0.0)
        d = l1 - l2
        lin = np.sum(wqs * l2) + GEO_GRID * np.sum(wqs * d)
        # float32 for the (grid x positions x support) arrays: twice as fast, and the curves only
        # locate a minimum (their values enter KL-to-fit, reported to 3 decimals).
        with np.errstate(divide="ignore"):
            logw = np.where(mask, np.log(weight), -np.inf).astype(np.float32)
        x = (l2 + logw)[None].astype(np.float32) + GEO_GRID[:, None, None].astype(np.float32) * d[None].astype(
            np.float32
        )
        ce_geo = -lin + logsumexp(x, axis=2).astype(np.float64).sum(axis=1)
        q1, q2 = q[..., 1].astype(np.float32), q[..., 2].astype(np.float32)
        mix = MIX_GRID[:, None, None].astype(np.float32) * (q1 - q2)[None] + q2[None]
        wmix = np.where(mask & (qs > 0), wqs, 0.0).astype(np.float32)
        ce_mix = -np.einsum("pk,gpk->g", wmix, np.log(np.maximum(mix, np.float32(1e-30)))).astype(np.float64)
    return TextStats(gram, kl, np.array(js), tv, between, disagree, ce_geo, ce_mix, float(entropy), P)


# --------------------------------------------------------------------------- estimators on sums


def _design(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X'X, X'y and y'y for y = S - P_k regressed on X_i = P_i - P_k (i < k)."""
    m = gram.shape[-1]
    k = m - 1
    last = k  # index of the last parent in the gram matrix
    idx = np.arange(1, k)
    g = gram
    xtx = g[..., idx[:, None], idx[None, :]] - g[..., idx, last][..., :, None] - g[..., last, idx][..., None, :]
    xtx = xtx + g[..., last, last][..., None, None]
    xty = g[..., 0, idx] - g[..., 0, last][..., None] - g[..., last, idx] + g[..., last, last][..., None]
    yty = g[..., 0, 0] - 2 * g[..., 0, last] + g[..., last, last]
    return xtx, xty, yty


def fit_unconstrained(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares weights on the affine hull of the parents (sum to 1, any sign) and the residual."""
    xtx, xty, yty = _design(gram)
    # pinv, not solve: a bootstrap replicate drawn from texts with no usable positions (possible in
    # next-token mode) has X'X = 0; it yields NaN statistics downstream instead of an exception.
    w = (np.linalg.pinv(xtx) @ xty[..., None])[..., 0]
    resid = yty - np.einsum("...i,...i->...", w, xty)
    full = np.concatenate([w, 1 - w.sum(axis=-1, keepdims=True)], axis=-1)
    return full, np.maximum(resid, 0.0)


def fit_simplex(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative weights summing to 1 (exact, by enumerating active sets; k is small)."""
    m = gram.shape[-1]
    k = m - 1
    lead = gram.shape[:-2]
    best_w = np.zeros((*lead, k))
    best_r = np.full(lead, np.inf)
    for size in range(1, k + 1):
        for subset in itertools.combinations(range(k), size):
            cols = [0, *[s + 1 for s in subset]]
            sub = gram[..., cols, :][..., :, cols]
            if size == 1:
                w_sub = np.ones((*lead, 1))
                r = sub[..., 0, 0] - 2 * sub[..., 0, 1] + sub[..., 1, 1]
            else:
                w_sub, r = fit_unconstrained(sub)
            ok = np.all(w_sub >= -1e-12, axis=-1) & (r < best_r)
            if np.any(ok):
                w_full = np.zeros((*lead, k))
                w_full[..., list(subset)] = w_sub
                best_w = np.where(ok[..., None], w_full, best_w)
                best_r = np.where(ok, r, best_r)
    return best_w, best_r


def sq_distance(gram: np.ndarray, i: int, j: int) -> np.ndarray:
    return gram[..., i, i] - 2 * gram[..., i, j] + gram[..., j, j]


def parent_scale(gram: np.ndarray) -> np.ndarray:
    """Mean squared distance between parents: the unit that makes distances comparable across suites."""
    k = gram.shape[-1] - 1
    pairs = list(itertools.combinations(range(1, k + 1), 2))
    return np.asarray(sum(sq_distance(gram, i, j) for i, j in pairs) / len(pairs))


def grid_min(curves: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimiser and minimum of sampled smooth curves (..., G): a parabola through the best three
    points (the grid edge when the minimum lies there)."""
    raw = np.nanargmin(curves, axis=-1)
    i = np.clip(raw, 1, len(grid) - 2)
    y0, y1, y2 = (np.take_along_axis(curves, (i + d)[..., None], -1)[..., 0] for d in (-1, 0, 1))
    curv = y0 - 2 * y1 + y2
    ok = curv > 1e-15
    shift = np.clip(np.where(ok, 0.5 * (y0 - y2) / np.where(ok, curv, 1.0), 0.0), -1, 1)
    x = grid[i] + shift * (grid[1] - grid[0])
    y = y1 - 0.25 * (y0 - y2) * shift
    edge = (raw == 0) | (raw == len(grid) - 1)
    y_edge = np.take_along_axis(curves, raw[..., None], -1)[..., 0]
    return np.where(edge, grid[raw], x), np.where(edge, y_edge, y)


# --------------------------------------------------------------------------- cross-validated test


def cv_gain(per_text_gram: np.ndarray, rng: np.random.Generator, splits: int = 50) -> tuple[np.ndarray, float]:
    """Per-text relative gain of the fitted interpolation over the best single parent, out of sample.

    Each split fits the weights (and picks the better single parent) on a random half of the
    texts and scores the other half; a text's gain is averaged over the splits that held it
    out. The one-sided Wilcoxon signed-rank test asks whether the interpolation predicts the
    suspect better than the better parent alone. Returns (per-text gains, p-value).
    """
    from scipy import stats as sps  # imported here: `validate` stays fast

    n, m, _ = per_text_gram.shape
    k = m - 1
    total = np.zeros(n)
    count = np.zeros(n)
    for _ in range(splits):
        perm = rng.permutation(n)
        train, test = perm[: n // 2], perm[n // 2 :]
        g_train = per_text_gram[train].sum(axis=0)
        w = fit_unconstrained(g_train)[0] if k == 2 else fit_simplex(g_train)[0]
        best = 1 + int(np.argmin([sq_distance(g_train, 0, i) for i in range(1, k + 1)]))
        g = per_text_gram[test]
        # loss of prediction sum_i w_i P_i for S: |S|^2 - 2 sum w_i <S,P_i> + w' G_PP w
        gp = g[:, 1:, 1:]
        loss_interp = g[:, 0, 0] - 2 * g[:, 0, 1:] @ w + np.einsum("i,tij,j->t", w, gp, w)
        loss_single = sq_distance(g, 0, best)
        total[test] += 1 - loss_interp / np.maximum(loss_single, 1e-300)
        count[test] += 1
    gains = total / np.maximum(count, 1)
    gains = gains[count > 0]
    if np.allclose(gains, 0):
        return gains, 1.0
    p = float(sps.wilcoxon(gains, alternative="greater", zero_method="wilcox").pvalue)
    return gains, p
