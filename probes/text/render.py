"""The text probe's report section: per model the fitted weights and temperature, the held-out
gain, the fit test, the equality tests against each parent and the verdict; the self-check and
what the samples cost; and the summary line per suspect."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.evidence import Interval, ProbeEvidence
from harness.format import ci_label, fmt, fmt_p
from harness.suite import Suite
from probes.base import save_figure, subplots
from probes.text.result import TextResult


def report_section(evidence: ProbeEvidence, parents: list[str]) -> str:
    results = evidence.results(TextResult)
    level = ci_label(evidence.ci_level)
    head = " | ".join(f"weight {x} [{level}]" for x in parents)
    rows = [
        f"| model | role | prompts / samples / tokens | {head} | T [{level}] | held-out gain per token (p) | "
        "fit test: T² / components (p) | "
        + " | ".join(f"equal to {x}: p stratified (unstratified)" for x in parents)
        + " | verdict |",
        "|" + "---|" * (7 + 2 * len(parents)),
    ]
    for m, r in results.items():
        rows.append(
            f"| {m} | {r.role} | {r.prompts} / {r.samples} / {r.tokens} | "
            + " | ".join(r.weights[x].text() for x in parents)
            + f" | {r.temperature.text(2)} | {fmt(r.cv_gain, 4)} ({fmt_p(r.cv_p)}) | "
            f"{fmt(r.fit_statistic, 1)} / {r.fit_df} ({fmt_p(r.fit_p)}) | "
            + " | ".join(f"{fmt_p(r.equality[x].p_adjusted)} ({fmt_p(r.equality[x].p_unstratified)})" for x in parents)
            + f" | {r.verdict.replace('_', ' ')} |"
        )
    rows += ["", "Reasons:", ""] + [f"- {m}: {'; '.join(r.reasons)}" for m, r in results.items()]
    checks = evidence.tables.get("self_check", [])
    if checks:
        rows += [
            "",
            "Self-check (each parent's own answers fitted like a suspect's; an exact pipeline gives weight 1 on "
            "itself and the sampling temperature; the gap is the pipeline's distortion): "
            + "; ".join(
                f"{c['parent']}: weight on itself {Interval(**c['weight_on_itself']).text()}, temperature "
                f"{Interval(**c['temperature']).text(2)}"
                for c in checks
            )
            + ".",
        ]
    cost = evidence.tables.get("cost", [])
    if cost:
        rows += [
            "",
            "Cost (answers and tokens bought from each model's server; local scoring by the parents; answers "
            "scored as sampled had their token ids back, the others were re-tokenised):",
            "",
            "| model | answers | prompt tokens sent | answer tokens received | scored as sampled | "
            "teacher-forced by it | tokens it scored |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in cost:
            rows.append(
                f"| {c['model']} | {c['answers']} | {c['prompt_tokens_sent']} | {c['answer_tokens_received']} | "
                f"{c.get('scored_as_sampled', '')} / {c.get('scored_answers', '')} | "
                f"{c.get('teacher_forced', '')} | {c.get('tokens_scored', '')} |"
            )
    return "\n".join(rows) + "\n"


def summary(results: dict[str, TextResult], ci_level: float, suite: Suite) -> str:
    lines = []
    for m in (x.name for x in suite.by_role("suspect")):
        r = results.get(m)
        if r is None:
            continue
        weights = ", ".join(f"{x} {v.text()}" for x, v in r.weights.items())
        lines.append(
            f"**{m}**: {r.verdict.replace('_', ' ')} from {r.samples} sampled answers to {r.prompts} prompts "
            f"({r.tokens} tokens): weights {weights} ({ci_label(ci_level)}), fitted temperature "
            f"{r.temperature.text(2)}, held-out gain {fmt(r.cv_gain, 4)} nats/token (p {fmt_p(r.cv_p)})."
        )
    return "\n\n".join(lines)


def figures(evidence: ProbeEvidence, out_dir: Path) -> list[tuple[str, Path]]:
    """A forest plot: each model's fitted weight on the first parent with its CI, coloured by verdict;
    a merge sits strictly between 0 and 1, a copy or a fine-tune of one parent at an end."""
    results = evidence.results(TextResult)
    if not results:
        return []
    parents = list(next(iter(results.values())).weights)
    names = list(results)
    fig, ax = subplots(figsize=(6.5, 0.45 * len(names) + 1.6))
    colours = {"interpolation": "tab:red", "copy": "tab:purple", "derived_from_one_parent": "tab:orange"}
    for i, m in enumerate(names):
        w = results[m].weights[parents[0]]
        value = w.value if w.value is not None else float("nan")
        lo = value - (w.lo if w.lo is not None else value)
        hi = (w.hi if w.hi is not None else value) - value
        colour = colours.get(results[m].verdict, "tab:gray")
        ax.errorbar([value], [i], xerr=[[lo], [hi]], fmt="o", color=colour, capsize=3)
    ax.set_yticks(np.arange(len(names)), [f"{m} ({results[m].verdict.replace('_', ' ')})" for m in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(-0.05, 1.05)
    ax.axvline(0, color="k", lw=0.5)
    ax.axvline(1, color="k", lw=0.5)
    ax.set_xlabel(f"weight on {parents[0]} (log-linear interpolation of its samples)")
    ax.set_title(f"Text only: fitted weights, {ci_label(evidence.ci_level)} CIs over prompts")
    path = save_figure(fig, out_dir / f"{evidence.instance}_weights.png")
    return [(f"fitted weight on {parents[0]} per model, from sampled text alone", path)]
