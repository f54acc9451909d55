"""Evidence -> report.md (with figures). Every number is printed with its interval and p-value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.analyze import build_probes, suite_of
from harness.config import Suite
from harness.evidence import ProbeEvidence
from harness.runstore import RunStore
from probes.base import Probe


def _short(h: Any) -> str:
    if isinstance(h, dict):
        return ", ".join(f"{k}:{str(v)[:10]}" for k, v in h.items())
    return str(h)[:12] if h else "-"


def render_report(run_dir: Path) -> Path:
    """Write report.md (and figures/) from evidence.json and run.jsonl."""
    import json

    run = RunStore.open(run_dir)
    evidence_path = run.dir / "evidence.json"
    if not evidence_path.exists():
        from harness.errors import InputError

        raise InputError(f"{run.dir}: no evidence.json; run `parentage analyze {run.dir}` first")
    evidence = json.loads(evidence_path.read_text(encoding="utf-8"))
    suite = suite_of(run)
    fig_dir = run.dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    probes = {p.instance: p for p in build_probes(suite)}
    out = _header(run, suite, evidence) + _models(run, suite)
    for pe in evidence["probes"]:
        ev = ProbeEvidence.model_validate(pe)
        out += _probe_section(run, probes[ev.instance], ev, suite, fig_dir)
    out += [
        "## Reproduce",
        "",
        "```",
        f"parentage analyze {run.dir}   # re-run the statistics offline",
        f"parentage report {run.dir}",
        "```",
        "",
        "The resolved suite, package versions, git hash, model fingerprints and seeds are in `run.jsonl`.",
    ]
    path = run.dir / "report.md"
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def _header(run: RunStore, suite: Suite, evidence: dict[str, Any]) -> list[str]:
    """Title, description, and what the run was: when, how complete, which code, which statistics."""
    start = run.start_event()
    out = [f"# parentage evidence report: {suite.name}", ""]
    if suite.description:
        out += [suite.description.strip(), ""]
    env = start.get("environment", {})
    git = env.get("git", {})
    stats = evidence["stats"]
    return [
        *out,
        f"- run: `{run.run_id}`, started {start['time']}, analysed {evidence['created']}",
        f"- collection complete: {'yes' if evidence['collection_complete'] else '**no (partial run)**'}",
        f"- parentage {env.get('packages', {}).get('parentage')} at git {git.get('commit') or 'unknown'}"
        + (" (uncommitted changes)" if git.get("dirty") else ""),
        f"- statistics: alpha {stats['alpha']}, {stats['bootstrap']} bootstrap replicates, "
        f"seed {stats['seed']}, {stats['correction']} correction",
        "",
    ]


def _models(run: RunStore, suite: Suite) -> list[str]:
    """One row per model: role, backend and the fingerprint it was loaded with."""
    loaded = {e["model"]: e for e in run.events("model_loaded")}
    out = [
        "## Models",
        "",
        "| model | role | backend | weights (sha256) | dtype | chat template | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in suite.models:
        fp = loaded.get(m.name, {}).get("fingerprint", {})
        out.append(
            f"| {m.name} | {m.role} | {m.backend} | {_short(fp.get('weights_sha256'))} | {fp.get('dtype', '-')} | "
            f"{_short(fp.get('chat_template_sha256'))} | {m.notes or ''} |"
        )
    return [*out, ""]


def _probe_section(run: RunStore, probe: Probe, ev: ProbeEvidence, suite: Suite, fig_dir: Path) -> list[str]:
    """A probe's section: its summary, its own tables and figures (or why it has none), notes,
    request counts and skips."""
    out = [f"## Probe `{ev.instance}` ({ev.probe} v{ev.version})", "", f"_{probe.description}_", ""]
    if ev.mode:
        out += [f"Data mode: **{ev.mode}**.", ""]
    if ev.calibrated is False:
        out += ["**Uncalibrated:** this suite has no control models, so there is no reference for the numbers.", ""]
    if ev.summary:
        out += [ev.summary, ""]
    if ev.status == "ok":  # probes render only evidence they produced; a skip is reported here
        out.append(probe.report_section(ev, suite.for_probe(probe.spec)))
        for caption, path in probe.figures(ev, fig_dir):
            out += [f"![{caption}](figures/{path.name})", ""]
    else:
        out += [f"_{ev.status}: {ev.reason}_", ""]
    for note in ev.notes:
        out += [f"> {note}", ""]
    counts = [c for c in run.events("probe_collected") if c["probe"] == ev.instance]
    if counts:
        total = sum(c["requests"] for c in counts)
        hits = sum(c["cache_hits"] for c in counts)
        out += [f"Requests: {total} ({hits} served from cache).", ""]
    for s in (s for s in run.events("probe_skipped") if s["probe"] == ev.instance):
        out += [f"- skipped on `{s['model']}`: {s['reason']}", ""]
    return out
