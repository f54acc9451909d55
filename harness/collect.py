"""The collect phase: the only code that talks to models.

Models are probed one at a time (load, run every probe, free), because three 397B models never
fit on a node together. For each model and probe: plan the requests, look them up in the
cache, send only the missing ones in batches, commit every answer to the cache and append its
raw record the moment it arrives. A run that is killed resumes from the cache without
repeating a request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from harness.backends import make_backend
from harness.backends.base import CountResult, GenerateResult, Result, ScoreResult
from harness.cache import Cache, cache_key
from harness.config import Suite
from harness.errors import BackendError, CapabilityMissing, PartialBatch
from harness.runstore import RunStore
from probes.base import Probe, Skip


@dataclass
class CollectStats:
    requests: int = 0
    cache_hits: int = 0
    computed: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)


def summarize(result: Result) -> dict[str, Any]:
    """Small, human-readable part of a result for the raw record (bulk arrays stay in the cache)."""
    if isinstance(result, ScoreResult):
        return {"n_tokens": int(result.token_ids.shape[0]), "sum_logprob": float(result.token_logprobs.sum())}
    if isinstance(result, GenerateResult):
        return {"texts": result.texts, "completion_tokens": result.completion_tokens}
    if isinstance(result, CountResult):
        return {"n_tokens": result.n_tokens, "method": result.method}
    return {}


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
    stats = CollectStats()
    for spec in suite.models:
        backend = make_backend(spec)
        backend.run_dir = run.dir
        what = escape(str(spec.path or spec.backend))
        console.print(f"[bold]{escape(spec.name)}[/] ({spec.role}, {spec.backend}): loading {what}")
        try:
            with console.status(f"  loading {escape(spec.name)} (a launched server can take minutes) ..."):
                backend.load()
        except BackendError as e:
            run.event("model_failed", model=spec.name, error=str(e))
            raise
        try:
            fp = backend.fingerprint()
            caps = backend.capabilities()
            run.event("model_loaded", model=spec.name, role=spec.role, fingerprint=fp, capabilities=caps.model_dump())
            for probe in probes:
                try:
                    _collect_probe(suite, run, cache, probe, backend, spec.name, fp["key"], caps, stats, console)
                except CapabilityMissing as e:  # found out mid-probe: keep what was answered, record why
                    reason = f"capability missing: {e}"
                    run.event("probe_skipped", model=spec.name, probe=probe.instance, reason=reason)
                    stats.skipped.append({"model": spec.name, "probe": probe.instance, "reason": reason})
                    console.print(f"  [yellow]skipped[/] {escape(probe.instance)}: {escape(reason)}")
            run.event("model_done", model=spec.name, usage=backend.usage())
        finally:
            backend.close()
    run.event("collect_end", requests=stats.requests, cache_hits=stats.cache_hits, computed=stats.computed)
    return stats


def _collect_probe(suite, run, cache, probe, backend, model, model_key, caps, stats, console) -> None:
    spec = suite.model(model)
    planned = probe.plan(suite, spec, caps)
    if isinstance(planned, Skip):
        run.event("probe_skipped", model=model, probe=probe.instance, reason=planned.reason)
        stats.skipped.append({"model": model, "probe": probe.instance, "reason": planned.reason})
        console.print(f"  [yellow]skipped[/] {escape(probe.instance)}: {escape(planned.reason)}")
        return
    keys = [cache_key(model_key, probe.id, probe.version, p.request) for p in planned]
    cached = cache.contains(keys)
    logged = {r["key"] for r in run.raw_records(model) if r["probe"] == probe.instance}

    def record(i: int, result: Result, from_cache: bool) -> None:
        run.append_raw(
            model,
            {
                "probe": probe.instance,
                "probe_version": probe.version,
                "key": keys[i],
                "meta": planned[i].meta,
                "request": planned[i].request.model_dump(mode="json"),
                "cached": from_cache,
                "summary": summarize(result),
            },
        )

    hits = 0
    todo: list[int] = []
    for i, k in enumerate(keys):
        if k in cached:
            hits += 1
            if k not in logged:  # answered in an earlier (possibly killed) run: log it into this one
                record(i, cache.get(k), True)
        else:
            todo.append(i)
    with _progress(console) as progress:
        task = progress.add_task(f"  {escape(probe.instance)}", total=len(planned), completed=hits, hits=hits)
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
                        cache.put(keys[batch[j]], result, model_key, probe.id)
                        record(batch[j], result, False)
                    raise e.cause from e
                for j, result in results.items():
                    cache.put(keys[batch[j]], result, model_key, probe.id)
                    record(batch[j], result, False)
                progress.advance(task, len(batch))
    stats.requests += len(planned)
    stats.cache_hits += hits
    stats.computed += len(todo)
    run.event(
        "probe_collected", model=model, probe=probe.instance, requests=len(planned), cache_hits=hits, computed=len(todo)
    )
