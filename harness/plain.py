"""The report's summary in plain words: for a reader who is not a statistician.

Per suspect, five short paragraphs: the question, the answer, how sure, what it rests on, what
would change it. Generated from the same probe cases and conclusion as "The case"
(``harness/case.py``), so the two can never disagree; the specialist sections follow it.
"""

from __future__ import annotations

from harness.case import Conclusion, ProbeCase
from harness.evidence import ProbeEvidence
from harness.format import ci_label

# What each explanation means, in everyday words.
MEANING = {
    "original": "a model of its own, trained from its own starting point",
    "distilled": "trained from its own starting point to imitate the parents (distillation)",
    "merge": "made by averaging the parents' weights (a weight merge)",
    "merge_trained": "made by averaging the parents' weights, then trained further",
    "derived": "a fine-tune of one parent: its weights, trained further",
    "sibling": "made from the same base model as the parents, not from the parents themselves",
    "copy": "a copy of a parent",
}

# What new evidence would overturn each conclusion.
CHANGE = {
    "merge": "a control model of known other origin that comes as close to a blend of the parents, or another pair "
    "of candidate parents that explains it as well (whoever wrote the suite chose these parents; a pool of "
    "candidates tests the alternatives)",
    "merge_trained": "a control model of known other origin that comes as close to the parents, or the published "
    "weights (if any) failing to fit a blend of the parents",
    "derived": "a control model of known other origin that behaves as much like that parent on random inputs, or the "
    "published weights (if any) failing to match that parent's",
    "sibling": "the parents' shared base added as a parent, or the published weights (if any) fitting the parents",
    "copy": "differences beyond the noise of serving one model twice, on more texts",
    "original": "evidence of shared weights: the published weights (if any) fitting the parents, or its predictions "
    "on random inputs as close to a parent's as the parents are to each other",
    "distilled": "evidence of shared weights: the published weights (if any) fitting the parents, or its predictions "
    "on random inputs as close to a parent's as the parents are to each other",
}
# How much each kind of evidence may weigh (the rule in harness/case.py), said beside it.
ROLE = {
    "lineage": "this can decide",
    "necessary": "this can only rule explanations out",
    "circumstantial": "what it says about itself: this never decides",
}
UNDECIDED = (
    "more evidence: more texts or prompts, control models of known origin, and the published weights if there are any"
)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def summary(
    subject: str, parents: list[str], cases: list[ProbeCase], conclusion: Conclusion, evs: list[ProbeEvidence]
) -> list[str]:
    """Markdown for one suspect's summary in plain words."""
    who = " and ".join(parents) if parents else "the parents"
    out = [
        f"### {subject}",
        "",
        f"**The question.** Was {subject} made from the weights of {who} (merged, fine-tuned from one of them, or "
        "copied), or is it a model of its own?",
        "",
    ]
    left = conclusion.explanations
    if left:
        meaning = "; or ".join(MEANING[e] for e in left)
        out += [f"**The answer.** {_cap(conclusion.text)}: {meaning}.", ""]
    else:
        out += [f"**The answer.** No answer: {conclusion.text}.", ""]
    out += ["**How sure.** " + _how_sure(cases, conclusion, evs), ""]
    out += ["**What it rests on.**", ""]
    for weight in ("lineage", "necessary", "circumstantial"):  # what decides first
        out += [f"- {c.in_plain_words().rstrip('.')} ({ROLE[weight]})." for c in cases if c.weight == weight]
    change = "; or ".join(dict.fromkeys(CHANGE[e] for e in left)) if left else UNDECIDED
    out += ["", f"**What would change it.** {_cap(change)}.", ""]
    return out


def _how_sure(cases: list[ProbeCase], conclusion: Conclusion, evs: list[ProbeEvidence]) -> str:
    """Agreement among the probes that can decide, conflicts, and whether controls calibrate it."""
    deciding = [c for c in cases if c.weight == "lineage"]
    with_verdict = [c for c in deciding if c.supported()]
    left = set(conclusion.explanations)
    agree = [c for c in with_verdict if left and left <= c.supported()]
    parts = []
    if not deciding:
        parts.append("No probe that can decide (the model's predictions, or its weights) was run.")
    elif left and len(agree) == len(deciding):
        n = len(deciding)
        kinds = "Both kinds" if n == 2 else f"All {n} kinds" if n > 2 else "The one kind"
        parts.append(f"{kinds} of evidence that can decide point this way, each on its own.")
    elif left:
        parts.append(f"{len(agree)} of the {len(deciding)} probes that can decide point this way; the others do not.")
    else:
        parts.append("The probes that can decide do not point one way.")
    if conclusion.flags:
        parts.append(
            f"{len(conclusion.flags)} conflict{'s' if len(conclusion.flags) > 1 else ''} between probes (see The case)."
        )
    uncalibrated = [ev.instance for ev in evs if ev.calibrated is False]
    if uncalibrated:
        parts.append(
            "No control models of known origin were compared for " + ", ".join(uncalibrated) + ", so nothing "
            "anchors how unusual its closeness to the parents is: treat that part as indicative."
        )
    elif any(ev.calibrated for ev in evs):
        parts.append("The deciding numbers were compared with control models of known origin, run the same way.")
    level = ci_label(evs[0].ci_level) if evs else "95%"
    parts.append(f"Each number in the sections below comes with its {level} interval or its p-value.")
    return " ".join(parts)
