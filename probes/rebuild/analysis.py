"""The rebuild chain: per subject and merge family, the distance curve over the served merges,
its minimiser with a bootstrap CI, and the equality test at the rebuild built there.

Distances are per text: the squared difference of the two models' log-probs summed over the
support (the whole vocabulary in full mode, its compact estimate, or the tokens both return in
top-k mode) and averaged over positions; a curve is a ratio of sums over texts, in units of the
parents' own distance on the same texts, so the bootstrap resamples texts for both.

Equality at the best rebuild cannot mean a distance of zero: the minimiser is known to within its
CI, so a plain merge at a weight inside the CI may sit ``curvature x half-width^2`` away, and a
server that does not repeat itself exactly (batching, reduced precision) adds its repeat noise;
a subject stored in a narrower dtype than the float32 rebuild adds that rounding (measured by
building the same rebuild in that dtype). Their sum is the tolerance; "rebuilt" means the
bootstrap cannot put the distance above it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.backends.base import ScoreResult
from harness.evidence import Interval, ProbeEvidence
from harness.stats import bootstrap_weights, percentile_ci
from harness.suite import BUILT_ROLE, Suite
from probes.base import Record
from probes.rebuild.params import RebuildParams
from probes.rebuild.plane import Plane, free_weights, plane_fit, plane_search
from probes.rebuild.recipes import (
    KINKED,
    ON_CURVE,
    Want,
    family_labels,
    is_twin,
    split_label,
    storage_dtype,
    twin_model,
    twin_want,
    untried_reason,
)
from probes.rebuild.result import FamilyFit, RebuildResult
from probes.rebuild.search import GOLDEN, golden_points, kink_minimum, point, quadratic_minimum
from probes.rebuild.verdict import verdict_of
from probes.shared.align import align

STEERING_REPLICATES = 200  # the bootstrap that decides, during collection, whether to try the next family


@dataclass
class Curves:
    """Every model's per-text distance to every subject, computed once (collection asks after each
    round; the earlier rounds' distances do not change)."""

    params: RebuildParams
    records: dict[str, list[Record]]
    memo: dict[tuple, Any] = field(default_factory=dict)

    def texts(self, model: str, replicate: int = 0) -> dict[str, Record]:
        return {r.meta["id"]: r for r in self.records.get(model, []) if int(r.meta.get("replicate", 0)) == replicate}

    def per_text(self, x: str, y: str, ids: list[str], y_replicate: int = 0) -> np.ndarray:
        key = (x, y, y_replicate)
        if key not in self.memo:
            xs, ys = self.texts(x), self.texts(y, y_replicate)
            k = self.params.top_k
            out = {}
            for i in set(xs) & set(ys):
                lp, w = align([xs[i].result_as(ScoreResult), ys[i].result_as(ScoreResult)], self.params.mode, k)
                diff = (lp[..., 0] - lp[..., 1]) ** 2
                out[i] = float((w * diff).sum() / max(lp.shape[0], 1))
            self.memo[key] = out
        got: Any = self.memo[key]
        return np.array([got.get(i, np.nan) for i in ids])

    def step_terms(self, subject: str, at: str, other: str, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per text, the Gauss-Newton sums that move a rebuild's weight toward the subject: with
        e = the subject's log-probs minus the rebuild's (at weight a) and g = the change of the
        rebuild's log-probs per unit of weight (a finite difference to the ``other`` rebuild),
        sum(w e g) and sum(w g g), per position. Their ratio of sums is the least-squares step in
        a: exact to second order in the step, where the distance curve's parabola is biased by its
        asymmetry (measured on Rio-mini: 0.59991 against 0.60000)."""
        key = ("step", subject, at, other)
        if key not in self.memo:
            s, m, o = self.texts(subject), self.texts(at), self.texts(other)
            out = {}
            for i in set(s) & set(m) & set(o):
                res = [s[i].result_as(ScoreResult), m[i].result_as(ScoreResult), o[i].result_as(ScoreResult)]
                lp, w = align(res, self.params.mode, self.params.top_k)
                e, g = lp[..., 0] - lp[..., 1], lp[..., 2] - lp[..., 1]
                n = max(lp.shape[0], 1)  # per position, as the distance is
                out[i] = (float((w * e * g).sum() / n), float((w * g * g).sum() / n))
            self.memo[key] = out
        got: Any = self.memo[key]
        num = np.array([got.get(i, (np.nan, np.nan))[0] for i in ids])
        den = np.array([got.get(i, (np.nan, np.nan))[1] for i in ids])
        return num, den

    def plane_terms(
        self, subject: str, at: str, frame: tuple[str, ...], ids: list[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per text, the Gauss-Newton sums in k weights: e = the subject's log-probs minus the
        rebuild's at ``at``, g_i = the change from the frame's first rebuild to its (i + 1)-th (one
        weight moved each); sum(w e g_i) (texts, k) and sum(w g_i g_j) (texts, k, k), per position."""
        key = ("plane", subject, at, frame)
        k = len(frame) - 1
        if key not in self.memo:
            models = [self.texts(m) for m in (subject, at, *frame)]
            out = {}
            for i in set.intersection(*(set(m) for m in models)):
                lp, w = align([m[i].result_as(ScoreResult) for m in models], self.params.mode, self.params.top_k)
                e = lp[..., 0] - lp[..., 1]
                g = np.stack([lp[..., 3 + j] - lp[..., 2] for j in range(k)])  # (k, P, K)
                n = max(lp.shape[0], 1)
                num = np.einsum("pk,ipk,pk->i", w, g, e) / n
                den = np.einsum("pk,ipk,jpk->ij", w, g, g) / n
                out[i] = (num, den)
            self.memo[key] = out
        got: Any = self.memo[key]
        nan1, nan2 = np.full(k, np.nan), np.full((k, k), np.nan)
        num = np.stack([got[i][0] if i in got else nan1 for i in ids])
        den = np.stack([got[i][1] if i in got else nan2 for i in ids])
        return num, den


class _MeanDistance(Mapping[float, float]):
    """A subject's mean distance at each served point, computed when the search reads it."""

    def __init__(self, search: Search, subject: str, models: dict[float, str]):
        self.search, self.subject, self.models = search, subject, models

    def __getitem__(self, a: float) -> float:
        return self.search.mean(self.subject, self.models[a])

    def __iter__(self) -> Iterator[float]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)


@dataclass
class Subject:
    """One subject's curves for one family: points (a), per-text distances (points x texts)."""

    name: str
    family: str
    xs: np.ndarray
    per_text: np.ndarray
    unit: np.ndarray
    next_point: float | None  # the golden section's next point; None once it has every one
    confirm: float | None  # the parabola's minimiser over the search's points, served first
    refine: float | None  # one Gauss-Newton step from it, served for the equality test
    storage: str
    storage_model: str | None  # the refined rebuild in the subject's storage dtype, if narrower
    models: dict[float, str]

    @property
    def served(self) -> float | None:
        """The rebuild the equality test compares: the refined one, once served."""
        return self.refine if self.refine in self.models else None

    def wanted(self) -> Want | None:
        """The rebuild this search needs next: a golden-section point, the parabola's minimiser,
        the Gauss-Newton step from it, and that rebuild's rounding twin; None when it has all."""
        for a in (self.next_point, self.confirm, self.refine):
            if a is not None and a not in self.models:
                return Want(self.name, self.family, a)
        assert self.refine is not None
        at_parent = split_label(self.family)[0] in ON_CURVE and self.refine in (0.0, 1.0)
        if self.storage_model is None and not at_parent:
            return twin_want(self.name, self.family, self.refine, self.storage)
        return None


class Search:
    """The search state of every subject, replayed from the records (collection and analysis)."""

    def __init__(
        self,
        suite: Suite,
        params: RebuildParams,
        records: dict[str, list[Record]],
        parents: list[str],
        memo: dict | None = None,
    ):
        self.suite, self.params, self.records, self.parents = suite, params, records, parents
        self.base = params.base
        self.curves = Curves(params, records, {} if memo is None else memo)
        ids = [set(self.curves.texts(p)) for p in parents]
        self.ids = sorted(set.intersection(*ids)) if ids else []
        # The unit: the parents' own distance (two parents), or its mean over every pair.
        pairs = [(x, y) for i, x in enumerate(parents) for y in parents[i + 1 :]]
        self.unit = (
            np.mean([self.curves.per_text(x, y, self.ids) for x, y in pairs], axis=0) if self.ids else np.zeros(0)
        )
        self.rebuilds = {
            m.name: json.loads(m.notes or "{}") for m in suite.models if m.role == BUILT_ROLE and m.name in records
        }

    def subjects(self) -> list[str]:
        return [m.name for m in self.suite.models if m.role in ("suspect", "control") and self.curves.texts(m.name)]

    def family(self, subject: str, family: str) -> Subject | Plane:
        """A subject's search in one family, replayed: the points served, and what it needs next."""
        if family == "task_arithmetic" or len(self.parents) > 2:
            return plane_search(self, subject, family)
        method, _ = split_label(family)
        available = {1.0: self.parents[0], 0.0: self.parents[1]} if method in ON_CURVE else {}
        for name, recipe in self.rebuilds.items():
            if recipe.get("family") == family and not is_twin(recipe):
                available.setdefault(float(recipe["a"]), name)
        # Only the points this subject's search asked for are read (other subjects' are not its curve).
        means = _MeanDistance(self, subject, available)
        asked, nxt = golden_points(means, self.params.search_points)
        used = sorted(a for a in available if a in (0.0, 1.0) or a in asked)
        confirm = refine = None
        kinked = method in KINKED
        if nxt is None:
            xs_used, ys_used = np.array(used), np.array([means[a] for a in used])
            a_star = kink_minimum(xs_used, ys_used)[0][0] if kinked else quadratic_minimum(xs_used, ys_used)[0]
            confirm = point(min(max(a_star, 0.0), 1.0))
        if confirm is not None and confirm in available and kinked:
            pts = sorted({*used, confirm})
            refine = point(kink_minimum(np.array(pts), np.array([means[a] for a in pts]))[0][0])
        elif confirm is not None and confirm in available:
            step, _, _ = self.step(subject, available, confirm, used)
            refine = point(min(max(confirm + step, 0.0), 1.0)) if np.isfinite(step) else confirm
        models = {a: available[a] for a in [*used, confirm, refine] if a is not None and a in available}
        storage = self.storage(subject)
        twin = twin_want(subject, family, refine, storage) if refine is not None else None
        xs = np.array(sorted(models))
        rows = [self.curves.per_text(subject, models[a], self.ids) for a in xs]
        per_text = np.array(rows).reshape(len(xs), len(self.ids))
        return Subject(
            subject,
            family,
            xs,
            per_text,
            self.unit,
            nxt,
            confirm,
            refine,
            storage,
            twin_model(self.rebuilds, twin),
            models,
        )

    def storage(self, subject: str) -> str:
        return storage_dtype(self.suite.model(subject), self.suite.model(self.parents[0]))

    def step(
        self, subject: str, models: dict[float, str], at: float, others: list[float]
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """The Gauss-Newton step from the rebuild at ``at`` (the finite difference taken to the
        nearest of ``others``), and its per-text terms scaled to units of a. Collection and analysis
        pass the same ``others``, so the step, and the rebuild it asks for, do not drift."""
        near = min((a for a in others if a != at and a in models), key=lambda a: abs(a - at))
        num, den = self.curves.step_terms(subject, models[at], models[near], self.ids)
        h = near - at
        num, den = num / h, den / h**2  # g per unit of a
        ok = np.isfinite(num) & np.isfinite(den)
        return (float(num[ok].sum() / den[ok].sum()) if den[ok].sum() > 0 else float("nan")), num, den

    def mean(self, subject: str, model: str) -> float:
        d = self.curves.per_text(subject, model, self.ids)
        return float(np.nansum(d) / self.unit.sum())

    def next_wants(self, rng: np.random.Generator) -> list[Want]:
        """What each subject's search needs next: a search point, then the rebuild at the
        minimiser (and its rounding twin), then the next family while none has rebuilt the subject
        and one came nearer than the parents (each density is a hypothesis of its own: a ties merge
        at 0.8 may be "differs" at 0.5)."""
        wants: list[Want] = []
        for s in self.subjects():
            near = False  # some family so far came nearer than the parents: the next is worth trying
            for family in self.families():
                sub = self.family(s, family)
                want = sub.wanted()
                if want is not None:
                    wants.append(want)
                    break
                verdict = verdict_of(self.fit(sub, rng, STEERING_REPLICATES), self.suite.stats.alpha)
                near = near or verdict == "near"
                if verdict in ("rebuilt", "copy") or not near:
                    break
        return wants

    def families(self) -> list[str]:
        """The families searched: those needing the base only when the probe has one."""
        return [f for f in family_labels(self.params) if untried_reason(f, self.base, len(self.parents)) is None]

    def fit(self, sub: Subject | Plane, rng: np.random.Generator, replicates: int) -> FamilyFit:
        """The weight with its bootstrap CI, and the equality test at the refined rebuild."""
        if isinstance(sub, Plane):
            return plane_fit(self, sub, rng, replicates)
        alpha = self.suite.stats.alpha
        served = sub.served
        assert served is not None
        keep = np.isfinite(sub.per_text).all(axis=0) & np.isfinite(sub.unit)
        y, unit = sub.per_text[:, keep], sub.unit[keep]
        curve = y.sum(axis=1) / unit.sum()
        if split_label(sub.family)[0] in KINKED:
            return self.kink_fit(sub, keep, rng, replicates)
        # The weight: one more Gauss-Newton step from the rebuild served. Converging quadratically,
        # its error is far below the step itself, which widens the CI (the bootstrap over texts
        # cannot see an error every text shares).
        step, num, den = self.step(sub.name, sub.models, served, list(sub.models))
        num, den = num[keep], den[keep]
        ok = np.isfinite(num) & np.isfinite(den)
        num, den = np.where(ok, num, 0.0), np.where(ok, den, 0.0)
        step = step if np.isfinite(step) else 0.0
        a_hat = served + step
        w = bootstrap_weights(len(unit), replicates, rng)
        with np.errstate(divide="ignore", invalid="ignore"):
            a_b = served + (w @ num) / (w @ den)
        lo, hi = percentile_ci(a_b, alpha)
        lo, hi = min(lo, a_hat) - abs(step), max(hi, a_hat) + abs(step)
        # Curvature of the distance in a (Gauss-Newton), in parents' distances per unit a^2.
        c, c_b = float(den.sum() / unit.sum()), (w @ den) / (w @ unit)
        # A plain merge at any weight in the CI is at most this far (in a) from the rebuild served.
        half = max(abs(served - lo), abs(hi - served)) if np.isfinite(lo) else float("nan")
        return FamilyFit(
            family=sub.family,
            a=Interval(value=a_hat, lo=lo, hi=hi),
            resolution=GOLDEN ** (self.params.search_points - 1),
            curvature=c,
            points=[float(a) for a in sub.xs],
            curve=[float(v) for v in curve],
            confirm_a=served,
            **self.equality(sub.name, sub.models[served], sub.storage_model, keep, w, c * half**2, c_b * half**2),
        )

    def kink_fit(self, sub: Subject, keep: np.ndarray, rng: np.random.Generator, replicates: int) -> FamilyFit:
        """ties and dare_ties: the weight from the V through the best points (one more V step, from
        every rebuild served, the tested one included), its CI by bootstrap over texts widened by
        that step, and what the CI excuses: the V's slope x the half-width."""
        served = sub.served
        assert served is not None
        y, unit = sub.per_text[:, keep], sub.unit[keep]
        curve = y.sum(axis=1) / unit.sum()
        a_hat, slope = (float(v[0]) for v in kink_minimum(sub.xs, curve))
        w = bootstrap_weights(len(unit), replicates, rng)
        curves_b = (w @ y.T) / (w @ unit)[:, None]
        a_b, slope_b = kink_minimum(sub.xs, curves_b)
        lo, hi = percentile_ci(a_b, self.suite.stats.alpha)
        step = abs(a_hat - served)
        lo, hi = min(lo, a_hat) - step, max(hi, a_hat) + step
        if not slope > 0:  # no V through the best points (a minimum at the search's edge): the bracket
            best = int(np.argmin(curve))
            lo = float(sub.xs[best - 1]) if best > 0 else 0.0
            hi = float(sub.xs[best + 1]) if best + 1 < len(sub.xs) else 1.0
        # Were the subject this family's merge, its weight would be within d / s of the rebuild
        # served (d: the distance there; s: the shallower of the V's arms next to it): below the
        # golden section's scale, the flips are few and the V's arms uneven.
        at = int(np.flatnonzero(sub.xs == served)[0])
        arms = [(curve[n] - curve[at]) / abs(sub.xs[n] - served) for n in (at - 1, at + 1) if 0 <= n < len(sub.xs)]
        shallow = min((s for s in arms if s > 0), default=0.0)
        reach = curve[at] / shallow if shallow > 0 else 0.0
        # What the CI excuses is taken before that widening, and the CI is widened only where the
        # equality holds: the reach assumes it (a subject 0.005 from every ties merge would excuse
        # itself, and a subject no ties merge reproduces would get a CI as wide as its distance).
        half = max(abs(served - lo), abs(hi - served))
        equality = self.equality(sub.name, sub.models[served], sub.storage_model, keep, w, slope * half, slope_b * half)
        if equality["p_equal"] > self.suite.stats.alpha:
            lo, hi = min(lo, served - reach), max(hi, served + reach)
        return FamilyFit(
            family=sub.family,
            a=Interval(value=a_hat, lo=lo, hi=hi),
            resolution=GOLDEN ** (self.params.search_points - 1),
            curvature=0.0,
            slope=slope,
            points=[float(a) for a in sub.xs],
            curve=[float(v) for v in curve],
            confirm_a=served,
            **equality,
        )

    def equality(
        self,
        subject: str,
        served: str,
        storage_model: str | None,
        keep: np.ndarray,
        w: np.ndarray,
        allowance: float,
        allowance_b: np.ndarray,
    ) -> dict[str, Any]:
        """The equality test at the rebuild ``served``: its distance to the subject (bootstrap
        ``w`` over the texts kept), against repeat noise + rounding (the rebuild against its twin
        ``storage_model``) + ``allowance`` (what the weight's CI excuses; per replicate
        ``allowance_b``); and whether it is nearer than both parents."""
        alpha = self.suite.stats.alpha
        unit = self.unit[keep]
        d = self.curves.per_text(subject, served, self.ids)[keep]
        d_b = (w @ d) / (w @ unit)
        parents = np.stack([self.curves.per_text(subject, p, self.ids)[keep] for p in self.parents])
        parents_b = (w @ parents.T) / (w @ unit)[:, None]
        s = self.subject_noise(subject, keep)
        storage = 0.0
        if storage_model is not None:
            sd = self.curves.per_text(served, storage_model, self.ids)[keep]
            storage = float(np.nansum(sd) / unit.sum())
        dlo, dhi = percentile_ci(d_b, alpha)
        return {
            "distance": Interval(value=float(d.sum() / unit.sum()), lo=dlo, hi=dhi),
            "tolerance": s + storage + allowance,
            "repeat_noise": s,
            "storage_floor": storage,
            "p_equal": float(np.mean(d_b <= s + storage + allowance_b)),
            "nearer_than_parents": bool(np.mean(np.all(d_b[:, None] < parents_b, axis=1)) >= 1 - alpha),
        }

    def subject_noise(self, subject: str, keep: np.ndarray) -> float:
        """The subject against itself, scored twice (repeat noise), over the texts repeated."""
        ids = [i for i, k in zip(self.ids, keep) if k]
        rep = self.curves.per_text(subject, subject, ids, y_replicate=1)
        have = np.isfinite(rep)
        if not have.any():
            return 0.0
        unit = self.unit[keep][have]
        return float(rep[have].sum() / unit.sum())


def next_builds(
    suite: Suite, params: RebuildParams, records: dict[str, list[Record]], parents: list[str], memo: dict
) -> list[Want]:
    """The merges collection should build next (empty: every search is done). ``memo`` keeps the
    distances between rounds: a scored model's answers do not change within a collection."""
    if not all(p in records for p in parents):
        return []
    return Search(suite, params, records, parents, memo).next_wants(np.random.default_rng(0))


class RebuildAnalysis:
    """One analysis of the rebuild probe's records into ``ev``: ``parents`` are the two merged
    (the first has weight a), ``dirs`` their weights' folders (the recipes name them)."""

    def __init__(
        self,
        params: RebuildParams,
        suite: Suite,
        rng: np.random.Generator,
        ev: ProbeEvidence,
        parents: list[str],
        dirs: list[str],
    ):
        self.params, self.suite, self.rng, self.ev, self.parents, self.dirs = params, suite, rng, ev, parents, dirs

    def run(self, records: dict[str, list[Record]]) -> ProbeEvidence:
        parents, ev, dirs = self.parents, self.ev, self.dirs
        if len(parents) < 2 or not all(p in records for p in parents):
            ev.status = "skipped"
            ev.reason = "the parents have no answers in this run"
            return ev
        search = Search(self.suite, self.params, records, parents)
        alpha = self.suite.stats.alpha
        untried = [
            f"{f}: {reason}"
            for f in family_labels(self.params)
            if (reason := untried_reason(f, self.params.base, len(parents))) is not None
        ]
        for s in search.subjects():
            fits = []
            for family in search.families():
                sub = search.family(s, family)
                if sub.served is None:
                    continue
                fit = search.fit(sub, self.rng, self.suite.stats.bootstrap)
                free = (fit.confirm_weights or [fit.confirm_a])[: max(1, free_weights(family, len(parents)))]
                fit.recipe = Want(s, family, free[0], tuple(free[1:])).recipe(dirs, self.params.base)
                fits.append(fit)
            if not fits:
                ev.per_model[s] = RebuildResult(
                    verdict="not_rebuilt", reason="the search has not finished (a partial run?)", parents=parents
                ).model_dump(mode="json")
                continue
            best = min(fits, key=lambda f: f.distance.value if f.distance.value is not None else np.inf)
            verdict = verdict_of(best, alpha)
            used = {m for f in fits for m in search.family(s, f.family).models.values()} - set(parents)
            ev.per_model[s] = RebuildResult(
                verdict=verdict,
                parents=parents,
                best=best.family,
                fits=fits,
                texts=len(search.ids),
                rebuilds=len(used),
                untried=untried if verdict in ("near", "differs") else [],
            ).model_dump(mode="json")
        ev.summary = "; ".join(f"{m}: {r['verdict']}" for m, r in ev.per_model.items())
        return ev
