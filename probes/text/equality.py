"""Is the suspect a copy of parent X? A two-sample test on sampled answers, stratified by prompt.

Both models answer the same prompts; the answers to one prompt are exchangeable between the two
models under "same model", but answers to different prompts are not (a prompt decides most of
what its answers look like). So the statistic is the sum over prompts of the within-prompt
unbiased MMD^2 and the permutations swap labels **within** each prompt. The unstratified test
(one MMD^2 over all answers, labels permuted across prompts: the published model-equality test)
is kept for comparison: it is invalid whenever the two models' answers are spread differently
over the prompts (a failed or rate-limited request, a different number of samples per prompt),
because then prompt differences read as model differences. `tests/test_text_probe.py` measures
both type-I errors by simulation.

The kernel is Gaussian on parent-scored features of each answer: its mean log-prob per token
under each parent (how likely each parent finds it), the direction in which a merge's answers
differ from a parent's. The bandwidth is the median distance between the pooled answers' features
(the median heuristic), fixed before any permutation.
"""

from __future__ import annotations

import numpy as np

from harness.stats import permutation_pvalue


def _sq_distances(f: np.ndarray) -> np.ndarray:
    """(n, n) squared Euclidean distances between the rows of ``f``."""
    return np.sum((f[:, None, :] - f[None, :, :]) ** 2, axis=-1)


def _kernel(f: np.ndarray, bandwidth: float) -> np.ndarray:
    return np.exp(-_sq_distances(f) / (2 * bandwidth**2))


def bandwidth(features: list[np.ndarray]) -> float:
    """The median heuristic over every answer's features (1 when they are all equal)."""
    f = np.concatenate([x for x in features if len(x)])
    d = np.sqrt(_sq_distances(f))
    med = float(np.median(d[np.triu_indices(len(f), 1)])) if len(f) > 1 else 0.0
    return med if med > 0 else 1.0


def _mmd2(k: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Unbiased MMD^2 for each row of ``labels`` (R, n) (1: first sample, 0: second), from the
    kernel matrix (n, n); vectorised over the rows so a permutation null is one matrix product."""
    x = labels.astype(float)
    y = 1.0 - x
    diag = np.diag(k)
    nx, ny = x.sum(axis=1), y.sum(axis=1)
    xk = x @ k  # (R, n): one BLAS product; the label sums below are then row-wise dot products
    sxx = np.sum(xk * x, axis=1) - x @ diag
    sxy = np.sum(xk * y, axis=1)
    syy = np.sum((y @ k) * y, axis=1) - y @ diag
    return sxx / (nx * (nx - 1)) + syy / (ny * (ny - 1)) - 2 * sxy / (nx * ny)


def _permuted(labels: np.ndarray, rng: np.random.Generator, permutations: int) -> np.ndarray:
    """(permutations + 1, n): the observed labels first, then random permutations of them."""
    return np.vstack([labels, rng.permuted(np.tile(labels, (permutations, 1)), axis=1)])


def stratified_test(
    a: list[np.ndarray], b: list[np.ndarray], rng: np.random.Generator, permutations: int = 999
) -> tuple[float, float]:
    """(statistic, p) for "a and b are answers of the same model": ``a[j]`` and ``b[j]`` (n, F)
    are the two models' answers' features at prompt j; labels are permuted within prompts."""
    h = bandwidth([*a, *b])
    total: np.ndarray | None = None
    for xa, xb in zip(a, b):
        if len(xa) < 2 or len(xb) < 2:
            continue  # a prompt needs two answers from each model for the unbiased within-prompt MMD
        k = _kernel(np.concatenate([xa, xb]), h)
        stats = _mmd2(k, _permuted(np.array([1] * len(xa) + [0] * len(xb)), rng, permutations))
        total = stats if total is None else total + stats
    if total is None:
        return float("nan"), float("nan")
    return float(total[0]), permutation_pvalue(total[0], total[1:])


def unstratified_test(
    a: list[np.ndarray], b: list[np.ndarray], rng: np.random.Generator, permutations: int = 999
) -> tuple[float, float]:
    """The same question, one MMD^2 over all answers with labels permuted across prompts (for
    comparison only: see the module docstring for why it is invalid)."""
    xa, xb = np.concatenate(a), np.concatenate(b)
    k = _kernel(np.concatenate([xa, xb]), bandwidth([xa, xb]))
    stats = _mmd2(k, _permuted(np.array([1] * len(xa) + [0] * len(xb)), rng, permutations))
    return float(stats[0]), permutation_pvalue(stats[0], stats[1:])
