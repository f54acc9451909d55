"""Merges with several free weights, found by Gauss-Newton: task arithmetic (one weight per task
vector), and the linear merge of three or more parents (weights that sum to 1).

A golden section per weight would cost about 9 rebuilds each and would not see how the weights
trade off. These merges are linear in their weights (base + sum w_i (P_i - base); a linear merge
is the same with the last parent as base), and the log-probs are nearly linear over a tenth of a
weight, so the search measures the Jacobian once, by finite differences, and steps:

* the frame: a rebuild at the start and one with each free weight moved by ``FD_STEP``. Task
  arithmetic of two parents starts at the linear family's tested weight (a, 1 - a), which is the
  task-arithmetic merge with a + b = 1; a linear merge of N parents at equal weights;
* Gauss-Newton steps with that Jacobian on the signed log-prob differences, at least two and at
  most ``MAX_STEPS``, until a step moves no weight by more than ``CONVERGED``; the last is
  tested for equality, with its rounding twin.

With k free weights the search is k + 1 + (2 to 4) + 1 rebuilds (a golden section per weight would
be about 9k). The weights and their CIs come from one more step, as in the one-weight families.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from harness.evidence import Interval
from harness.stats import bootstrap_weights, percentile_ci
from probes.rebuild.recipes import Want, is_twin, twin_model, twin_want
from probes.rebuild.result import FamilyFit
from probes.rebuild.search import GOLDEN, point


class Search(Protocol):
    """What this search reads of ``analysis.Search`` (a protocol, so the two modules do not import
    each other): the records' curves, the texts and the unit, the parents and rebuilds served, the
    families searched, and the equality test."""

    suite: Any
    params: Any
    parents: list[str]
    rebuilds: dict[str, dict]
    curves: Any
    ids: list[str]
    unit: np.ndarray

    def families(self) -> list[str]: ...

    def family(self, subject: str, family: str) -> Any: ...

    def storage(self, subject: str) -> str: ...

    def equality(
        self,
        subject: str,
        served: str,
        storage_model: str | None,
        keep: np.ndarray,
        w: np.ndarray,
        allowance: float,
        allowance_b: np.ndarray,
    ) -> dict[str, Any]: ...


FD_STEP = 0.1  # each weight's finite-difference step: the scale over which log-probs are near linear
LIMITS = (-1.0, 2.0)  # a step is clamped here: merge weights beyond these are not plausible
MAX_STEPS = 4
CONVERGED = 1e-3  # a step this small in every weight: the next would move the distance by ~1e-6 of it

Point = tuple[float, ...]


def free_weights(family: str, parents: int) -> int:
    """How many weights the search moves: one per parent for task arithmetic; one fewer for a
    linear merge (its weights sum to 1)."""
    return parents if family == "task_arithmetic" else parents - 1


def plane_builds(family: str, parents: int) -> int:
    """The most rebuilds the search makes: the frame, the steps, the twin."""
    return free_weights(family, parents) + 1 + MAX_STEPS + 1


@dataclass
class Plane:
    """One subject's search in several weights: the rebuilds served, by their free weights."""

    name: str
    family: str
    frame: list[Point]  # the start, and each free weight moved by FD_STEP
    models: dict[Point, str]
    refine: Point | None  # the rebuild tested for equality, once the steps have converged
    next_point: Point | None  # the search's next rebuild; None once every one is served
    storage: str
    storage_model: str | None

    @property
    def served(self) -> Point | None:
        return self.refine if self.refine in self.models else None

    def wanted(self) -> Want | None:
        if self.next_point is not None:
            return Want(self.name, self.family, self.next_point[0], self.next_point[1:])
        assert self.refine is not None
        if self.storage_model is None:
            return twin_want(self.name, self.family, self.refine[0], self.storage, self.refine[1:])
        return None


def _clamp(x: float) -> float:
    return point(min(max(x, LIMITS[0]), LIMITS[1]))


def _start(search: Search, subject: str, family: str) -> Point:
    n = len(search.parents)
    if family == "task_arithmetic" and "linear" in search.families():
        linear = search.family(subject, "linear")
        if isinstance(linear, Plane) and linear.refine is not None:  # N parents: (w_1 .. w_N-1) -> all N
            return (*linear.refine, point(1 - sum(linear.refine)))
        if not isinstance(linear, Plane) and linear.refine is not None:
            return (linear.refine, point(1 - linear.refine))
    return tuple(point(1 / n) for _ in range(free_weights(family, n)))


def plane_search(search: Search, subject: str, family: str) -> Plane:
    """The search replayed from the records: which rebuilds are served, and which comes next."""
    available: dict[Point, str] = {}
    for name, recipe in search.rebuilds.items():
        if recipe.get("family") == family and not is_twin(recipe):
            available.setdefault((float(recipe["a"]), *map(float, recipe.get("more") or ())), name)
    p0 = _start(search, subject, family)
    frame = [p0] + [tuple(point(x + FD_STEP) if j == i else x for j, x in enumerate(p0)) for i in range(len(p0))]
    nxt = next((p for p in frame if p not in available), None)
    path: list[Point] = []
    if nxt is None:
        at = p0
        for i in range(MAX_STEPS):
            new = _move(search, subject, available, frame, at)
            path.append(new)
            if new not in available:
                nxt = new
                break
            if i >= 1 and max(abs(x - y) for x, y in zip(new, at)) < CONVERGED:
                break
            at = new
    refine = path[-1] if path else None
    storage = search.storage(subject)
    twin = twin_want(subject, family, refine[0], storage, refine[1:]) if refine is not None else None
    models = {p: available[p] for p in [*frame, *path] if p in available}
    return Plane(subject, family, frame, models, refine, nxt, storage, twin_model(search.rebuilds, twin))


def _terms(
    search: Search, subject: str, models: dict[Point, str], frame: list[Point], at: Point
) -> tuple[np.ndarray, np.ndarray]:
    """Per text, the Gauss-Newton sums (texts, k) and (texts, k, k) at ``at``, in units of weight."""
    names = tuple(models[p] for p in frame)
    num, den = search.curves.plane_terms(subject, models[at], names, search.ids)
    h = np.array([frame[i + 1][i] - frame[0][i] for i in range(len(frame) - 1)])
    return num / h, den / np.outer(h, h)


def _solve(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """The least-squares step from summed terms (the pseudo-inverse: a flat direction moves 0)."""
    return np.linalg.pinv(den) @ num


def _move(search: Search, subject: str, models: dict[Point, str], frame: list[Point], at: Point) -> Point:
    num, den = _terms(search, subject, models, frame, at)
    ok = np.isfinite(num).all(axis=1) & np.isfinite(den).all(axis=(1, 2))
    step = _solve(num[ok].sum(axis=0), den[ok].sum(axis=0)) if ok.any() else np.zeros(len(at))
    return tuple(_clamp(x + s) for x, s in zip(at, step))


def plane_fit(search: Search, sub: Plane, rng: np.random.Generator, replicates: int) -> FamilyFit:
    """The weights with their bootstrap CIs (one more step from the rebuild tested, widened by
    it), and the equality test there; the weight error the CIs excuse is the Gauss-Newton
    curvature's quadratic form over their half-widths. A linear merge's last weight is 1 minus
    the others, in every replicate."""
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
    k = len(served)
    cis = []
    for i in range(k):
        lo, hi = percentile_ci(theta_b[:, i], alpha)
        cis.append((min(lo, theta[i]) - abs(step[i]), max(hi, theta[i]) + abs(step[i])))
    half = np.array([max(abs(served[i] - lo), abs(hi - served[i])) for i, (lo, hi) in enumerate(cis)])
    c = den.sum(axis=0) / unit.sum()
    c_b = den_b / (w @ unit)[:, None, None]
    allowance = float(half @ np.abs(c) @ half)
    allowance_b = np.einsum("i,rij,j->r", half, np.abs(c_b), half)
    weights = [Interval(value=float(theta[i]), lo=cis[i][0], hi=cis[i][1]) for i in range(k)]
    tested = [float(x) for x in served]
    if k < len(search.parents):  # a linear merge: the last parent's weight completes the sum
        last_b = 1 - theta_b.sum(axis=1)
        lo, hi = percentile_ci(last_b, alpha)
        last, moved = 1 - float(theta.sum()), float(np.abs(step).sum())
        weights.append(Interval(value=last, lo=min(lo, last) - moved, hi=max(hi, last) + moved))
        tested.append(point(1 - sum(served)))
    points = sorted(sub.models)
    per_text = [search.curves.per_text(sub.name, sub.models[p], search.ids)[keep] for p in points]
    return FamilyFit(
        family=sub.family,
        a=weights[0],
        weights=weights,
        resolution=GOLDEN ** (search.params.search_points - 1),
        curvature=float(c[0, 0]),
        points=[p[0] for p in points],
        curve=[float(np.nansum(x) / unit.sum()) for x in per_text],
        confirm_a=served[0],
        confirm_weights=tested,
        **search.equality(sub.name, sub.models[served], sub.storage_model, keep, w, allowance, allowance_b),
    )
