"""The weights probe's analysis: one object holding the suite, the parameters, the random
generator and the evidence it fills.

The chain (:meth:`WeightsAnalysis.run`): the subjects (suspects and controls) and the reference
(the base, or a parent), the tensors every checkpoint holds alike (:func:`match_tensors`), one
journaled pass over them (``stream.py``), tensors with non-finite values left out
(:func:`drop_nonfinite`), per subject the fits, pooled weights and their CIs, summaries and
family evidence (:meth:`~WeightsAnalysis.subject`, ``estimates.py``), then the null each cos fit
must beat, the verdict and the family's name (:meth:`~WeightsAnalysis.calibrate`, ``verdict.py``).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from harness.cache import default_cache_dir
from harness.errors import InputError
from harness.evidence import Interval, ProbeEvidence
from harness.suite import Suite
from probes.weights import estimates as an
from probes.weights import render
from probes.weights.artifacts import artifacts
from probes.weights.checkpoint import Checkpoint, Tensor
from probes.weights.params import WeightsParams
from probes.weights.result import WeightsResult
from probes.weights.stream import FORMAT, Sample, TensorStats, bytes_read, stream
from probes.weights.verdict import SIBLING_TOWARD, decide, family_name


def sample_of(params: WeightsParams, seed: int) -> Sample | None:
    """The sampled mode's draw (``params.sample`` of each tensor, seeded), or None: read everything."""
    return Sample(params.sample, seed) if params.sample is not None else None


class WeightsAnalysis:
    """One analysis of the checkpoints into ``ev``."""

    def __init__(self, params: WeightsParams, suite: Suite, rng: np.random.Generator, ev: ProbeEvidence):
        self.params = params
        self.suite = suite
        self.rng = rng
        self.ev = ev

    def run(self, opened: dict[str, Checkpoint], dirs: dict[str, Path]) -> ProbeEvidence:
        """``opened``: every model's checkpoint (and the base's, as "base"), validated at pre-flight;
        ``dirs``: each model's checkpoint directory."""
        ev, suite = self.ev, self.suite
        parents = [m.name for m in suite.by_role("parent")]
        seen: dict[Path, str] = {}
        subjects: list[str] = []
        for m in suite.models:
            d = dirs[m.name]
            if m.role == "parent":
                continue
            if m.role == "candidate":  # the logit probe selects from candidates; here parents are given
                ev.notes.append(f"{m.name}: a candidate, not a known parent: the weights probe does not fit it")
                continue
            if d.resolve() in seen:
                ev.notes.append(f"{m.name}: same checkpoint as {seen[d.resolve()]}, analysed once")
                continue
            seen[d.resolve()] = m.name
            subjects.append(m.name)
        ckpt = {m.name: opened[m.name] for m in suite.models}
        base_parent = None
        if self.params.base:
            base = Path(self.params.base).resolve()
            base_parent = next((p for p in parents if dirs[p].resolve() == base), None)
        if self.params.base and base_parent is None:
            ref_name, ref = "base", opened["base"]
            fitted = parents
        else:
            ref_name = self.params.reference or base_parent or parents[-1]
            ref = ckpt[ref_name]
            fitted = [p for p in parents if p != ref_name]
        order = [ref] + [ckpt[p] for p in fitted] + [ckpt[s] for s in subjects]
        work, unmatched = match_tensors(order, [ref_name, *fitted, *subjects])
        journal = self.journal(order)
        sample = sample_of(self.params, suite.stats.seed)
        stats = self.read(work, len(fitted), journal, sample)
        read, total = sum(bytes_read(infos, sample) for infos in work), sum(bytes_read(infos, None) for infos in work)
        ev.tables["reading"] = [{"sample": self.params.sample, "bytes_read": read, "bytes_total": total}]
        if sample is not None:
            ev.notes.append(
                f"sampled mode: read {read / 1e9:.3g} GB of {total / 1e9:.3g} GB ({100 * read / max(total, 1):.2g}%), "
                f"blocks seeded by {suite.stats.seed}; the CIs resample the blocks as well as the tensors, and a copy "
                "is checked on the sampled elements only"
            )
        stats = drop_nonfinite(stats, [ref_name, *fitted, *subjects], unmatched, ev.notes)
        results: dict[str, WeightsResult] = {}
        tensor_rows: list[dict[str, Any]] = []
        cos_of: dict[str, float] = {}
        for j, s in enumerate(subjects):
            # A subject equal to R, or all zero, has nothing to fit: its summaries are n/a (NaN),
            # which the report prints as such; numpy's warnings about it would only be noise.
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                results[s], rows = self.subject(s, j, stats, fitted, ref_name, unmatched)
            results[s].storage = ckpt[s].storage
            cos_of[s] = results[s].cos_fit
            tensor_rows += rows
        names = [ref_name, *fitted]
        pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
        kin = dict(zip([f"{names[i]} ~ {names[j]}" for i, j in pairs], an.kinship(stats, pairs)))
        bound = an.kin_bound(stats)
        for j, s in enumerate(subjects):
            r = results[s]
            r.parents_cos, r.kin_bound = kin, bound
            r.kin_to = dict(zip(names, an.kinship(stats, [(1 + len(fitted) + j, i) for i in range(len(names))])))
        first = results[subjects[0]] if subjects else None
        for among_parents, why in (
            (
                True,
                "these parents share no weights, so the logit and text probes' unit (the parents' distance) is no "
                "unit of kinship, and the case sets their lineage words aside",
            ),
            (
                False,
                "the given base shares no weights with that parent, so differences from it are not what the parent's "
                "training moved: give the parents' own base, or none",
            ),
        ):
            apart = first.strangers(among_parents) if first is not None else {}
            if apart:
                ev.limitations.append(
                    ", ".join(f"{pair}: median cosine of their weights {c:.3f}" for pair, c in apart.items())
                    + f", within what separate initialisations give (at most {bound:.3f}): {why}"
                )
        self.calibrate(results, cos_of, stats, fitted, ref_name)
        ev.per_model = {s: r.model_dump(mode="json") for s, r in results.items()}
        ev.calibrated = any(suite.model(s).role == "control" for s in results)
        ev.tables["tensors"] = tensor_rows
        ev.tables["checkpoints"] = [{"model": n, **c.fingerprint()} for n, c in [(ref_name, ref), *ckpt.items()]]
        ev.tables["artifacts"] = [
            a for s in subjects for a in artifacts(s, ckpt[s], {p: ckpt[p] for p in parents} | {ref_name: ref})
        ]
        ev.summary = render.summary(ev)
        return ev

    def journal(self, order: list[Checkpoint]) -> Path:
        """Where the pass is journaled: the suite's response cache, keyed by every file's path,
        size and modification time (a changed checkpoint is read again) and the sample drawn."""
        suite = self.suite
        ident = [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for c in order for f in c.files]
        sample = [self.params.sample, suite.stats.seed] if self.params.sample is not None else None
        key = hashlib.sha256(json.dumps([self.ev.version, FORMAT, ident, sample]).encode()).hexdigest()[:24]
        folder = Path(suite.cache_dir or default_cache_dir()) / "weights"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{key}.jsonl"

    def read(self, work: list[list[Tensor]], n_parents: int, journal: Path, sample: Sample | None) -> list[TensorStats]:
        total = sum(bytes_read(infos, sample) for infos in work)
        console = Console(stderr=True)
        with Progress(
            TextColumn(f"  {self.ev.instance}: reading checkpoints"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("read", total=total)
            return stream(work, n_parents, journal, self.params.workers, lambda b: progress.advance(task, b), sample)

    def subject(
        self,
        s: str,
        j: int,
        stats: list[TensorStats],
        fitted: list[str],
        ref_name: str,
        unmatched: list[str],
    ) -> tuple[WeightsResult, list[dict[str, Any]]]:
        """One subject (row ``j`` among the subjects): its fits, pooled weights with their CIs,
        summaries and family evidence; and its per-tensor rows for the evidence's table."""
        suite, rng, level = self.suite, self.rng, 1 - self.suite.stats.alpha
        p = len(fitted)
        moving = [x for x in stats if np.trace(np.array(x.gram)[1 : p + 1, 1 : p + 1]) > 0]
        fits = an.fits_of(moving, p, j, two_parent_slerp=len(fitted) + (ref_name != "base") == 2)
        pool = an.pooled(moving, p, j)
        lo, hi, cos_lo = an.bootstrap(moving, p, j, level, min(suite.stats.bootstrap, 500), rng)
        weights = {
            f: Interval(value=float(pool.weights[i]), lo=float(lo[i]), hi=float(hi[i])) for i, f in enumerate(fitted)
        }
        if ref_name != "base":  # the reference parent carries what the others leave
            weights[ref_name] = Interval(
                value=1 - float(pool.weights.sum()), lo=1 - float(hi.sum()), hi=1 - float(lo.sum())
            )
        names = ([] if ref_name == "base" else [ref_name]) + fitted
        models = [np.eye(1 + p)[0] + (np.eye(1 + p)[1 + fitted.index(n)] if n in fitted else 0) for n in names]
        top = int(np.argmax([weights[n].value or 0.0 for n in names]))
        toward, toward_lo = an.toward_others(moving, p, j, models, top, level, min(suite.stats.bootstrap, 500), rng)
        dtype = an.dtype_summary(stats, 1 + p + j)
        q, df = an.heterogeneity(fits, float(pool.weights[0]))
        g_all = np.asarray(sum(an.subject_gram(np.array(x.gram), p, j) for x in stats))
        norm_s2 = g_all[0, 0] + 2 * g_all[0, -1] + g_all[-1, -1]
        scale = 1 / norm_s2 if norm_s2 > 0 else math.nan  # an all-zero subject has no relative distance
        distance = {ref_name: math.sqrt(g_all[-1, -1] * scale)}
        for i, f in enumerate(fitted):
            distance[f] = math.sqrt(max(g_all[-1, -1] - 2 * g_all[1 + i, -1] + g_all[1 + i, 1 + i], 0) * scale)
        n_all = sum(x.numel for x in stats)
        beyond = {
            name: sum(x.beyond_rounding[j][i] for x in stats) / n_all for i, name in enumerate([ref_name, *fitted])
        }
        fam = an.family(fits, moving, p, j, pool.weights)
        cos = np.array([f.fit.cos for f in fits])
        result = WeightsResult(
            role=suite.model(s).role,
            dtype=dtype,
            dtypes_of={n: an.dtype_summary(stats, i) for i, n in enumerate([ref_name, *fitted])},
            reference=ref_name,
            parents=fitted,
            tensors=len(moving),
            tensors_identical=len(stats) - len(moving),
            unmatched=unmatched,
            weights=weights,
            a=weights[fitted[0]] if fitted else None,
            cos_fit=pool.cos,
            cos_fit_lo=cos_lo,
            toward_others=toward,
            toward_others_lo=toward_lo,
            rel_residual=pool.rel_residual,
            storage_floor=an.floor_of(fits, 1 + p + j),
            tensors_cos_below_half=float(np.mean(cos < 0.5)) if len(cos) else math.nan,
            heterogeneity_q=q,
            heterogeneity_df=df,
            spread_in_se=math.sqrt(q / df) if df else math.nan,
            modules=an.summarise(fits, an.module_of),
            layers=an.summarise(fits, an.layer_of),
            family=fam,
            distance_to=distance,
            beyond_conversion=beyond,
            null_cos=math.nan,
            null_source="",
        )
        rows = [
            {
                "subject": s,
                "tensor": f.stats.name,
                "module": an.module_of(f.stats.name),
                "layer": an.layer_of(f.stats.name),
                "a": float(f.fit.weights[0]),
                "cos": f.fit.cos,
                "rel_residual": f.fit.rel_residual,
            }
            for f in fits
        ]
        return result, rows

    def calibrate(
        self,
        results: dict[str, WeightsResult],
        cos_of: dict[str, float],
        stats: list[TensorStats],
        fitted: list[str],
        ref_name: str,
    ) -> None:
        """The null each subject's cos fit must beat, then the verdict and the family."""
        suite = self.suite
        controls = {s: c for s, c in cos_of.items() if suite.model(s).role == "control" and math.isfinite(c)}
        p = len(fitted)
        g = np.asarray(sum(np.array(x.gram) for x in stats)) if stats else None
        if g is not None and ref_name == "base" and p >= 2:
            geometric, why = an.sibling_null(g, p), "an independent fine-tune of the base as alike as the parents"
        elif g is not None:
            geometric, why = 0.5, "a sibling of the parents (equal-norm siblings give 0.5 against the parents' line)"
        else:
            geometric, why = math.nan, ""
        toward = {s: r.toward_others for s, r in results.items() if s in controls and math.isfinite(r.toward_others)}
        for s, r in results.items():
            r.toward_null = max([SIBLING_TOWARD, *(v for c, v in toward.items() if c != s)])
            others = {c: v for c, v in controls.items() if c != s}
            top = max(others, key=others.__getitem__) if others else None
            if top is not None and others[top] > geometric:
                r.null_cos, r.null_source = others[top], f"controls: highest is {top}"
            else:
                r.null_cos = geometric
                r.null_source = why + ("" if others else "; no control checkpoints: uncalibrated")
            r.verdict, r.parent, r.reasons = decide(r)
            r.family.name = family_name(r) if r.verdict == "interpolation" else "none"


def match_tensors(order: list[Checkpoint], names: list[str]) -> tuple[list[list[Tensor]], list[str]]:
    """Tensors present in every model with one shape and a float dtype; the rest, with why."""
    work, unmatched = [], []
    all_names = sorted(set().union(*(c.tensors for c in order)))
    for t in all_names:
        missing = [n for n, c in zip(names, order) if t not in c.tensors]
        if missing:
            unmatched.append(f"{t}: missing in {', '.join(missing)}")
            continue
        infos = [c.tensors[t] for c in order]
        if len({i.shape for i in infos}) > 1:
            shapes = ", ".join(f"{n} {list(i.shape)}" for n, i in zip(names, infos))
            unmatched.append(f"{t}: shapes differ ({shapes})")
        elif not all(i.is_float for i in infos):
            unmatched.append(f"{t}: not a float tensor ({', '.join(sorted({i.dtype for i in infos}))})")
        else:
            work.append(infos)
    work.sort(key=lambda infos: (str(infos[0].file), infos[0].offset))  # read each shard front to back
    return work, unmatched


def drop_nonfinite(
    stats: list[TensorStats], names: list[str], unmatched: list[str], notes: list[str]
) -> list[TensorStats]:
    """Tensors holding NaN or inf (or so large their sums leave float64) say nothing about a
    merge: each is left out of every fit and named, and the rest are analysed."""
    kept = []
    for x in stats:
        bad = [f"{n} has {c} non-finite values" for n, c in zip(names, x.nonfinite) if c]
        if x.overflow:
            bad.append("its sums overflow float64")
        if bad:
            unmatched.append(f"{x.name}: left out: {'; '.join(bad)}")
        else:
            kept.append(x)
    if len(kept) < len(stats):
        notes.append(
            f"{len(stats) - len(kept)} tensor(s) left out for non-finite values or overflow: "
            + ", ".join(u.split(":")[0] for u in unmatched if ": left out: " in u)
        )
    if not kept:
        raise InputError("weights: every tensor in common holds non-finite values (NaN or inf): nothing to fit")
    return kept
