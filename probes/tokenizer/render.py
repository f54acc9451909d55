"""Presentation of the tokenizer probe's evidence: match tables, white-box diff, match-rate plot."""

from __future__ import annotations

from pathlib import Path

from harness.evidence import ProbeEvidence
from harness.format import ci_label, fmt_range
from probes.base import save_figure, subplots
from probes.tokenizer.case import tokenizer_case
from probes.tokenizer.result import TokenizerResult


def report_section(evidence: ProbeEvidence) -> str:
    """Best match per model, agreement with the suite's models, inseparable candidates, white box."""
    level = ci_label(evidence.ci_level)
    out = [
        f"| model | role | counts from | verdict | best reference-tokenizer match ({level} CI) |",
        "|---|---|---|---|---|",
    ]
    results = evidence.results(TokenizerResult)
    for m, e in results.items():
        top = next(iter(e.library_matches()), None)
        best = f"{top.k}/{top.n} ({fmt_range(100 * top.ci[0], 100 * top.ci[1], 1)}%)" if top else "-"
        out.append(f"| {m} | {e.role} | {e.method} | {e.verdict} | {best} |")
    out += ["", "Agreement with the other models in this suite (identical counts / strings):", ""]
    for m, e in results.items():
        if e.role == "suspect":
            cells = [f"{r.name} {r.k}/{r.n}" for r in e.vs_models]
            out.append(f"- {m}: " + ", ".join(cells))
    sep = evidence.tables.get("candidate_separability", [])
    if sep:
        out += [
            "",
            "Candidates no diagnostic string separates: " + "; ".join(", ".join(g["indistinguishable"]) for g in sep),
        ]
    wb = evidence.tables.get("white_box", [])
    if wb:
        out += [
            "",
            "White-box comparison of tokenizer files:",
            "",
            "| suspect | other | identical parts | differing parts | vocab Jaccard | first differing merge |",
            "|---|---|---|---|---|---|",
        ]
        for r in wb:
            out.append(
                f"| {r['suspect']} | {r['other']} ({r['role']}) | {', '.join(r['identical_parts']) or '-'} | "
                f"{', '.join(r['differing_parts']) or '-'} | {r['vocab_jaccard']:.3f} | "
                f"{r['first_differing_merge_rank'] if r['first_differing_merge_rank'] is not None else '-'} |"
            )
        diffs = [r for r in wb if r["chat_template_diff"]]
        for r in diffs[:3]:
            out += [
                "",
                f"Chat template diff, {r['suspect']} vs {r['other']}:",
                "",
                "```diff",
                r["chat_template_diff"][:3000],
                "```",
            ]
    return "\n".join(out) + "\n"


def figures(evidence: ProbeEvidence, out_dir: Path) -> list[tuple[str, Path]]:
    """The first suspect's exact-match rate against each candidate, with Wilson CIs."""
    results = evidence.results(TokenizerResult)
    suspects = [m for m, e in results.items() if e.role == "suspect"]
    if not suspects:
        return []
    e = results[suspects[0]]
    rows = e.matches[:15]
    fig, ax = subplots(figsize=(7, 0.3 * len(rows) + 1.5))
    rates = [r.rate for r in rows]
    err = [[r.rate - r.ci[0] for r in rows], [r.ci[1] - r.rate for r in rows]]
    ax.barh(range(len(rows)), rates, xerr=err, capsize=2)
    ax.set_yticks(range(len(rows)), [r.candidate for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.02)
    ax.set_xlabel(f"share of {e.n_strings} diagnostic strings with identical token counts")
    ax.set_title(f"{suspects[0]}: tokenizer match ({ci_label(evidence.ci_level)} Wilson CIs)")
    path = save_figure(fig, out_dir / f"{evidence.instance}_matches.png")
    return [("tokenizer match rate of the suspect against each candidate", path)]


def summary(ev: ProbeEvidence, parents: list[str]) -> str:
    """Per suspect: how it tokenises against the suite's parents first (what a merge needs), then
    the closest reference tokenizer, labelled as such (it read as the headline before)."""
    lines = []
    for m, e in ev.results(TokenizerResult).items():
        if e.role != "suspect":
            continue
        case = tokenizer_case(ev.instance, e, parents)
        library = f" Among the reference tokenizers: {e.verdict}." if e.verdict != "no candidates" else ""
        lines.append(f"{m}: {case.sentence if case else ''}{library}")
    return " ".join(lines)
