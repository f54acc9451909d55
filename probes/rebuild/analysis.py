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
from pathlib import Path
from typing import Any

import numpy as np

from harness.backends.base import ScoreResult
from harness.evidence import Interval, ProbeEvidence
from harness.stats import bootstrap_weights, percentile_ci
from harness.suite import BUILT_ROLE, ModelSpec, Suite
from probes.base import Record
from probes.rebuild.params import RebuildParams
from probes.rebuild.result import FamilyFit, RebuildResult
from probes.rebuild.search import GOLDEN, golden_points, point, quadratic_minimum
from probes.rebuild.verdict import verdict_of
from probes.shared.align import align

STEERING_REPLICATES = 200  # the bootstrap that decides, during collection, whether to try the next family
NARROW = ("bfloat16", "float16")


@dataclass(frozen=True)
class Want:
    """A merge some subject's search needs served next."""

    subject: str
    family: str
    a: float
    dtype: str = "float32"  # the weights as written
    math: str = "float32"  # the arithmetic: float64 for the twin that measures float32's own rounding

    def recipe(self, dirs: list[str]) -> dict[str, Any]:
        """The mergekit recipe: ``a`` is the first parent's share (linear weight, slerp's t)."""
        first, second = dirs
        out: dict[str, Any] = {"dtype": self.math, "out_dtype": self.dtype}
        if self.family == "linear":
            models = [
                {"model": first, "parameters": {"weight": self.a}},
                {"model": second, "parameters": {"weight": round(1 - self.a, 6)}},
            ]
            return {"merge_method": "linear", "models": models, **out}
        return {
            "merge_method": "slerp",
            "base_model": second,
            "models": [{"model": second}, {"model": first}],
            "parameters": {"t": self.a},
            **out,
        }

    def model_name(self, backend: str) -> str:
        twin = "-float64-math" if self.math != "float32" else ""
        return f"rebuild-{backend}-{self.family}-{self.a:.6f}-{self.dtype}{twin}"


def storage_dtype(model: ModelSpec, fallback: ModelSpec) -> str:
    """The dtype a subject's weights are stored in (its config.json), else the first parent's."""
    for m in (model, fallback):
        config = Path(m.path or "") / "config.json"
        if m.path and config.is_file():
            try:
                cfg = json.loads(config.read_text())
            except (OSError, ValueError):
                continue
            dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "float32")
            return dtype if dtype in NARROW else "float32"
    return "float32"


def _twin_want(subject: str, family: str, a: float, storage: str) -> Want:
    """The rebuild that measures rounding at weight ``a``: written in the subject's storage dtype
    where narrower than float32; else the same float32 weights computed in float64, whose
    difference from the float32 rebuild is float32 arithmetic's own rounding (the subject's maker
    rounded too: measured on Rio-mini, 3.5e-11 of the parents' distance at 2e-6 from its weight)."""
    if storage != "float32":
        return Want(subject, family, a, storage)
    return Want(subject, family, a, "float32", "float64")


def _twin(recipe: dict[str, Any]) -> bool:
    return recipe.get("dtype") != "float32" or recipe.get("math", "float32") != "float32"


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
        self.curves = Curves(params, records, {} if memo is None else memo)
        ids = [set(self.curves.texts(p)) for p in parents]
        self.ids = sorted(set.intersection(*ids)) if ids else []
        self.unit = self.curves.per_text(parents[0], parents[1], self.ids) if self.ids else np.zeros(0)
        self.rebuilds = {
            m.name: json.loads(m.notes or "{}") for m in suite.models if m.role == BUILT_ROLE and m.name in records
        }

    def subjects(self) -> list[str]:
        return [m.name for m in self.suite.models if m.role in ("suspect", "control") and self.curves.texts(m.name)]

    def family(self, subject: str, family: str) -> Subject:
        available = {1.0: self.parents[0], 0.0: self.parents[1]}
        for name, recipe in self.rebuilds.items():
            if recipe.get("family") == family and not _twin(recipe):
                available.setdefault(float(recipe["a"]), name)
        # Only the points this subject's search asked for are read (other subjects' are not its curve).
        means = _MeanDistance(self, subject, available)
        asked, nxt = golden_points(means, self.params.search_points)
        used = sorted(a for a in available if a in (0.0, 1.0) or a in asked)
        confirm = refine = None
        if nxt is None:
            a_star, _ = quadratic_minimum(np.array(used), np.array([means[a] for a in used]))
            confirm = point(min(max(a_star, 0.0), 1.0))
        if confirm is not None and confirm in available:
            step, _, _ = self.step(subject, available, confirm, used)
            refine = point(min(max(confirm + step, 0.0), 1.0)) if np.isfinite(step) else confirm
        models = {a: available[a] for a in [*used, confirm, refine] if a is not None and a in available}
        storage = storage_dtype(self.suite.model(subject), self.suite.model(self.parents[0]))
        twin = _twin_want(subject, family, refine, storage) if refine is not None else None
        storage_model = next(
            (
                n
                for n, r in self.rebuilds.items()
                if twin is not None
                and (r.get("family"), float(r["a"]), r.get("dtype"), r.get("math", "float32"))
                == (family, twin.a, twin.dtype, twin.math)
            ),
            None,
        )
        xs = np.array(sorted(models))
        per_text = np.stack([self.curves.per_text(subject, models[a], self.ids) for a in xs])
        return Subject(subject, family, xs, per_text, self.unit, nxt, confirm, refine, storage, storage_model, models)

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
        """What each subject's search needs next: a golden-section point, then the rebuild at the
        minimiser (and in the subject's storage dtype), then the next family when this one did
        not rebuild the subject but came nearer than the parents are to each other."""
        wants: list[Want] = []
        for s in self.subjects():
            for family in self.params.families:
                sub = self.family(s, family)
                if sub.next_point is not None:
                    wants.append(Want(s, family, sub.next_point))
                    break
                assert sub.confirm is not None
                if sub.confirm not in sub.models:
                    wants.append(Want(s, family, sub.confirm))
                    break
                assert sub.refine is not None
                if sub.refine not in sub.models:
                    wants.append(Want(s, family, sub.refine))
                    break
                if sub.storage_model is None and 0 < sub.refine < 1:
                    wants.append(_twin_want(s, family, sub.refine, sub.storage))
                    break
                fit = self.fit(sub, rng, STEERING_REPLICATES)
                if verdict_of(fit, self.suite.stats.alpha) != "near":
                    break
        return wants

    def fit(self, sub: Subject, rng: np.random.Generator, replicates: int) -> FamilyFit:
        """The weight with its bootstrap CI, and the equality test at the refined rebuild."""
        alpha = self.suite.stats.alpha
        served = sub.served
        assert served is not None
        keep = np.isfinite(sub.per_text).all(axis=0) & np.isfinite(sub.unit)
        y, unit = sub.per_text[:, keep], sub.unit[keep]
        curve = y.sum(axis=1) / unit.sum()
        at = int(np.flatnonzero(sub.xs == served)[0])
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
        curves_b = (w @ y.T) / (w @ unit)[:, None]  # (replicates, points)
        d_b = curves_b[:, at]
        s = self.subject_noise(sub.name, keep)
        storage = 0.0
        if sub.storage_model is not None:
            sd = self.curves.per_text(sub.models[served], sub.storage_model, self.ids)[keep]
            storage = float(np.nansum(sd) / unit.sum())
        tol = s + storage + c * half**2
        p = float(np.mean(d_b <= s + storage + c_b * half**2))
        ends = [i for i, a in enumerate(sub.xs) if a in (0.0, 1.0)]
        nearer = bool(np.mean(np.all(d_b[:, None] < curves_b[:, ends], axis=1)) >= 1 - alpha)
        dlo, dhi = percentile_ci(d_b, alpha)
        return FamilyFit(
            family=sub.family,
            a=Interval(value=a_hat, lo=lo, hi=hi),
            resolution=GOLDEN ** (self.params.search_points - 1),
            curvature=c,
            points=[float(a) for a in sub.xs],
            curve=[float(v) for v in curve],
            confirm_a=served,
            distance=Interval(value=float(curve[at]), lo=dlo, hi=dhi),
            tolerance=tol,
            repeat_noise=s,
            storage_floor=storage,
            p_equal=p,
            nearer_than_parents=nearer,
        )

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
        if len(parents) != 2 or not all(p in records for p in parents):
            ev.status = "skipped"
            ev.reason = "the two parents have no answers in this run"
            return ev
        search = Search(self.suite, self.params, records, parents)
        alpha = self.suite.stats.alpha
        for s in search.subjects():
            fits = []
            for family in self.params.families:
                sub = search.family(s, family)
                if sub.served is None:
                    continue
                fit = search.fit(sub, self.rng, self.suite.stats.bootstrap)
                fit.recipe = Want(s, family, fit.confirm_a).recipe(dirs)
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
            ).model_dump(mode="json")
        ev.summary = "; ".join(f"{m}: {r['verdict']}" for m, r in ev.per_model.items())
        return ev
