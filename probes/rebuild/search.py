"""The weight search: golden section over a merge parameter in [0, 1], replayed from the
distances measured so far, and the minimiser of a local quadratic through the points nearest it.

The search is replayed rather than stored: given the same distances it asks for the same next
point, so collection (which builds the point) and analysis (which reads the curve) agree without
passing state, and a resumed run continues where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

GOLDEN = (math.sqrt(5) - 1) / 2
DIGITS = 6  # a point's name and recipe carry it rounded to this many decimals


def point(x: float) -> float:
    return round(float(x), DIGITS)


def golden_points(distance: Mapping[float, float], budget: int) -> tuple[list[float], float | None]:
    """The points the golden section over [0, 1] has asked for, given the mean ``distance`` at
    each point measured (keys rounded by :func:`point`), and the next point it needs (None once
    ``budget`` points are measured, or while one it asked for is not measured yet: then that point)."""
    lo, hi = 0.0, 1.0
    c, d = point(hi - GOLDEN * (hi - lo)), point(lo + GOLDEN * (hi - lo))
    asked = [c, d]
    for x in asked:
        if x not in distance:
            return asked, x
    while len(asked) < budget:
        if distance[c] < distance[d]:
            hi, d = d, c
            c = point(hi - GOLDEN * (hi - lo))
            new = c
        else:
            lo, c = c, d
            d = point(lo + GOLDEN * (hi - lo))
            new = d
        asked.append(new)
        if new not in distance:
            return asked, new
    return asked, None


def quadratic_minimum(xs: np.ndarray, ys: np.ndarray, nearest: int = 4) -> tuple[float, float]:
    """Minimiser and curvature of the parabola through the ``nearest`` points with the smallest
    ``ys``; the best point itself (curvature 0) where the parabola opens downward or is flat."""
    order = np.argsort(ys)[: min(nearest, len(xs))]
    x, y = xs[order], ys[order]
    if len(np.unique(x)) < 3:
        return float(x[0]), 0.0
    c2, c1, _ = np.polyfit(x, y, 2)
    if not c2 > 0:
        return float(x[0]), 0.0
    return float(-c1 / (2 * c2)), float(c2)


def kink_minimum(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimiser and slope of the V (``s |x - x0| + d0``) through the best point and its nearest
    neighbour on each side, per row of ``ys`` (replicates x points; the points are chosen by the
    rows' mean); the best point itself, slope 0, where no V fits.

    ties and dare_ties elect a sign per parameter from the weighted task vectors, so a parameter's
    value jumps where the election flips; flips are spread over the weights, and the distance to a
    subject grows like |x - x0| near its minimum, not like a parabola (measured on the tiny zoo's
    ties merge: 0.0019, 0.0015, 0.0020 at 0.016, 0.012, 0.018 from its weight 0.6). A parabola, or a
    Gauss-Newton step, misses such a kink; the V through three points is exact on it, as the
    parabola is on a smooth minimum."""
    ys = np.atleast_2d(ys)
    mean = ys.mean(axis=0)
    b = int(np.argmin(mean))
    left, right = np.flatnonzero(xs < xs[b]), np.flatnonzero(xs > xs[b])
    rows = len(ys)
    if not len(left) or not len(right):
        return np.full(rows, xs[b]), np.zeros(rows)
    lo, hi = left[np.argmax(xs[left])], right[np.argmin(xs[right])]
    (xl, xb, xr), (yl, yb, yr) = xs[[lo, b, hi]], (ys[:, lo], ys[:, b], ys[:, hi])
    with np.errstate(divide="ignore", invalid="ignore"):
        s_a = (yr - yb) / (xr - xb)  # the best point on the right arm: the kink in [xl, xb]
        x_a = (xl + xb) / 2 + (yl - yb) / (2 * s_a)
        s_b = (yl - yb) / (xb - xl)  # on the left arm: the kink in [xb, xr]
        x_b = (xb + xr) / 2 + (yb - yr) / (2 * s_b)
    ok_a = (s_a > 0) & (x_a >= xl) & (x_a <= xb)
    ok_b = (s_b > 0) & (x_b >= xb) & (x_b <= xr)
    use_a = ok_a & (~ok_b | (yl < yr))
    x0 = np.where(use_a, x_a, np.where(ok_b, x_b, xb))
    slope = np.where(use_a, s_a, np.where(ok_b, s_b, 0.0))
    return x0, slope
