"""The text probe's stance on each explanation of a suspect's origin (``harness.case``).

Evidence from sampled text alone is lineage evidence of behaviour, not of weights: a student
distilled from the parents (or from their merge) imitates exactly what this probe measures. So
every verdict it gives supports "distilled" beside what it points to, and it never supports a
claim of shared weights ("sibling") or rules out a fine-tune it cannot tell from a merge (on an
unseen family a fine-tune of one parent met the interpolation rule):

| verdict | supports | contradicts |
|---|---|---|
| copy of X (indistinguishable at this sample size) | copy, derived, distilled | merge, merge trained further |
| interpolation | merge, merge trained further, distilled | copy, original |
| derived from one parent X | derived (naming X), distilled | merge, copy |
| inconclusive | nothing | nothing |

With logits or weights beside it, the case keeps only what every lineage probe supports, so the
text probe narrows nothing it cannot see; alone, it leaves every explanation it supports named.
"""

from __future__ import annotations

from harness.case import ProbeCase, stances
from harness.format import ci_label, fmt, fmt_p
from probes.text.result import TextResult

MAPPING: dict[str, tuple[set[str], set[str]]] = {
    "copy": ({"copy", "derived", "distilled"}, {"merge", "merge_trained"}),
    "interpolation": ({"merge", "merge_trained", "distilled"}, {"copy", "original"}),
    "derived_from_one_parent": ({"derived", "distilled"}, {"merge", "copy"}),
}


def text_case(title: str, r: TextResult, level: float) -> ProbeCase | None:
    """None for a verdict that takes no stance (inconclusive): the case then ignores the probe."""
    if r.verdict not in MAPPING:
        return None
    supports, contradicts = MAPPING[r.verdict]
    weights = ", ".join(f"{x} {w.text()}" for x, w in r.weights.items())
    gain = f"held-out gain {fmt(r.cv_gain, 4)} nats/token (p {fmt_p(r.cv_p)}), fit p {fmt_p(r.fit_p)}"
    eq = r.equality.get(r.parent or "")
    p_same = None if eq is None else eq.p_adjusted if eq.p_adjusted is not None else eq.p
    same = f"equal to {r.parent}'s samples: p {fmt_p(p_same)}" if eq else ""
    numbers = dict.fromkeys(supports | contradicts, f"weights {weights}; {gain}")
    if same:
        numbers.update(copy=same, derived=f"weight on {r.parent} {r.weights[r.parent or ''].text()}; {same}")
    lab = ci_label(level)
    sentence = (
        f"From {r.samples} sampled answers to {r.prompts} prompts alone, its text reads as "
        f"{r.verdict.replace('_', ' ')}{f' ({r.parent})' if r.parent else ''}: weights {weights} ({lab} CI), "
        f"{gain} (text probe; text cannot tell a model's weights from a student's imitation)."
    )
    parent = r.parent if r.verdict == "derived_from_one_parent" else None
    cells = stances(supports, contradicts, numbers)
    return ProbeCase(title, "lineage", cells, sentence, parent=parent, behavioural=True)
