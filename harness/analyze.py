"""The analyze phase: raw records -> evidence.json. No model access; safe to re-run offline.

Re-running with a different significance level or number of bootstrap replicates only needs
the run directory and the response cache it names.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from harness.backends.base import Request
from harness.cache import Cache
from harness.errors import InputError, Problem
from harness.events import Analysis, CollectEnd, ModelBuilt, ModelFailed, ProbeCollected, ProbeSkipped, now
from harness.evidence import EVIDENCE_SCHEMA_VERSION, EvidenceFile, ProbeEvidence
from harness.runstore import RunStore
from harness.suite import ModelSpec, StatsSpec, Suite
from probes import PROBES, probe_class
from probes.base import Probe, Record

_REQUEST = TypeAdapter(Request)


def evidence_json_schema() -> dict[str, Any]:
    """evidence.json's JSON Schema, with each probe's typed per-model result (``Probe.Result``)
    under ``$defs``: what a ``per_model`` entry of that probe's evidence holds."""
    schema = EvidenceFile.model_json_schema()
    defs = schema.setdefault("$defs", {})
    for kind in PROBES:
        result = probe_class(kind).Result
        if result is None:
            continue
        sub = result.model_json_schema()
        defs.update(sub.pop("$defs", {}))
        defs[result.__name__] = sub | {"description": f"A per_model entry of '{kind}' evidence."}
    return schema


def suite_of(run: RunStore) -> Suite:
    return Suite.model_validate(run.start_event().suite)


def build_probes(suite: Suite) -> list[Probe]:
    return [probe_class(p.kind)(p) for p in suite.probes]


def power_warnings(suite: Suite, probes: list[Probe]) -> list[str]:
    """Every test that cannot reach alpha at the configured sizes (``Probe.power``), named by probe:
    what ``validate`` and ``run`` warn of before anything is sent and the report's Limitations list."""
    return [f"`{p.instance}`: {note}" for p in probes for note in p.power(suite.for_probe(p.spec))]


def probe_view(run: RunStore, suite: Suite, probe: Probe) -> Suite:
    """The suite as ``probe`` sees it (``Suite.for_probe``), with the models it built in this run
    (``ModelBuilt``: role rebuild), whose records its analysis reads like any model's."""
    view = suite.for_probe(probe.spec)
    built = {e.model["name"]: e.model for e in run.events(ModelBuilt) if e.probe == probe.instance}
    if not built:
        return view
    # model_construct: a built model's role (BUILT_ROLE) is not one a suite file may give
    return view.model_copy(update={"models": [*view.models, *(ModelSpec.model_construct(**m) for m in built.values())]})


def load_records(run: RunStore, cache: Cache, suite: Suite, probe: Probe) -> dict[str, list[Record]]:
    """Records of one probe per model. Answers stay in the cache until a probe reads them."""
    out: dict[str, list[Record]] = {}
    for m in suite.models:
        raws = [
            r
            for r in run.raw_records(m.name)
            if r["probe"] == probe.instance and r.get("probe_version") == probe.version
        ]
        present = cache.contains([r["key"] for r in raws])
        missing = [r["key"] for r in raws if r["key"] not in present]
        if missing:
            raise InputError(
                f"{run.dir}: {len(missing)} answers of model '{m.name}' (e.g. {missing[0][:12]}) are missing from "
                f"the cache {cache.path}; re-run `parentage run` on the suite to collect them again"
            )
        _check_nothing_lost(
            run, m.name, probe.instance, len([r for r in run.raw_records(m.name) if r["probe"] == probe.instance])
        )
        recs = [
            Record(m.name, r["key"], r["meta"], _REQUEST.validate_python(r["request"]), partial(cache.get, r["key"]))
            for r in raws
        ]
        if recs:
            out[m.name] = recs
    return out


def _check_nothing_lost(run: RunStore, model: str, instance: str, found: int) -> None:
    """Analysis must never replace evidence with evidence from less data: when ``raw/`` holds fewer
    of a probe's answers for a model than collection logged (``raw/`` deleted, truncated, or
    copied without it), refuse and say what is missing, before anything is written."""
    logged = [e.requests for e in run.events(ProbeCollected) if e.model == model and e.probe == instance]
    if logged and found < logged[-1]:
        raise InputError(
            f"{run.raw_dir / (model + '.jsonl')}: holds {found} of the {logged[-1]} answers collected for model "
            f"'{model}' by probe '{instance}' (raw/ deleted or cut?): analysing would replace evidence made from "
            f"more; restore raw/, or resume the run (`parentage run SUITE --resume {run.dir}`) to collect them again"
        )


def run_records(run_dir: Path, instance: int = 0) -> tuple[Probe, dict[str, list[Record]], Cache]:
    """A finished run's probe (the suite's ``instance``-th) and its records, for benchmarks and
    tests that study the raw answers; the caller closes the cache the records read from."""
    run = RunStore.open(run_dir)
    suite = suite_of(run)
    probe = build_probes(suite)[instance]
    cache = Cache(Path(run.start_event().cache_dir), create=False)
    return probe, load_records(run, cache, probe_view(run, suite, probe), probe), cache


def analyze_run(
    run_dir: Path,
    alpha: float | None = None,
    bootstrap: int | None = None,
    seed: int | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """Analyse a (finished or partial) run and write evidence.json. Overrides change only the
    statistics; ``cache_dir`` points at a response cache that moved since the run."""
    run = RunStore.open(run_dir)
    start = run.start_event()
    suite = suite_of(run)
    overrides = {k: v for k, v in (("alpha", alpha), ("bootstrap", bootstrap), ("seed", seed)) if v is not None}
    if overrides:  # validated like the suite's own values: --alpha 2 or --bootstrap 0 are refused
        try:
            stats = StatsSpec.model_validate(suite.stats.model_dump() | overrides)
        except ValidationError as e:
            raise InputError([Problem("", None, f"--{err['loc'][0]}", err["msg"]) for err in e.errors()]) from None
        suite = suite.model_copy(update={"stats": stats})
    cache = Cache(Path(cache_dir or start.cache_dir), create=False)
    seeds = np.random.SeedSequence(suite.stats.seed).spawn(len(suite.probes))
    probes_ev: list[ProbeEvidence] = []
    try:
        for probe, ss in zip(build_probes(suite), seeds):
            view = probe_view(run, suite, probe)
            records = load_records(run, cache, view, probe)
            if not records and probe.needs_backend:
                probes_ev.append(
                    probe.new_evidence(
                        suite,
                        status="skipped",
                        reason="; ".join(
                            [
                                *(
                                    f"{e.model}: {e.reason}"
                                    for e in run.events(ProbeSkipped)
                                    if e.probe == probe.instance
                                ),
                                *(
                                    f"{e.model} failed to load: {e.error}"
                                    for e in run.events(ModelFailed)
                                    if e.model in {m.name for m in view.models}
                                ),
                            ]
                        )
                        or "no records were collected for this probe",
                    )
                )
                continue
            ev = probe.analyze(records, view, np.random.default_rng(ss))
            # Tests the configured sizes kept from reaching alpha: in the evidence, so the report
            # renders from evidence.json alone (the corpus behind the count need not be at hand).
            ev.limitations += [note for note in probe.power(view) if note not in ev.limitations]
            probes_ev.append(ev)
    finally:
        cache.close()
    complete = bool(run.events(CollectEnd))
    evidence = EvidenceFile(
        schema_version=EVIDENCE_SCHEMA_VERSION,
        run_id=run.run_id,
        suite=suite.name,
        created=now(),
        collection_complete=complete,
        stats=suite.stats.model_dump(),
        models={m.name: {"role": m.role, "backend": m.backend, "notes": m.notes} for m in suite.models},
        probes=probes_ev,
    ).model_dump(mode="json")
    run.write_json("evidence.json", evidence)
    run.event(Analysis(stats=suite.stats.model_dump(), probes=[p.instance for p in probes_ev], complete=complete))
    return evidence
