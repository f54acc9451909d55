"""The interpolation likelihood of a suspect's sampled text, from the parents' log-probs alone.

A merge ``a*A + (1-a)*B`` has logits close to ``a*zA + (1-a)*zB``, so its next-token distribution
is close to the geometric interpolation ``p_a ∝ p_A^a p_B^(1-a)``; sampled at temperature T it is
``∝ exp((a*zA + (1-a)*zB) / T)``. With ``beta_i = w_i / T`` that is a log-linear model,

    log q(x_t) = sum_i beta_i z_i(x_t) - log sum_v exp(sum_i beta_i z_i(v)),   beta >= 0,

whose negative log-likelihood is convex in beta: the maximum-likelihood fit over the suspect's
samples is unique, the weights are ``w = beta / sum(beta)`` (the simplex, for any number of
parents) and the temperature ``T = 1 / sum(beta)`` is fitted jointly (the nuisance parameter: a
suspect sampled at T = 1 should come out near 1 relative to its parents' scale).

Input per prompt (the cluster: samples of one prompt share it): ``TokenData`` with, per scored
token, each parent's log-prob of the sampled token (exact) and the parents' log-probs on a
support with weights (the whole vocabulary, or the compact head + V/n-weighted sample, see
``probes.shared.align``: the normaliser is then an unbiased estimate of the vocabulary sum).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.stats import percentile_ci, wilcoxon_greater


@dataclass
class TokenData:
    """The scored tokens of one prompt's samples: ``actual`` (T, P) log-probs of the sampled
    tokens under each parent, ``support`` (T, K, P) log-probs on the support, ``weight`` (T, K)."""

    actual: np.ndarray
    support: np.ndarray
    weight: np.ndarray

    @property
    def tokens(self) -> int:
        return int(self.actual.shape[0])


def _terms(beta: np.ndarray, d: TokenData, hessian: bool = False) -> tuple[float, np.ndarray, np.ndarray | None]:
    """Summed negative log-likelihood of one prompt's tokens, its gradient in beta and (on
    request) its Hessian: the covariance of the parents' log-probs under the model, summed."""
    s = d.support @ beta  # (T, K)
    top = s.max(axis=1, keepdims=True)
    e = d.weight * np.exp(s - top)
    z = e.sum(axis=1)
    q = e / z[:, None]  # (T, K): the model's distribution on the support
    expected = np.matmul(q[:, None, :], d.support)[:, 0, :]  # (T, P): E_q of each parent's log-prob
    nll = float(np.sum(np.log(z) + top[:, 0] - d.actual @ beta))
    grad = np.sum(expected - d.actual, axis=0)
    hess = None
    if hessian:
        flat = d.support.reshape(-1, d.support.shape[-1])
        hess = (flat * q.reshape(-1, 1)).T @ flat - expected.T @ expected
    return nll, grad, hess


def _nll_grad(beta: np.ndarray, d: TokenData) -> tuple[float, np.ndarray]:
    nll, grad, _ = _terms(beta, d)
    return nll, grad


def fit(data: list[TokenData], counts: np.ndarray | None = None, mask: list[int] | None = None) -> np.ndarray:
    """Maximum-likelihood beta >= 0 over the prompts (``counts``: how often each prompt counts,
    for the bootstrap; ``mask``: the parents allowed a weight, the others held at 0)."""
    from scipy.optimize import minimize  # imported here: `validate` stays fast

    p = data[0].actual.shape[1]
    counts = np.ones(len(data)) if counts is None else counts
    free = list(range(p)) if mask is None else mask
    used = [(c, d) for c, d in zip(counts, data) if c > 0 and d.tokens]

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        beta = np.zeros(p)
        beta[free] = x
        total, grad = 0.0, np.zeros(p)
        for c, d in used:
            f, g = _nll_grad(beta, d)
            total += c * f
            grad += c * g
        n = sum(c * d.tokens for c, d in used)
        return total / n, grad[free] / n

    x0 = np.full(len(free), 1.0 / len(free))
    res = minimize(objective, x0, jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * len(free))
    beta = np.zeros(p)
    beta[free] = res.x
    return beta


def nll_per_prompt(beta: np.ndarray, data: list[TokenData]) -> np.ndarray:
    """Summed negative log-likelihood of each prompt's tokens under beta."""
    return np.array([_nll_grad(beta, d)[0] if d.tokens else 0.0 for d in data])


def weights_and_temperature(beta: np.ndarray) -> tuple[np.ndarray, float]:
    total = float(beta.sum())
    return (beta / total if total > 0 else np.full_like(beta, np.nan)), (1.0 / total if total > 0 else np.inf)


@dataclass
class Fit:
    beta: np.ndarray
    weights: np.ndarray
    temperature: float
    weight_ci: list[tuple[float, float]]
    temperature_ci: tuple[float, float]
    replicates: np.ndarray  # (B, P) bootstrap weights


def _prompt_terms(beta: np.ndarray, data: list[TokenData]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per prompt, the NLL, gradient and Hessian at ``beta``: (n,), (n, P), (n, P, P)."""
    n, p = len(data), len(beta)
    nll, grads, hessians = np.zeros(n), np.zeros((n, p)), np.zeros((n, p, p))
    for j, d in enumerate(data):
        if d.tokens:
            nll[j], grads[j], h = _terms(beta, d, hessian=True)
            hessians[j] = h
    return nll, grads, hessians


def _one_step(
    beta: np.ndarray, counts: np.ndarray, terms: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> tuple[np.ndarray, float]:
    """One Newton step from ``beta`` on the prompts weighted by ``counts``, on the coefficients
    ``beta`` holds non-zero (clipped at 0), and the weighted NLL there to second order."""
    nll, grads, hessians = terms
    free = np.flatnonzero(beta > 0)
    g, h = counts @ grads, np.einsum("j,jpr->pr", counts, hessians)
    delta = np.zeros_like(beta)
    delta[free] = -np.linalg.lstsq(h[np.ix_(free, free)], g[free], rcond=None)[0]
    out = np.clip(beta + delta, 0.0, None)
    delta = out - beta
    return out, float(counts @ nll + g @ delta + 0.5 * delta @ h @ delta)


def fit_with_ci(data: list[TokenData], rng: np.random.Generator, replicates: int, alpha: float) -> Fit:
    """The fit, and a cluster-bootstrap CI over prompts (prompts resampled with replacement).

    Each replicate is one Newton step from the full-data fit, with the resampled prompts' summed
    gradients and Hessians (the one-step bootstrap): a refit per replicate costs a pass over
    every token each iteration, the step costs nothing once the per-prompt terms exist, and
    with thousands of tokens the log-likelihood is close to quadratic over the replicates'
    range. A coefficient the fit put at 0 stays there."""
    beta = fit(data)
    w, t = weights_and_temperature(beta)
    n = len(data)
    terms = _prompt_terms(beta, data)
    reps_w, reps_t = [], []
    for _ in range(replicates):
        counts = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
        wb, tb = weights_and_temperature(_one_step(beta, counts, terms)[0])
        reps_w.append(wb)
        reps_t.append(tb)
    rw = np.array(reps_w)
    return Fit(
        beta=beta,
        weights=w,
        temperature=t,
        weight_ci=[percentile_ci(rw[:, i], alpha) for i in range(len(w))],
        temperature_ci=percentile_ci(np.array(reps_t), alpha),
        replicates=rw,
    )


def cv_gain(data: list[TokenData], rng: np.random.Generator, splits: int) -> tuple[np.ndarray, float, np.ndarray]:
    """Held-out log-likelihood gain (nats per token) of the interpolation over the better single
    parent (each with its own fitted temperature, both chosen on the training half), per prompt,
    averaged over random half splits of the prompts; one-sided Wilcoxon over prompts. Returns
    (per-prompt gains, p, per-prompt held-out NLL per token of the interpolation), NaN for a
    prompt without scored tokens. A half's fits are one Newton step from the full-data fits
    (as in the bootstrap); the held-out prompts are then scored exactly."""
    n, p = len(data), data[0].actual.shape[1]
    tokens = np.array([max(d.tokens, 1) for d in data], dtype=float)
    starts = [fit(data), *(fit(data, mask=[i]) for i in range(p))]
    terms = [_prompt_terms(b, data) for b in starts]
    total, count, nll_total = np.zeros(n), np.zeros(n), np.zeros(n)
    for _ in range(splits):
        perm = rng.permutation(n)
        train, test = perm[: n // 2], perm[n // 2 :]
        counts = np.zeros(n)
        counts[train] = 1
        fits = [_one_step(b, counts, t) for b, t in zip(starts, terms)]
        both = fits[0][0]
        best = min(fits[1:], key=lambda f: f[1])[0]  # the better single parent on the training half
        held = [data[j] for j in test]
        nll_both = nll_per_prompt(both, held) / tokens[test]
        nll_single = nll_per_prompt(best, held) / tokens[test]
        total[test] += nll_single - nll_both
        nll_total[test] += nll_both
        count[test] += 1
    has = (count > 0) & np.array([d.tokens > 0 for d in data])
    gains = np.where(has, total / np.maximum(count, 1), np.nan)
    nll = np.where(has, nll_total / np.maximum(count, 1), np.nan)
    return gains, wilcoxon_greater(gains[has]), nll


@dataclass
class FitTest:
    statistic: float  # Hotelling's T^2
    df: int  # its components k
    p: float


def fit_test(beta: np.ndarray, data: list[TokenData]) -> FitTest:
    """Does the fitted interpolation describe the samples? White's information-matrix test.

    If the samples come from ``q`` (the fitted interpolation), then at every sampled token the
    outer product of the score, ``r r^T`` with ``r = z(x_t) - E_q[z]`` (``z``: the parents'
    log-probs), has expectation ``Cov_q(z)``, the model's own Hessian term. The maximum-likelihood
    fit forces the score's mean to 0 (the temperature fit absorbs any entropy mismatch), but not
    this second moment: a model that is not the interpolation (a sibling fine-tune of the
    parents' base fits one with a large gain) leaves ``sum (r r^T - Cov_q)`` away from 0. Per
    prompt the differences are summed (the cluster: a prompt's samples share it), and their mean
    over prompts is tested against 0 with Hotelling's T^2 (the prompts' own covariance; F
    distribution, so a few dozen prompts keep the level), on k = P (P + 1) / 2 components (the
    covariance's rank, when singular)."""
    from scipy import stats as sps  # imported here: `validate` stays fast

    p = len(beta)
    upper = np.triu_indices(p)
    rows = []
    for d in data:
        if not d.tokens:
            continue
        s = d.support @ beta
        e = d.weight * np.exp(s - s.max(axis=1, keepdims=True))
        q = e / e.sum(axis=1, keepdims=True)
        mean = np.einsum("tk,tkp->tp", q, d.support)
        cov = np.einsum("tk,tkp,tkr->tpr", q, d.support, d.support) - np.einsum("tp,tr->tpr", mean, mean)
        r = d.actual - mean
        rows.append((np.einsum("tp,tr->tpr", r, r) - cov).sum(axis=0)[upper])
    x = np.array(rows)
    n = len(x)
    cov = np.atleast_2d(np.cov(x.T)) if n > 1 else np.zeros((1, 1))
    k = int(np.linalg.matrix_rank(cov))
    if k == 0 or n <= k:
        return FitTest(float("nan"), k, float("nan"))
    m = x.mean(axis=0)
    t2 = float(n * m @ np.linalg.pinv(cov) @ m)
    return FitTest(t2, k, float(sps.f.sf(t2 * (n - k) / (k * (n - 1)), k, n - k)))
