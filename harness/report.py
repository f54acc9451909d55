"""Evidence -> report.md and report.html (with figures). Every number is printed with its
interval and p-value.

Both files come from one list of sections (:func:`sections`), written in Markdown: report.md joins
them; report.html converts each to HTML (markdown-it) inside a Jinja2 page
(``harness/templates/report.html.j2``) with the figures embedded as data URIs, so the page is one
self-contained file. Rendering reads only evidence.json, run.jsonl and the suite: it is
byte-for-byte reproducible from a saved run directory.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import case, plain
from harness.analyze import build_probes, suite_of
from harness.events import ModelBuilt, ModelFailed, ModelLoaded, ProbeCollected, ProbeSkipped, RunStart
from harness.evidence import ProbeEvidence, load_evidence
from harness.format import ci_label
from harness.runstore import RunStore
from harness.suite import Suite
from probes.base import Probe

TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class Section:
    """One part of the report: an HTML anchor, a title for the page's contents, Markdown lines."""

    id: str
    title: str
    lines: list[str]


def _short(h: Any) -> str:
    if isinstance(h, dict):
        return ", ".join(f"{k}:{str(v)[:10]}" for k, v in h.items())
    return str(h)[:12] if h else "-"


def render_report(run_dir: Path) -> Path:
    """Write report.md, report.html and figures/ from evidence.json and run.jsonl; returns report.md."""
    run = RunStore.open(run_dir)
    evidence = load_evidence(run.dir / "evidence.json")
    suite = suite_of(run)
    fig_dir = run.dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    parts = sections(run, suite, evidence, fig_dir)
    path = run.dir / "report.md"
    path.write_text("\n".join(line for sec in parts for line in sec.lines) + "\n", encoding="utf-8")
    (run.dir / "report.html").write_text(render_html(suite, parts, run.dir), encoding="utf-8")
    return path


def sections(run: RunStore, suite: Suite, evidence: dict[str, Any], fig_dir: Path) -> list[Section]:
    """The report, in order: what the run was, the case, the models, each probe, how it was
    measured, what it cannot say, how to reproduce it."""
    probes = {p.instance: p for p in build_probes(suite)}
    evs = [ProbeEvidence.model_validate(pe) for pe in evidence["probes"]]
    subject_cases = _subject_cases(suite, probes, evs)
    conclusions = {s: case.conclude(cases) for s, _, cases in subject_cases if cases}
    out = [
        Section("run", f"parentage evidence report: {suite.name}", _header(run, suite, evidence)),
        Section("plain", "In plain words", _plain(suite, subject_cases, conclusions, evs)),
        Section("case", "The case", _case(subject_cases, conclusions)),
        Section("models", "Models", _models(run, suite, list(probes.values()))),
    ]
    for ev in evs:
        lines = _probe_section(run, probes[ev.instance], ev, suite, fig_dir)
        out.append(Section(f"probe-{ev.instance}", f"Probe {ev.instance}", lines))
    out.append(Section("methods", "Methods", _methods(run, suite, evidence["stats"], probes, evs)))
    out.append(Section("limitations", "Limitations", _limitations(run, evidence, evs, conclusions)))
    out.append(
        Section(
            "reproduce",
            "Reproduce",
            [
                "## Reproduce",
                "",
                "From the folder that holds this run directory:",
                "",
                "```",
                f"parentage analyze {run.dir.name}   # re-run the statistics offline",
                f"parentage report {run.dir.name}",
                "```",
                "",
                "The resolved suite, package versions, git hash, model fingerprints and seeds are in `run.jsonl`.",
            ],
        )
    )
    return out


def _header(run: RunStore, suite: Suite, evidence: dict[str, Any]) -> list[str]:
    """Title, description, and what the run was: when, how complete, which code, which statistics."""
    start = run.start_event()
    starts = run.events(RunStart)  # one per session: the first started the run, the others resumed it
    resumed = f"; resumed {', '.join(s.time for s in starts[1:])}" if len(starts) > 1 else ""
    out = [f"# parentage evidence report: {suite.name}", ""]
    if suite.description:
        out += [suite.description.strip(), ""]
    env = start.environment
    git = env.get("git", {})
    stats = evidence["stats"]
    return [
        *out,
        f"- run: `{run.run_id}`, started {starts[0].time}{resumed}, analysed {evidence['created']}",
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


def _subject_cases(
    suite: Suite, probes: dict[str, Probe], evs: list[ProbeEvidence]
) -> list[tuple[str, list[str], list[case.ProbeCase]]]:
    """Per suspect: its name, the names it goes by, and every probe's case on it."""
    return [
        (subject, names, [c for ev in evs if (c := probes[ev.instance].case(ev, names, suite)) is not None])
        for subject, names in subjects(suite).items()
    ]


def _plain(
    suite: Suite,
    subject_cases: list[tuple[str, list[str], list[case.ProbeCase]]],
    conclusions: dict[str, case.Conclusion],
    evs: list[ProbeEvidence],
) -> list[str]:
    """The summary in plain words (``harness/plain.py``), first, for a reader who is not a statistician."""
    out = ["## In plain words", ""]
    parents = [m.name for m in suite.by_role("parent")]
    for subject, names, cases in subject_cases:
        if subject not in conclusions:
            out += [f"### {subject}", "", "No probe produced evidence on this model.", ""]
            continue
        out += plain.summary(" = ".join(names), parents, cases, conclusions[subject], evs)
    return out


def _case(
    subject_cases: list[tuple[str, list[str], list[case.ProbeCase]]], conclusions: dict[str, case.Conclusion]
) -> list[str]:
    """The case: per suspect, every probe's stance on each explanation and the conclusion the rule
    (``harness/case.py``) draws from them."""
    out = ["## The case", ""]
    for subject, names, cases in subject_cases:
        if subject not in conclusions:
            out += [f"### {subject}", "", "_No probe produced evidence on this model._", ""]
            continue
        out += case.render(" = ".join(names), cases, conclusions[subject])
    return [*out, "How the conclusion is drawn:", "", case.RULE, ""]


def conclusions_of(run_dir: Path) -> dict[str, str]:
    """Each suspect's conclusion in words (the names it goes by joined by " = "), as the report's
    case section states it: what ``run`` and ``analyze`` print last, so a reader need not open the
    report to learn the answer."""
    run = RunStore.open(run_dir)
    suite = suite_of(run)
    probes = {p.instance: p for p in build_probes(suite)}
    evs = [ProbeEvidence.model_validate(pe) for pe in load_evidence(run.dir / "evidence.json")["probes"]]
    return {
        " = ".join(names): case.conclude(cases).text if cases else "no probe produced evidence on this model"
        for _, names, cases in _subject_cases(suite, probes, evs)
    }


def _models(run: RunStore, suite: Suite, probes: list[Probe]) -> list[str]:
    """One row per model: role, backend and the fingerprint it was loaded with (a model only
    file-reading probes use, like the weights probe, is never loaded, and says so)."""
    served = {m.name for m in suite.models for p in probes if p.needs_backend and m.name in _names(suite, p)}
    loaded = {e.model: e for e in run.events(ModelLoaded)}
    failed = {e.model: e.error for e in run.events(ModelFailed) if e.model is not None}
    out = [
        "## Models",
        "",
        "| model | role | backend | status | weights (sha256) | dtype | chat template | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in suite.models:
        fp = loaded[m.name].fingerprint if m.name in loaded else {}
        status = (
            "loaded"
            if m.name in loaded
            else f"**failed to load**: {failed[m.name]}"
            if m.name in failed
            else "not served (only its files are read: no probe asks a backend)"
            if m.name not in served
            else "not reached (the run stopped before it)"
        )
        out.append(
            f"| {m.name} | {m.role} | {m.backend} | {status} | {_short(fp.get('weights_sha256'))} | "
            f"{fp.get('dtype', '-')} | {_short(fp.get('chat_template_sha256'))} | {m.notes or ''} |"
        )
    built = run.events(ModelBuilt)
    if built:  # what the rebuild probe spent: merges written, served and (unless kept) deleted
        size = sum(e.bytes for e in built)
        seconds = sum(e.seconds for e in built)
        kept = sum(e.kept for e in built)
        backends = sorted({e.model.get("backend", "?") for e in built})
        out += [
            "",
            f"Models built by probes (merges of the parents, mergekit): {len(built)}, {size / 1e9:.2f} GB written "
            f"in {seconds:.0f} s, served by {', '.join(backends)}; {kept} kept, {len(built) - kept} deleted once "
            "scored. Each one's recipe and size is in `run.jsonl` (`model_built`).",
        ]
    pins = [(m.name, attr, pin) for m in suite.models for attr, pin in m.hub.items()]
    if pins:
        out += ["", "Models named by Hub id, pinned to the commit tested:", ""]
        out += [f"- {name} ({attr}): `{p.repo_id}` at `{p.revision}` = commit `{p.commit}`" for name, attr, p in pins]
    return [*out, ""]


def _names(suite: Suite, probe: Probe) -> set[str]:
    return {m.name for m in suite.for_probe(probe.spec).models}


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
    counts = [c for c in run.events(ProbeCollected) if c.probe == ev.instance]
    if counts:
        # A resumed run logs each model again: its plan is the last session's, and what was computed
        # is the sum over sessions (the rest came from the cache, e.g. from an earlier run).
        planned = {c.model: c.requests for c in counts}
        total, computed = sum(planned.values()), sum(c.computed for c in counts)
        sessions = len(run.events(RunStart))
        over = f" over {sessions} sessions" if sessions > 1 else ""
        out += [f"Requests: {total} ({computed} computed{over}, {max(total - computed, 0)} from the cache).", ""]
    for s in (s for s in run.events(ProbeSkipped) if s.probe == ev.instance):
        out += [f"- skipped on `{s.model}`: {s.reason}", ""]
    return out


def _methods(
    run: RunStore, suite: Suite, stats: dict[str, Any], probes: dict[str, Probe], evs: list[ProbeEvidence]
) -> list[str]:
    """What actually ran, generated from the suite and the evidence: each probe with its data mode,
    models, sample sizes and parameters (thresholds included), then the shared statistics."""
    out = [
        "## Methods",
        "",
        f"Every interval is a {ci_label(1 - stats['alpha'])} interval; p-values within a model's tests are "
        f"corrected with {stats['correction']}; bootstrap CIs resample whole texts or questions (clusters), "
        f"{stats['bootstrap']} replicates, seed {stats['seed']}.",
        "",
    ]
    for ev in evs:
        probe = probes[ev.instance]
        models = ", ".join(probe.spec.models or [m.name for m in suite.models])
        asked = sorted({c.requests for c in run.events(ProbeCollected) if c.probe == ev.instance})
        units = sorted({e.n for e in ev.estimates if e.n})
        sizes = f"Requests per model: {_span(asked)}."
        if units:
            sizes += f" Texts behind each estimate: {_span(units)}."
        params = json.dumps(probe.params.model_dump(mode="json"), sort_keys=True)
        what = probe.description + ("" if probe.description.endswith((".", "?", "!")) else ".")
        out += [
            f"- **{ev.instance}** ({ev.probe} v{ev.version}; {ev.status}"
            + (f", data mode {ev.mode}" if ev.mode else "")
            + f"): {what} Models: {models}. {sizes} Parameters, thresholds included: `{params}`.",
        ]
    return [*out, ""]


def _span(xs: list[int]) -> str:
    return "none" if not xs else str(xs[0]) if len(xs) == 1 else f"{xs[0]}-{xs[-1]}"


def _limitations(
    run: RunStore, evidence: dict[str, Any], evs: list[ProbeEvidence], conclusions: dict[str, case.Conclusion]
) -> list[str]:
    """What this report cannot say, collected from the run: a partial collection, probes without
    controls, tests that could not reach alpha at the sizes asked for (each probe's limitations),
    truncated log-probs, models or capabilities that were missing, conflicts."""
    items: list[str] = []
    if not evidence["collection_complete"]:
        items.append("The collection did not finish: every number rests on the answers collected so far.")
    for ev in evs:
        if ev.status != "ok":
            items.append(f"`{ev.instance}` produced no evidence ({ev.status}): {ev.reason}")
        elif ev.calibrated is False:
            items.append(f"`{ev.instance}` is uncalibrated: no control answers to compare with.")
        items += [f"`{ev.instance}`: {x}" for x in ev.limitations]
        if ev.mode in ("topk", "next_token"):
            items.append(
                f"`{ev.instance}` saw only the top-k log-probs ({ev.mode}): distances are on the tokens the models "
                "share in their top-k, weaker and (next-token) biased against the full vocabulary."
            )
    for e in run.events(ModelFailed):
        items.append(
            f"Model `{e.model}` failed to load: {e.error}" if e.model else f"A backend failed mid-run: {e.error}"
        )
    for s in run.events(ProbeSkipped):
        items.append(f"`{s.probe}` skipped on `{s.model}`: {s.reason}")
    for subject, c in conclusions.items():
        items += [f"Conflict on {subject}: {f}" for f in c.flags]
    if not items:
        items.append("None recorded by the run beyond what each probe states.")
    return ["## Limitations", "", *[f"- {x}" for x in items], ""]


def render_html(suite: Suite, parts: list[Section], run_dir: Path) -> str:
    """The report as one self-contained HTML page: the sections' Markdown as HTML, figures as
    data URIs, no script, and a Content-Security-Policy that lets nothing be fetched."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["j2"]))
    rendered = [
        {"id": p.id, "title": p.title, "html": _embed_figures(md.render("\n".join(p.lines)), run_dir)} for p in parts
    ]
    page = env.get_template("report.html.j2")
    return page.render(title=f"parentage evidence report: {suite.name}", sections=rendered) + "\n"


def _embed_figures(html: str, run_dir: Path) -> str:
    """Replace each ``figures/NAME.png`` image source by the PNG's bytes as a data URI."""

    def data_uri(m: re.Match[str]) -> str:
        png = (run_dir / "figures" / m.group(1)).read_bytes()
        return f'src="data:image/png;base64,{base64.b64encode(png).decode()}"'

    return re.sub(r'src="figures/([^"/]+\.png)"', data_uri, html)
