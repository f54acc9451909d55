"""The text probe's report section: per model the fitted weights and temperature, the held-out
gain, the fit test, the equality tests against each parent and the verdict; the self-check and
what the samples cost; and the summary line per suspect."""

from __future__ import annotations

from harness.evidence import Interval, ProbeEvidence
from harness.format import ci_label, fmt, fmt_p
from harness.suite import Suite
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
