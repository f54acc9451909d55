"""Fits of one subject's weights against the parents', from a Gram matrix alone.

Rows of the Gram (``probes.weights.stream``): ``0`` the reference R, ``1..p`` the parents'
differences X_i = P_i - R, then the subjects' differences y = S - R. Every quantity is a
quadratic form in it, so a fit on one tensor and a fit pooled over all tensors (the sum of their
Grams: "one a for all tensors") are the same code.

* **Line / simplex fit**: least squares y ~ X w (unconstrained, with standard errors) and
  non-negative least squares (what a merge's weights must be); cos fit = cos(y, X w), relative
  residual = |y - X w| / |y|.
* **Slerp** (two parents, mergekit's formula and its fallback to a linear blend when the
  tensors are nearly parallel): S = s0(t) B + s1(t) A, t fitted; its residual against the line's
  tells the families apart, because slerp leaves the line by a part along the tensors themselves.
The storage floor the residual is compared with (what rounding to the stored dtype alone
leaves) is ``analysis.floor_of``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar, nnls

SLERP_DOT_THRESHOLD = 0.9995  # mergekit's: nearly parallel tensors are blended linearly


@dataclass
class Fit:
    weights: np.ndarray  # non-negative least squares, one per parent difference
    lsq: np.ndarray  # unconstrained least squares
    se: np.ndarray  # standard errors of ``lsq`` (elements as independent noise: a lower bound)
    cos: float
    rel_residual: float
    norm_y: float  # |S - R|
    norm_s: float  # |S|


def _quad(g: np.ndarray, c: np.ndarray) -> float:
    return float(c @ g @ c)


def subject_gram(g: np.ndarray, n_parents: int, subject: int) -> np.ndarray:
    """The Gram of [R, X_1..X_p, y] for one subject (index among the subjects)."""
    idx = [*range(1 + n_parents), 1 + n_parents + subject]
    return g[np.ix_(idx, idx)]


def fit(g: np.ndarray, n: int) -> Fit:
    """Fit of y (last row of ``g``) on the parents' differences; ``n`` elements behind ``g``."""
    p = g.shape[0] - 2
    xtx, xty, yy = g[1 : p + 1, 1 : p + 1], g[1 : p + 1, -1], g[-1, -1]
    norm_s = math.sqrt(max(g[0, 0] + 2 * g[0, -1] + yy, 0.0))
    if yy <= 0 or p == 0 or np.trace(xtx) <= 0:
        nan = np.full(p, np.nan)
        return Fit(nan, nan, nan, math.nan, math.nan if yy <= 0 else 1.0, math.sqrt(max(yy, 0.0)), norm_s)
    lsq = np.linalg.lstsq(xtx, xty, rcond=None)[0]
    try:
        chol = np.linalg.cholesky(xtx)
        w = nnls(chol.T, np.linalg.solve(chol, xty))[0]
    except np.linalg.LinAlgError:  # parents' differences linearly dependent: NNLS on the least-squares fit's support
        w = np.clip(lsq, 0, None)
    fitted = float(w @ xtx @ w)
    res = max(yy - 2 * float(w @ xty) + fitted, 0.0)
    res_lsq = max(yy - 2 * float(lsq @ xty) + float(lsq @ xtx @ lsq), 0.0)
    sigma2 = res_lsq / max(n - p, 1)
    se = np.sqrt(np.clip(np.diag(np.linalg.pinv(xtx)) * sigma2, 0, None))
    cos = float(w @ xty) / math.sqrt(yy * fitted) if fitted > 0 else math.nan
    return Fit(w, lsq, se, cos, math.sqrt(res / yy), math.sqrt(yy), norm_s)


def slerp_residual(g: np.ndarray) -> tuple[float, float, float]:
    """(t, relative residual |S - slerp(B, A; t)| / |S - R|, cos of the angle between A and B)
    by mergekit's formula, B the first model (t = 0) and A the second. ``g`` has rows
    [R, A - R, y] (B is the reference) or [R, A - R, B - R, y] (a shared base is)."""
    k = g.shape[0]
    a_vec = np.zeros(k)
    a_vec[[0, 1]] = 1.0
    b_vec = np.zeros(k)
    b_vec[0] = 1.0
    if k == 4:
        b_vec[2] = 1.0
    aa, bb, ab, yy = _quad(g, a_vec), _quad(g, b_vec), float(a_vec @ g @ b_vec), g[-1, -1]
    if aa <= 0 or bb <= 0 or yy <= 0:
        return math.nan, math.nan, math.nan
    dot = ab / math.sqrt(aa * bb)
    theta = math.acos(min(max(dot, -1.0), 1.0))

    def coefficients(t: float) -> tuple[float, float]:
        if abs(dot) > SLERP_DOT_THRESHOLD or math.sin(theta) == 0:
            return 1 - t, t
        return math.sin((1 - t) * theta) / math.sin(theta), math.sin(t * theta) / math.sin(theta)

    def res(t: float) -> float:
        s0, s1 = coefficients(t)
        # S - s0 B - s1 A = (1 - s0 - s1) R - s1 (A - R) - s0 (B - R) + (S - R)
        c = -s1 * a_vec - s0 * b_vec
        c[0] += 1.0
        c[-1] = 1.0
        return max(_quad(g, c), 0.0)

    best = minimize_scalar(res, bounds=(-0.5, 1.5), method="bounded", options={"xatol": 1e-7})
    return float(best.x), math.sqrt(res(best.x) / yy), dot
