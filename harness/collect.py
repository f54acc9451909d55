"""The collect phase: the only code that talks to models.

Models are probed one at a time (load, run every probe, free), because three 397B models never
fit on a node together. For each model and probe: plan the requests, look them up in the
cache, send only the missing ones in batches, commit every answer to the cache and append its
raw record the moment it arrives. A run that is killed resumes from the cache without
repeating a request.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from harness.backends import make_backend
from harness.backends.base import Backend, Capabilities, ModelRef, Result
from harness.cache import Cache, cache_key
from harness.errors import BackendError, CapabilityMissing, PartialBatch
from harness.events import (
    CollectEnd,
    ModelBuilt,
    ModelDone,
    ModelFailed,
    ModelLoaded,
    ProbeCollected,
    ProbeSkipped,
    Screened,
)
from harness.runstore import RunStore
from harness.suite import ModelSpec, Suite
from probes.base import Build, Probe, Skip


@dataclass
class CollectStats:
    requests: int = 0
    cache_hits: int = 0
    computed: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("cached {task.fields[hits]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def collect(suite: Suite, run: RunStore, cache: Cache, probes: list[Probe], console: Console) -> CollectStats:
    """Collect every probe's answers from every model of ``suite``, one model at a time."""
    return Collector(suite, run, cache, console).collect(probes)


@dataclass
class Collector:
    """One collection: the suite, where answers go (cache, run store), where progress is shown,
    and the running totals. Each step below is a method, so none needs a long argument list."""

    suite: Suite
    run: RunStore
    cache: Cache
    console: Console
    stats: CollectStats = field(default_factory=CollectStats)
    planned: set[str] = field(default_factory=set)  # cache keys planned so far in this collection
    stage_one: dict[str, dict] = field(default_factory=dict)  # probe instance -> its records after stage one

    def collect(self, probes: list[Probe]) -> CollectStats:
        # Stage one: every model; a probe that stages a model gives it its stage-one plan.
        staged: dict[str, list[str]] = {}  # probe instance -> models it staged
        for spec in self.suite.models:
            wanted = [p for p in probes if p.needs_backend and (p.spec.models is None or spec.name in p.spec.models)]
            if wanted:  # a model no probe asks for is never loaded
                self._model(spec, wanted, staged)
        # Stage two: the staged models each probe kept, planned on stage one's answers (loaded again).
        for spec, wanted in self._shortlisted(probes, staged):
            self._model(spec, wanted, None)
        # Models probes build (merges of the parents), in rounds until each has what it needs.
        for probe in probes:
            if probe.builds_models:
                self._build_rounds(probe)
        s = self.stats
        self.run.event(CollectEnd(requests=s.requests, cache_hits=s.cache_hits, computed=s.computed))
        return s

    def _shortlisted(self, probes: list[Probe], staged: dict[str, list[str]]) -> list[tuple[ModelSpec, list[Probe]]]:
        """Stage one's records of each probe that staged models, and which of those go on."""
        from harness.analyze import load_records  # analysis code, needed here only between stages

        todo: dict[str, list[Probe]] = {}
        for probe in probes:
            names = staged.get(probe.instance)
            if not names:
                continue
            view = self.suite.for_probe(probe.spec)
            self.stage_one[probe.instance] = records = load_records(self.run, self.cache, view, probe)
            short = probe.shortlist(view, records)
            kept = [m for m in (short.kept if short else names) if m in names]
            self.run.event(Screened(probe=probe.instance, screened=names, kept=kept, why=short.why if short else {}))
            if short is not None:
                self.console.print(
                    f"[bold]{escape(probe.instance)}[/]: screening kept {len(kept)} of {len(names)} candidates for "
                    f"full scoring: {escape(', '.join(kept) or 'none')}"
                )
            for m in kept:
                todo.setdefault(m, []).append(probe)
        return [(spec, todo[spec.name]) for spec in self.suite.models if spec.name in todo]

    def _build_rounds(self, probe: Probe) -> None:
        """Build, serve and score what ``probe.builds`` asks for, then ask again with the new
        answers; each built model is deleted once scored unless the probe keeps it. A round that
        asks only for models already built (a resumed run) ends the loop."""
        from harness.analyze import load_records, probe_view

        done: set[str] = set()
        build_dir = self.cache.path.parent / "rebuilds"  # beside the response cache
        while True:
            view = probe_view(self.run, self.suite, probe)
            records = load_records(self.run, self.cache, view, probe)
            todo = [b for b in probe.builds(view, records, build_dir) if b.spec.name not in done]
            if not todo:
                return
            for b in todo:
                done.add(b.spec.name)
                self._build_one(probe, b, records)

    def _build_one(self, probe: Probe, build: Build, records: dict) -> None:
        from harness.merging import folder_bytes, run_mergekit

        path = Path(build.spec.path or "")
        start = time.perf_counter()
        if not (path / "config.json").is_file():
            with self.console.status(f"  building {escape(build.spec.name)} with mergekit ..."):
                run_mergekit(build.recipe, path)
        size = folder_bytes(path)
        self.run.event(
            ModelBuilt(
                probe=probe.instance,
                model=build.spec.model_dump(mode="json"),
                recipe=build.recipe,
                seconds=round(time.perf_counter() - start, 3),
                bytes=size,
                kept=build.keep,
            )
        )
        self.stage_one[probe.instance] = records
        try:
            self._model(build.spec, [probe], None)
        finally:
            if not build.keep:
                shutil.rmtree(path, ignore_errors=True)

    def _model(self, spec: ModelSpec, probes: list[Probe], staged: dict[str, list[str]] | None) -> None:
        """Load one model, run every probe on it, free it (also when a probe fails). ``staged``
        (stage one; None in stage two) collects the probes that staged this model."""
        backend = make_backend(spec.backend, ModelRef(spec.name, spec.path, spec.options))
        backend.run_dir = self.run.dir
        what = escape(str(spec.path or spec.backend))
        # soft_wrap: a path is never broken across lines (at 80 columns it was, mid-path)
        head = f"[bold]{escape(spec.name)}[/] ({spec.role}, {spec.backend})"
        self.console.print(f"{head}: loading {what}", soft_wrap=True)
        try:
            wait = " (a launched server can take minutes)" if backend.launched else ""
            with self.console.status(f"  loading {escape(spec.name)}{wait} ..."):
                backend.load()
        except BackendError as e:
            self.run.event(ModelFailed(model=spec.name, error=str(e)))
            raise
        try:
            fp = backend.fingerprint()
            if spec.hub:  # a model named by Hub id: the id and the commit it was pinned to
                fp = fp | {"hub": {attr: pin.model_dump() for attr, pin in spec.hub.items()}}
            caps = backend.capabilities()
            self.run.event(
                ModelLoaded(model=spec.name, role=spec.role, fingerprint=fp, capabilities=caps.model_dump(mode="json"))
            )
            for probe in probes:
                try:
                    self._probe(probe, backend, spec, fp["key"], caps, staged)
                except CapabilityMissing as e:  # found out mid-probe: keep what was answered, record why
                    self._skip(spec.name, probe, f"capability missing: {e}")
            self.run.event(ModelDone(model=spec.name, usage=backend.usage()))
        finally:
            backend.close()

    def _skip(self, model: str, probe: Probe, reason: str) -> None:
        """The one place a skipped (model, probe) is recorded: run log, totals and console."""
        self.run.event(ProbeSkipped(model=model, probe=probe.instance, reason=reason))
        self.stats.skipped.append({"model": model, "probe": probe.instance, "reason": reason})
        self.console.print(f"  [yellow]skipped[/] {escape(probe.instance)}: {escape(reason)}")

    def _probe(
        self,
        probe: Probe,
        backend: Backend,
        spec: ModelSpec,
        model_key: str,
        caps: Capabilities,
        staged: dict[str, list[str]] | None,
    ) -> None:
        model = spec.name
        if probe.requires and not any(caps.has(c) for c in probe.requires):
            needs = " or ".join(c.value for c in probe.requires)
            self._skip(model, probe, f"capability missing: backend '{backend.name}' offers no {needs}")
            return
        view = self.suite.for_probe(probe.spec)
        if staged is None:  # stage two
            planned = probe.stage_two_plan(view, spec, caps, self.stage_one[probe.instance])
        elif probe.staged(view, spec):
            planned = probe.stage_one_plan(view, spec, caps)
            if not isinstance(planned, Skip):  # a skipped model is not planned again (nor skipped twice)
                staged.setdefault(probe.instance, []).append(model)
        else:
            planned = probe.plan(view, spec, caps)
        if isinstance(planned, Skip):
            self._skip(model, probe, planned.reason)
            return
        keys = [cache_key(model_key, probe.kind, probe.version, p.request) for p in planned]
        # A request planned already in this collection (stage one's, planned again in full in
        # stage two) is answered from the cache and not counted twice.
        fresh = [k not in self.planned for k in keys]
        self.planned.update(keys)
        cached = self.cache.contains(keys)
        logged = {r["key"] for r in self.run.raw_records(model) if r["probe"] == probe.instance}

        def record(i: int, result: Result, from_cache: bool) -> None:
            self.run.append_raw(
                model,
                {
                    "probe": probe.instance,
                    "probe_version": probe.version,
                    "key": keys[i],
                    "meta": planned[i].meta,
                    "request": planned[i].request.model_dump(mode="json"),
                    "cached": from_cache,
                    "summary": result.summary(),
                },
            )

        def store(i: int, result: Result) -> None:
            self.cache.put(keys[i], result, model_key, probe.kind)
            record(i, result, False)

        hits = 0
        todo: list[int] = []
        for i, k in enumerate(keys):
            if k in cached:
                hits += fresh[i]
                answer = self.cache.get(k) if k not in logged else None
                if answer is not None:  # answered in an earlier (possibly killed) run: log it into this one
                    record(i, answer, True)
            else:
                todo.append(i)
        with _progress(self.console) as progress:
            done = len(planned) - len(todo)
            task = progress.add_task(f"  {escape(probe.instance)}", total=len(planned), completed=done, hits=done)
            # Batches of one request kind, in plan order; the backend may reorder inside a batch.
            by_kind: dict[str, list[int]] = {}
            for i in todo:
                by_kind.setdefault(planned[i].request.kind, []).append(i)
            for kind, idxs in by_kind.items():
                size = backend.batch_size(kind)
                for start in range(0, len(idxs), size):
                    batch = idxs[start : start + size]
                    try:
                        results = dict(enumerate(backend.execute([planned[i].request for i in batch])))
                    except PartialBatch as e:  # keep what was answered, then report the failure
                        for j, result in e.done.items():
                            store(batch[j], result)
                        raise e.cause from e
                    for j, result in results.items():
                        store(batch[j], result)
                    progress.advance(task, len(batch))
        self.stats.requests += sum(fresh)
        self.stats.cache_hits += hits
        self.stats.computed += len(todo)
        self.run.event(
            ProbeCollected(
                model=model,
                probe=probe.instance,
                requests=len(planned),  # this model's whole plan at this stage (stage two's holds stage one's)
                cache_hits=len(planned) - len(todo),
                computed=len(todo),
                stage=1 if staged is not None else 2,
            )
        )
