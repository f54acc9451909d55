"""Evidence -> report.md (with figures). Every number is printed with its interval and p-value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import case
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
    evs = [ProbeEvidence.model_validate(pe) for pe in evidence["probes"]]
    out = _header(run, suite, evidence) + _case(suite, probes, evs) + _models(run, suite)
    for ev in evs:
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
    starts = run.events("run_start")  # one per session: the first started the run, the others resumed it
    resumed = f"; resumed {', '.join(s['time'] for s in starts[1:])}" if len(starts) > 1 else ""
    out = [f"# parentage evidence report: {suite.name}", ""]
    if suite.description:
        out += [suite.description.strip(), ""]
    env = start.get("environment", {})
    git = env.get("git", {})
    stats = evidence["stats"]
    return [
        *out,
        f"- run: `{run.run_id}`, started {starts[0]['time']}{resumed}, analysed {evidence['created']}",
        f"- collection complete: {'yes' if evidence['collection_complete'] else '**no (partial run)**'}",
        f"- parentage {env.get('packages', {}).get('parentage')} at git {git.get('commit') or 'unknown'}"
        + (" (uncommitted changes)" if git.get("dirty") else ""),
        f"- statistics: alpha {stats['alpha']}, {stats['bootstrap']} bootstrap replicates, "
        f"seed {stats['seed']}, {stats['correction']} correction",
        "",
    ]


def subjects(suite: Suite) -> dict[str, list[str]]:
    """Each suspect's weights and the names they go by in the suite: models with the same path
    are one subject (``rio-mini.yaml`` serves them through vLLM and again through ``hf``)."""
    out: dict[str, list[str]] = {}
    for m in suite.by_role("suspect"):
        out.setdefault(m.path or m.name, []).append(m.name)
    return {names[0]: names for names in out.values()}


def _case(suite: Suite, probes: dict[str, Probe], evs: list[ProbeEvidence]) -> list[str]:
    """The case, first: per suspect, every probe's stance on each explanation and the conclusion
    the rule in ``harness/case.py`` draws from them."""
    out = ["## The case", ""]
    for subject, names in subjects(suite).items():
        cases = [c for ev in evs if (c := probes[ev.instance].case(ev, names, suite)) is not None]
        if not cases:
            out += [f"### {subject}", "", "_No probe produced evidence on this model._", ""]
            continue
        out += case.render(" = ".join(names), cases, case.conclude(cases))
    return [*out, "How the conclusion is drawn (`harness/case.py`):", "", case.RULE, ""]


def _models(run: RunStore, suite: Suite) -> list[str]:
    """One row per model: role, backend and the fingerprint it was loaded with."""
    loaded = {e["model"]: e for e in run.events("model_loaded")}
    failed = {e["model"]: e["error"] for e in run.events("model_failed") if "model" in e}
    out = [
        "## Models",
        "",
        "| model | role | backend | status | weights (sha256) | dtype | chat template | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in suite.models:
        fp = loaded.get(m.name, {}).get("fingerprint", {})
        status = (
            "loaded"
            if m.name in loaded
            else f"**failed to load**: {failed[m.name]}"
            if m.name in failed
            else "not reached (the run stopped before it)"
        )
        out.append(
            f"| {m.name} | {m.role} | {m.backend} | {status} | {_short(fp.get('weights_sha256'))} | "
            f"{fp.get('dtype', '-')} | {_short(fp.get('chat_template_sha256'))} | {m.notes or ''} |"
        )
    return [*out, ""]


def _probe_section(run: RunStore, probe: Probe, ev: ProbeEvidence, suite: Suite, fig_dir: Path) -> list[str]:
    """A probe's section: its summary, its own tables and figures (or why it has none), notes,
    request counts and skips."""
    out = [f"## Probe `{ev.instance}` ({ev.probe} v{ev.version})", "", f"_{probe.description}_", ""]
    if ev.mode:
        out += [f"Data mode: **{ev.mode}**.", ""]
    uncalibrated = [n for n in ev.notes if n.startswith("UNCALIBRATED: ")]
    if ev.calibrated is False:
        why = uncalibrated[0].removeprefix("UNCALIBRATED: ") if uncalibrated else "no control answers to compare with."
        out += [f"**Uncalibrated:** {why}", ""]
    if ev.summary:
        out += [ev.summary, ""]
    if ev.status == "ok":  # probes render only evidence they produced; a skip is reported here
        out.append(probe.report_section(ev, suite.for_probe(probe.spec)))
        for caption, path in probe.figures(ev, fig_dir):
            out += [f"![{caption}](figures/{path.name})", ""]
    else:
        out += [f"_{ev.status}: {ev.reason}_", ""]
    for note in ev.notes:
        if note not in uncalibrated:
            out += [f"> {note}", ""]
    counts = [c for c in run.events("probe_collected") if c["probe"] == ev.instance]
    if counts:
        # A resumed run logs each model again: its plan is the last session's, and what was computed
        # is the sum over sessions (the rest came from the cache, e.g. from an earlier run).
        planned = {c["model"]: c["requests"] for c in counts}
        total, computed = sum(planned.values()), sum(c["computed"] for c in counts)
        sessions = len(run.events("run_start"))
        over = f" over {sessions} sessions" if sessions > 1 else ""
        out += [f"Requests: {total} ({computed} computed{over}, {max(total - computed, 0)} from the cache).", ""]
    for s in (s for s in run.events("probe_skipped") if s["probe"] == ev.instance):
        out += [f"- skipped on `{s['model']}`: {s['reason']}", ""]
    return out
