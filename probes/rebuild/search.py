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
