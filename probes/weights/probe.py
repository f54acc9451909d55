"""Weights: per-tensor interpolation analysis of public checkpoints, and merge artifacts.

The probe asks no backend anything (``needs_backend = False``: collect loads no model for it).
It reads each model's safetensors checkpoint, the model's ``path`` or ``params.paths[name]``,
streaming every tensor of every model side by side (``stream.py``), fits each subject
(suspects and controls) on the parents (``fit.py``, ``analysis.py``), applies the rule of
``verdict.py`` and lists the merge artifacts left in the repositories (``artifacts.py``).

Reference R: the shared base when ``params.base`` is given (then every parent gets a weight, and
their sum need not be 1: task arithmetic), else the parent ``params.reference`` (default: the
last parent), whose weight is 1 minus the others' (the Rio case: S - Qwen = a (Nex - Qwen)).

The pass over the checkpoints is journaled in the response cache (one JSON line per tensor),
so a killed analysis resumes, and a second one (another alpha) reads no weights at all.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from harness.backends.base import Capabilities
from harness.cache import default_cache_dir
from harness.case import ProbeCase
from harness.errors import InputError
from harness.evidence import Interval, ProbeEvidence
from harness.suite import ModelSpec, Suite
from probes.base import Planned, Probe, ProbeParams, Record, Skip
from probes.weights import analysis as an
from probes.weights import render
from probes.weights.artifacts import artifacts
from probes.weights.case import weights_case
from probes.weights.checkpoint import Checkpoint, Tensor, open_checkpoint
from probes.weights.result import WeightsResult
from probes.weights.stream import FORMAT, Sample, TensorStats, bytes_read, stream
from probes.weights.verdict import SIBLING_TOWARD, SPARSE_MIN, decide


class WeightsParams(ProbeParams):
    base: str | None = Field(None, description="Checkpoint of the parents' shared base (a directory).")
    reference: str | None = Field(None, description="Without a base: the parent differences are taken from.")
    paths: dict[str, str] = Field(
        default_factory=dict, description="Checkpoint directory per model, where its `path` is not one (API models)."
    )
    workers: int | None = Field(
        None,
        ge=1,
        description="Threads reading tensors (default: half the cores, at most 4: the pass is memory-bound).",
    )
    sample: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Sampled mode: read this share of each tensor (blocks at random places, seeded by stats.seed) "
        "instead of all of it; the CIs then include the sample's own variation. 0.02 reads about 2% of the bytes: "
        "minutes for a 397B checkpoint instead of hours. None: read everything.",
    )


class WeightsProbe(Probe):
    kind: ClassVar[str] = "weights"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "white-box: per-tensor interpolation of the checkpoints, merge family, artifacts"
    needs_backend: ClassVar[bool] = False
    Params = WeightsParams
    params: WeightsParams
    Result = WeightsResult
    path_params: ClassVar[tuple[str, ...]] = ("base", "paths")
    example: ClassVar[dict[str, Any]] = {}

    # ------------------------------------------------------------------ inputs
    def checkpoint_dir(self, model: ModelSpec) -> Path | None:
        """The model's checkpoint: ``params.paths[name]``, else its ``path`` (a directory, a
        safetensors or GGUF file, or a directory and its ``gguf_file`` option)."""
        raw = self.params.paths.get(model.name) or model.path
        if raw and not self.params.paths.get(model.name) and model.options.get("gguf_file"):
            raw = str(Path(raw) / str(model.options["gguf_file"]))
        return Path(raw) if raw and Path(raw).exists() else None

    def _checkpoints(self, suite: Suite) -> tuple[dict[str, Checkpoint], list[tuple[tuple, str]]]:
        """Every model's checkpoint (and the base's, as "base"), headers parsed, with the problems
        found. GGUF files are opened last: their tensors take the names the others use."""
        where: dict[str, tuple[tuple, Path | None]] = {
            m.name: (("paths", m.name), self.checkpoint_dir(m)) for m in suite.models
        }
        if self.params.base:
            where["base"] = (("base",), Path(self.params.base))
        opened: dict[str, Checkpoint] = {}
        problems: list[tuple[tuple, str]] = []
        for gguf_pass in (False, True):
            like = {t for c in opened.values() for t in c.tensors}
            for name, (field, d) in where.items():
                if d is None:
                    if not gguf_pass:
                        problems.append(
                            (field, f"model '{name}' has no local checkpoint (give its directory under paths)")
                        )
                    continue
                if (d.suffix == ".gguf") != gguf_pass:
                    continue
                try:
                    opened[name] = open_checkpoint(d, like)
                except InputError as e:
                    problems.append((field, str(e)))
        return opened, problems

    def preflight(self, suite: Suite) -> list[tuple[tuple, str]]:
        """Every checkpoint's headers parse and every byte range is inside its file: a truncated
        shard is found now, not after hours of reading."""
        problems: list[tuple[tuple, str]] = []
        parents = suite.by_role("parent")
        if not parents:
            problems.append(((), "the weights probe needs at least one model with role: parent"))
        if self.params.reference and self.params.reference not in {p.name for p in parents}:
            problems.append((("reference",), f"'{self.params.reference}' is not a parent of this suite"))
        opened, found = self._checkpoints(suite)
        problems += found
        problems += self._same_checkpoint(suite)
        problems += self._nothing_in_common(suite, opened)
        return problems

    def _same_checkpoint(self, suite: Suite) -> list[tuple[tuple, str]]:
        """Two parents (or a parent and the base) on one checkpoint, directly or through a link,
        make the parents' line a point: every fit on it would be meaningless."""
        where: dict[Path, str] = {}
        problems: list[tuple[tuple, str]] = []
        named = [(p.name, self.checkpoint_dir(p)) for p in suite.by_role("parent")]
        if self.params.base and not any(d and d.resolve() == Path(self.params.base).resolve() for _, d in named):
            named.append(("base", Path(self.params.base)))
        for name, d in named:
            if d is None:
                continue
            key = d.resolve()
            if key in where:
                problems.append(
                    (
                        ("paths", name),
                        f"'{name}' and '{where[key]}' are the same checkpoint ({key}): give distinct parents",
                    )
                )
            where.setdefault(key, name)
        return problems

    def _nothing_in_common(self, suite: Suite, opened: dict[str, Checkpoint]) -> list[tuple[tuple, str]]:
        """Each subject must share float tensors (name and shape) with every parent, or nothing can be
        fitted: another architecture, renamed tensors, integer tensors. Found here, not after reading."""
        refs = [p.name for p in suite.by_role("parent")] + (["base"] if self.params.base else [])
        problems: list[tuple[tuple, str]] = []
        for m in suite.models:
            if m.role == "parent" or m.name not in opened:
                continue
            mine = {n: t.shape for n, t in opened[m.name].tensors.items() if t.is_float}
            for r in refs:
                if r not in opened:
                    continue
                theirs = {n: t.shape for n, t in opened[r].tensors.items() if t.is_float}
                common = sum(1 for n, shape in mine.items() if theirs.get(n) == shape)
                if not common:
                    names = sum(1 for n in opened[m.name].tensors if n in opened[r].tensors)
                    problems.append(
                        (
                            ("paths", m.name),
                            f"no tensor in common: '{m.name}' has {names} of {len(opened[r].tensors)} tensor names of "
                            f"'{r}' and 0 float tensors of the same name and shape (another architecture, or renamed?)",
                        )
                    )
        return problems

    def plan(self, suite: Suite, model: ModelSpec, caps: Capabilities) -> list[Planned] | Skip:
        return []  # nothing to ask a backend: analysis reads the checkpoints

    # ------------------------------------------------------------------ analysis
    def analyze(self, records: dict[str, list[Record]], suite: Suite, rng: np.random.Generator) -> ProbeEvidence:
        ev = self.new_evidence(suite, mode="weights")
        problems = self.preflight(suite)
        if problems:
            raise InputError(f"probe '{self.instance}': " + "; ".join(m for _, m in problems))
        parents = [m.name for m in suite.by_role("parent")]
        seen: dict[Path, str] = {}
        subjects: list[str] = []
        for m in suite.models:
            d = self.checkpoint_dir(m)
            assert d is not None
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
        opened, _ = self._checkpoints(suite)  # preflight above found no problem
        ckpt = {m.name: opened[m.name] for m in suite.models}
        base_parent = None
        if self.params.base:
            base = Path(self.params.base).resolve()
            base_parent = next(
                (p for p in parents if Path(str(self.checkpoint_dir(suite.model(p)))).resolve() == base), None
            )
        if self.params.base and base_parent is None:
            ref_name, ref = "base", opened["base"]
            fitted = parents
        else:
            ref_name = self.params.reference or base_parent or parents[-1]
            ref = ckpt[ref_name]
            fitted = [p for p in parents if p != ref_name]
        order = [ref] + [ckpt[p] for p in fitted] + [ckpt[s] for s in subjects]
        work, unmatched = self._match(order, [ref_name, *fitted, *subjects])
        journal = self._journal(order, suite)
        sample = self._sample(suite)
        stats = self._stream(work, len(fitted), journal, sample)
        read, total = sum(bytes_read(infos, sample) for infos in work), sum(bytes_read(infos, None) for infos in work)
        ev.tables["reading"] = [{"sample": self.params.sample, "bytes_read": read, "bytes_total": total}]
        if sample is not None:
            ev.notes.append(
                f"sampled mode: read {read / 1e9:.3g} GB of {total / 1e9:.3g} GB ({100 * read / max(total, 1):.2g}%), "
                f"blocks seeded by {suite.stats.seed}; the CIs resample the blocks as well as the tensors, and a copy "
                "is checked on the sampled elements only"
            )
        stats = self._drop_nonfinite(stats, [ref_name, *fitted, *subjects], unmatched, ev.notes)
        level = 1 - suite.stats.alpha
        results: dict[str, WeightsResult] = {}
        tensor_rows: list[dict[str, Any]] = []
        cos_of: dict[str, float] = {}
        for j, s in enumerate(subjects):
            # A subject equal to R, or all zero, has nothing to fit: its summaries are n/a (NaN),
            # which the report prints as such; numpy's warnings about it would only be noise.
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                results[s], rows = self._subject(s, j, stats, fitted, ref_name, unmatched, suite, level, rng)
            results[s].storage = ckpt[s].storage
            cos_of[s] = results[s].cos_fit
            tensor_rows += rows
        self._calibrate(results, cos_of, suite, stats, fitted, ref_name)
        ev.per_model = {s: r.model_dump(mode="json") for s, r in results.items()}
        ev.calibrated = any(suite.model(s).role == "control" for s in results)
        ev.tables["tensors"] = tensor_rows
        ev.tables["checkpoints"] = [{"model": n, **c.fingerprint()} for n, c in [(ref_name, ref), *ckpt.items()]]
        ev.tables["artifacts"] = [
            a for s in subjects for a in artifacts(s, ckpt[s], {p: ckpt[p] for p in parents} | {ref_name: ref})
        ]
        ev.summary = render.summary(ev)
        return ev

    @staticmethod
    def _match(order: list[Checkpoint], names: list[str]) -> tuple[list[list[Tensor]], list[str]]:
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

    @staticmethod
    def _drop_nonfinite(
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

    def _sample(self, suite: Suite) -> Sample | None:
        return Sample(self.params.sample, suite.stats.seed) if self.params.sample is not None else None

    def _journal(self, order: list[Checkpoint], suite: Suite) -> Path:
        """Where the pass is journaled: the suite's response cache, keyed by every file's path,
        size and modification time (a changed checkpoint is read again) and the sample drawn."""
        ident = [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for c in order for f in c.files]
        sample = [self.params.sample, suite.stats.seed] if self.params.sample is not None else None
        key = hashlib.sha256(json.dumps([self.version, FORMAT, ident, sample]).encode()).hexdigest()[:24]
        folder = Path(suite.cache_dir or default_cache_dir()) / "weights"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{key}.jsonl"

    def file_reads(self, suite: Suite) -> str | None:
        """For `run --estimate`: the bytes the pass will read (all, or the sampled share)."""
        opened, problems = self._checkpoints(suite)
        if problems:
            return f"{self.instance}: cannot estimate ({problems[0][1]})"
        names = [m.name for m in suite.models if m.role != "candidate"] + (["base"] if "base" in opened else [])
        common = set.intersection(*(set(opened[n].tensors) for n in names if n in opened))
        work = [[opened[n].tensors[t] for n in names if n in opened] for t in sorted(common)]
        sample = self._sample(suite)
        read, total = sum(bytes_read(w, sample) for w in work), sum(bytes_read(w, None) for w in work)
        how = f"sample {self.params.sample:g} of each tensor" if sample else "every tensor in full"
        return f"{self.instance}: reads {read / 1e9:.3g} GB of {total / 1e9:.3g} GB of checkpoints ({how})"

    def _stream(
        self, work: list[list[Tensor]], n_parents: int, journal: Path, sample: Sample | None
    ) -> list[TensorStats]:
        total = sum(bytes_read(infos, sample) for infos in work)
        console = Console(stderr=True)
        with Progress(
            TextColumn(f"  {self.instance}: reading checkpoints"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("read", total=total)
            return stream(work, n_parents, journal, self.params.workers, lambda b: progress.advance(task, b), sample)

    def _subject(
        self,
        s: str,
        j: int,
        stats: list[TensorStats],
        fitted: list[str],
        ref_name: str,
        unmatched: list[str],
        suite: Suite,
        level: float,
        rng: np.random.Generator,
    ) -> tuple[WeightsResult, list[dict[str, Any]]]:
        """One subject (row ``j`` among the subjects): its fits, pooled weights with their CIs,
        summaries and family evidence; and its per-tensor rows for the evidence's table."""
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

    def _calibrate(
        self,
        results: dict[str, WeightsResult],
        cos_of: dict[str, float],
        suite: Suite,
        stats: list[TensorStats],
        fitted: list[str],
        ref_name: str,
    ) -> None:
        """The null each subject's cos fit must beat, then the verdict and the family."""
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
            r.family.name = self._family_name(r) if r.verdict == "interpolation" else "none"

    @staticmethod
    def _family_name(r: WeightsResult) -> str:
        f = r.family
        floor3 = 3 * r.storage_floor
        if f.linear_residual <= floor3:
            return "linear"
        if math.isfinite(f.slerp_residual) and (
            f.slerp_residual <= floor3 or f.slerp_residual <= f.linear_residual / 4
        ):
            return "slerp"
        if f.zero_where_parents_moved >= SPARSE_MIN:
            return "sparse (ties/dare)"
        return "linear, trained further (or another method)"

    # ------------------------------------------------------------------ presentation (render.py)
    def case(self, evidence: ProbeEvidence, names: list[str], suite: Suite) -> ProbeCase | None:
        m = next((n for n in names if n in evidence.per_model), None)
        if evidence.status != "ok" or m is None:
            return None
        return weights_case(evidence.instance, evidence.results(WeightsResult)[m], evidence.ci_level)

    def report_section(self, evidence: ProbeEvidence, suite: Suite) -> str:
        return render.report_section(evidence)

    def figures(self, evidence: ProbeEvidence, out_dir: Path) -> list[tuple[str, Path]]:
        return render.figures(evidence, out_dir)
