"""The tokenizer probe's stance on each explanation of a suspect's origin (``harness.case``).

A necessary condition: an element-wise merge, a copy or a fine-tune keeps its parents'
tokenizer, so a tokenizer that differs from a parent's rules out a merge, a copy of it and a
merge trained further. A tokenizer identical to the parents' is consistent with all of them but
proves none (many models share a public tokenizer): it is silent on an original or distilled
model.
"""

from __future__ import annotations

from harness.case import ProbeCase, stances
from probes.tokenizer.result import TokenizerResult


def parent_matches(entry: TokenizerResult, parents: list[str]) -> dict[str, tuple[int, int]]:
    """(strings with identical counts, strings) against each parent the suspect was compared with."""
    rows = {r.name: r for r in entry.vs_models}
    return {p: (rows[p].k, rows[p].n) for p in parents if p in rows}


def tokenizer_case(title: str, entry: TokenizerResult, parents: list[str]) -> ProbeCase | None:
    matches = parent_matches(entry, parents)
    if not matches:
        return None
    same = [p for p, (k, n) in matches.items() if k == n]
    differ = [p for p in matches if p not in same]
    counts = ", ".join(f"{p} {k}/{n}" for p, (k, n) in matches.items())
    if not differ:
        sentence = f"It tokenises exactly as {_and(same)} ({counts} strings with identical token counts)."
        shared = {"merge", "merge_trained", "derived", "sibling", "copy"}
        cells = stances(shared, set(), dict.fromkeys(("merge", "copy"), counts))
    elif not same:
        sentence = f"Its tokenizer differs from every parent's ({counts} strings with identical token counts)."
        ruled_out = {"merge", "merge_trained", "copy", "derived", "sibling"}
        cells = stances({"original"}, ruled_out, dict.fromkeys(ruled_out | {"original"}, counts))
    else:
        sentence = f"It tokenises as {_and(same)} but not as {_and(differ)} ({counts} identical counts)."
        cells = stances({"derived", "copy"}, {"merge", "merge_trained"}, dict.fromkeys(("merge", "derived"), counts))
    return ProbeCase(title, "necessary", cells, sentence)


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
