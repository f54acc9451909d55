"""Presentation of the identity probe's evidence: summary sentence, report tables, claim-rate plot.

Reads only the evidence and the suite's label names, so a report renders again from a saved
``evidence.json``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.evidence import ProbeEvidence
from harness.format import ci_label, fmt_range
from probes.base import save_figure, subplots
from probes.identity.case import condition_words
from probes.identity.result import IdentityResult


def summary(ev: ProbeEvidence) -> str:
    """Whose identity each suspect claims, with the question-level test against the controls."""
    lines = []
    level = ci_label(ev.ci_level)
    for t in ev.tables["claims_vs_controls"]:
        rate = t["k"] / t["n"] if t["n"] else float("nan")
        lo, hi = t["ci"]
        lines.append(
            f"{t['suspect']} ({condition_words(t['condition'])}): claims {t['label']} ({t['parent']}'s identity) "
            f"{t['k']}/{t['n']} ({100 * rate:.1f}%, {level} CI {fmt_range(100 * lo, 100 * hi, 1)}) vs controls "
            f"{t['k_controls']}/{t['n_controls']}; p_adj {t['p_adjusted']:.2g} over {t['questions']} questions "
            "(question-level test)."
        )
    return " ".join(lines)


def report_section(evidence: ProbeEvidence, labels: list[str]) -> str:
    """Claim counts per model, condition and label; the rendered system text; verbatim reuse."""
    out = ["| model | condition | n | " + " | ".join(labels) + " |", "|---|---|---|" + "---|" * len(labels)]
    results = evidence.results(IdentityResult)
    for key, e in results.items():
        cells = []
        for lab in labels:
            x = e.labels[lab]
            worth = f"; worth {x.n_effective:.1f}" if x.n_effective is not None else ""
            cells.append(f"{x.k}/{x.n} ({100 * x.rate:.1f}%, {fmt_range(100 * x.ci[0], 100 * x.ci[1], 1)}{worth})")
        out.append(f"| {key.split(' | ')[0]} | {e.condition} | {e.n} | " + " | ".join(cells) + " |")
    out += [
        "",
        f"Each cell: claims / answers (rate, {ci_label(evidence.ci_level)} interval; the independent answers they are "
        "worth). Answers to one question resemble each other, so the interval is taken at that effective number, "
        "not at the count: equal counts whose claims sit on fewer questions are worth fewer answers and get a wider "
        "interval.",
    ]
    out += ["", "Prompt actually rendered for the first question (system text as the template applied it):", ""]
    for key, e in results.items():
        text = e.system_text_rendered
        out.append(f"- {key}: " + (text if text.startswith("(rendered by the server") else f"`{text[:160]!r}`"))
    reuse = evidence.tables.get("verbatim_reuse", [])
    if reuse:
        out += ["", "Verbatim reuse (condition 'none'):", ""]
        for r in reuse:
            versus = (
                f"vs {100 * r['rate_controls']:.1f}% with the controls (permutation p {r['p']:.2g})"
                if r["rate_controls"] is not None
                else "(no controls in this run to compare with, so no test)"
            )
            out.append(
                f"- {r['suspect']} vs {r['parent']}: {100 * r['rate_parent']:.1f}% of responses share a run of "
                f">= {r['threshold']} tokens with {r['parent']} {versus}; longest: "
                + "; ".join(f'{x["tokens"]} tokens "{x["text"]}"' for x in r["longest"][:2])
            )
    return "\n".join(out) + "\n"


def figures(evidence: ProbeEvidence, out_dir: Path, labels: list[str]) -> list[tuple[str, Path]]:
    """Claim rates with Wilson CIs per model and condition, one bar per label."""
    results = evidence.results(IdentityResult)
    keys = list(results)
    fig, ax = subplots(figsize=(max(6, 0.9 * len(keys) * len(labels) / 2 + 2), 4))
    width = 0.8 / len(labels)
    for j, lab in enumerate(labels):
        xs = np.arange(len(keys)) + j * width
        rows = [results[k].labels[lab] for k in keys]
        rates = [x.rate for x in rows]
        lo = [x.rate - x.ci[0] for x in rows]
        hi = [x.ci[1] - x.rate for x in rows]
        ax.bar(xs, rates, width, yerr=[lo, hi], capsize=2, label=lab)
    ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, [k.replace(" | ", "\n") for k in keys], fontsize=7)
    ax.set_ylabel("share of responses claiming the label")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(f"Identity claims, {ci_label(evidence.ci_level)} Wilson CIs clustered by question")
    path = save_figure(fig, out_dir / f"{evidence.instance}_claims.png")
    return [("identity claim rates per model and condition", path)]
