"""task_arithmetic's search: two free weights (one per task vector), found by Gauss-Newton.

A golden section per weight would cost about 8 rebuilds each and would not see how the two
weights trade off. The merge is linear in its weights (base + a (P1 - base) + b (P2 - base)), and
the log-probs are nearly linear over a tenth of a weight, so the search measures the Jacobian
once, by finite differences, and steps:

* the frame: a rebuild at the start (the linear family's tested weight (a, 1 - a), which is the
  task-arithmetic merge with a + b = 1; else (0.5, 0.5)) and one with each weight moved by
  ``FD_STEP``;
* two Gauss-Newton steps with that Jacobian on the signed log-prob differences (the second
  rebuild is tested for equality), and its rounding twin: 6 rebuilds. With k free weights the
  search is k + 4 rebuilds (a golden section per weight would be about 9k).

The weight and its CI come from one more step, as in the one-weight families (analysis.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from harness.evidence import Interval
from harness.stats import bootstrap_weights, percentile_ci
from probes.rebuild.recipes import Want, is_twin, twin_model, twin_want
from probes.rebuild.result import FamilyFit
from probes.rebuild.search import GOLDEN, point

if TYPE_CHECKING:
    from probes.rebuild.analysis import Search

FD_STEP = 0.1  # each weight's finite-difference step: the scale over which log-probs are near linear
LIMITS = (-1.0, 2.0)  # a step is clamped here: task-arithmetic weights beyond these are not plausible
FAMILY = "task_arithmetic"
PLANE_BUILDS = 6  # the frame (3), two steps, the twin

Point = tuple[float, float]


@dataclass
class Plane:
    """One subject's task-arithmetic search: the rebuilds served, by their two weights."""

    name: str
    family: str
    frame: tuple[Point, Point, Point]  # the start, and each weight moved by FD_STEP
    models: dict[Point, str]
    refine: Point | None  # the rebuild tested for equality, once the first step is served
    next_point: Point | None  # the search's next rebuild; None once every one is served
    storage: str
    storage_model: str | None

    @property
    def served(self) -> Point | None:
        return self.refine if self.refine in self.models else None

    def wanted(self) -> Want | None:
        if self.next_point is not None:
            return Want(self.name, self.family, *self.next_point)
        assert self.refine is not None
        if self.storage_model is None:
            return twin_want(self.name, self.family, self.refine[0], self.storage, self.refine[1])
        return None


def _clamp(x: float) -> float:
    return point(min(max(x, LIMITS[0]), LIMITS[1]))


def plane_search(search: Search, subject: str) -> Plane:
    """The search replayed from the records: which rebuilds are served, and which comes next."""
    available: dict[Point, str] = {}
    for name, recipe in search.rebuilds.items():
        if recipe.get("family") == FAMILY and not is_twin(recipe):
            available.setdefault((float(recipe["a"]), float(recipe["b"])), name)
    start = 0.5
    if "linear" in search.families():
        linear = search.family(subject, "linear")
        start = linear.refine if isinstance(linear.refine, float) else 0.5
    p0 = (point(start), point(1 - start))
    frame = (p0, (point(p0[0] + FD_STEP), p0[1]), (p0[0], point(p0[1] + FD_STEP)))
    nxt = next((p for p in frame if p not in available), None)
    confirm = refine = None
    if nxt is None:
        confirm = _move(search, subject, available, frame, p0)
        if confirm not in available:
            nxt = confirm
        else:
            refine = _move(search, subject, available, frame, confirm)
            nxt = None if refine in available else refine
    storage = search.storage(subject)
    twin = twin_want(subject, FAMILY, refine[0], storage, refine[1]) if refine is not None else None
    models = {p: available[p] for p in (*frame, confirm, refine) if p is not None and p in available}
    return Plane(subject, FAMILY, frame, models, refine, nxt, storage, twin_model(search.rebuilds, twin))


def _terms(
    search: Search, subject: str, models: dict[Point, str], frame: tuple[Point, Point, Point], at: Point
) -> tuple[np.ndarray, np.ndarray]:
    """Per text, the Gauss-Newton sums (texts, 2) and (texts, 2, 2) at ``at``, in units of weight."""
    names = (models[frame[0]], models[frame[1]], models[frame[2]])
    num, den = search.curves.plane_terms(subject, models[at], names, search.ids)
    h = np.array([frame[1][0] - frame[0][0], frame[2][1] - frame[0][1]])
    return num / h, den / np.outer(h, h)


def _solve(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """The least-squares step from summed terms (the pseudo-inverse: a flat direction moves 0)."""
    return np.linalg.pinv(den) @ num


def _move(
    search: Search, subject: str, models: dict[Point, str], frame: tuple[Point, Point, Point], at: Point
) -> Point:
    num, den = _terms(search, subject, models, frame, at)
    ok = np.isfinite(num).all(axis=1) & np.isfinite(den).all(axis=(1, 2))
    step = _solve(num[ok].sum(axis=0), den[ok].sum(axis=0)) if ok.any() else np.zeros(2)
    return (_clamp(at[0] + step[0]), _clamp(at[1] + step[1]))


def plane_fit(search: Search, sub: Plane, rng: np.random.Generator, replicates: int) -> FamilyFit:
    """The two weights with their bootstrap CIs (one more step from the rebuild tested, widened by
    it), and the equality test there; the weight error the CIs excuse is the Gauss-Newton
    curvature's quadratic form over their half-widths."""
    alpha = search.suite.stats.alpha
    served = sub.served
    assert served is not None
    num, den = _terms(search, sub.name, sub.models, sub.frame, served)
    d = search.curves.per_text(sub.name, sub.models[served], search.ids)
    keep = np.isfinite(d) & np.isfinite(search.unit) & np.isfinite(num).all(axis=1) & np.isfinite(den).all(axis=(1, 2))
    num, den, unit = num[keep], den[keep], search.unit[keep]
    step = _solve(num.sum(axis=0), den.sum(axis=0))
    theta = np.array(served) + step
    w = bootstrap_weights(len(unit), replicates, rng)
    num_b, den_b = w @ num, np.einsum("rt,tij->rij", w, den)
    theta_b = np.array(served) + np.einsum("rij,rj->ri", np.linalg.pinv(den_b), num_b)
    cis = []
    for i in range(2):
        lo, hi = percentile_ci(theta_b[:, i], alpha)
        cis.append((min(lo, theta[i]) - abs(step[i]), max(hi, theta[i]) + abs(step[i])))
    half = np.array([max(abs(served[i] - lo), abs(hi - served[i])) for i, (lo, hi) in enumerate(cis)])
    c = den.sum(axis=0) / unit.sum()
    c_b = den_b / (w @ unit)[:, None, None]
    allowance = float(half @ np.abs(c) @ half)
    allowance_b = np.einsum("i,rij,j->r", half, np.abs(c_b), half)
    points = sorted(sub.models)
    curve = [
        float(np.nansum(search.curves.per_text(sub.name, sub.models[p], search.ids)[keep]) / unit.sum()) for p in points
    ]
    return FamilyFit(
        family=sub.family,
        a=Interval(value=float(theta[0]), lo=cis[0][0], hi=cis[0][1]),
        b=Interval(value=float(theta[1]), lo=cis[1][0], hi=cis[1][1]),
        resolution=GOLDEN ** (search.params.search_points - 1),
        curvature=float(c[0, 0]),
        points=[p[0] for p in points],
        points_b=[p[1] for p in points],
        curve=curve,
        confirm_a=served[0],
        confirm_b=served[1],
        **search.equality(sub.name, sub.models[served], sub.storage_model, keep, w, allowance, allowance_b),
    )
