"""The case: what every probe's evidence adds up to for one suspect, weighed against the
competing explanations of where it came from.

Each probe states, for each explanation, whether its evidence supports it, contradicts it or is
silent, with the number that decides (``Probe.case``; the probe knows what its evidence means).
This module holds the explanations, the rule that combines the probes' stances into one
conclusion, and its rendering. The rule is :data:`RULE`, printed in every report.

Probes weigh differently, by what their evidence can prove:

* **lineage** evidence (logit interpolation; weights when present) measures the model's own
  function or parameters against the parents': it decides;
* a **necessary condition** (the tokenizer: an element-wise merge, a copy or a fine-tune keeps
  its parents' tokenizer) can only rule explanations out;
* **circumstantial** evidence (identity claims) never decides: a model trained on a parent's
  persona data from its own initialisation claims the parent's name too.

Lineage is not likeness (DESIGN.md): "derived" and "sibling" claim shared weights, so a probe
supports them only with evidence that imitation does not carry over (the logit probe's
task-free inputs, the weights themselves). "Derived" names its parent only where a probe singled
it out (``ProbeCase.parent``); the conclusion names it only where every lineage probe that
supports "derived" names the same one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

EXPLANATIONS: dict[str, str] = {
    "original": "independent / original",
    "distilled": "distilled from the parents (into its own initialisation)",
    "merge": "a merge of the parents",
    "merge_trained": "a merge, trained further",
    "derived": "derived from one parent (fine-tune)",
    "sibling": "shares the parents' base (a sibling)",
    "copy": "a copy of a parent",
}

Stance = Literal["supports", "contradicts", "silent"]
Weight = Literal["lineage", "necessary", "circumstantial"]

RULE = """\
1. Lineage probes (logit interpolation, weights, rebuild) decide: the conclusion is the set of
   explanations that every lineage probe with a verdict supports. A merge that a rebuild
   reproduced is concluded with its recipe.
2. A necessary condition (the tokenizer) removes every explanation it contradicts, whatever the
   lineage probes say; if that leaves nothing, the evidence conflicts and no conclusion is drawn.
3. Circumstantial evidence (identity claims) never decides. Where it contradicts an explanation
   the lineage evidence leaves open, or supports none of them, the conflict is flagged and the
   conclusion rests on the lineage evidence.
4. Where the weights show that the parents share no weights (separate initialisations), the
   behavioural lineage probes (logit, text), whose unit is the parents' distance, are set aside.
5. Lineage probes that support no common explanation are a conflict: flagged, no conclusion;
   except where each supports a merge, some with training after it and some without (one data
   mode can see the training that another cannot): then both merges are named.
   Without any lineage verdict the case is not determined, unless a necessary condition rules out
   every explanation in which the model shares the parents' weights: then what it leaves stands.
"""
SHARED_WEIGHTS = {"merge", "merge_trained", "derived", "sibling", "copy"}
MERGES = {"merge", "merge_trained"}


@dataclass
class Cell:
    stance: Stance
    number: str = ""  # the number that decides the stance, as printed


@dataclass
class ProbeCase:
    """One probe's evidence on one suspect, per explanation, and its sentence for the paragraph."""

    probe: str  # column title, e.g. "logit (full)"
    weight: Weight
    cells: dict[str, Cell]
    sentence: str = ""  # plain language with the deciding numbers
    parent: str | None = None  # the parent its evidence singles out for "derived", if any
    # A recipe that reproduced the suspect (the rebuild probe's equality held), in words
    reproduced: str = ""
    # What it found, for a reader who is not a statistician (the report's summary in plain words,
    # and why the table's cells read as they do); the sentence where the probe gives none.
    plain: str = ""
    # Its lineage words read behaviour in the unit of the parents' own distance (logit, text): a
    # unit of kinship only where the parents share weights.
    behavioural: bool = False
    # Non-empty where this probe showed that the parents share no weights (the weights probe), in words.
    strangers: str = ""

    def in_plain_words(self) -> str:
        return self.plain or self.sentence

    def supported(self) -> set[str]:
        return {e for e, c in self.cells.items() if c.stance == "supports"}

    def contradicted(self) -> set[str]:
        return {e for e, c in self.cells.items() if c.stance == "contradicts"}


@dataclass
class Conclusion:
    explanations: list[str]  # what the rule leaves, in EXPLANATIONS order; empty: none drawn
    text: str
    flags: list[str] = field(default_factory=list)  # conflicts between probes
    notes: list[str] = field(default_factory=list)  # how the conclusion was reached, where not the usual way
    set_aside: list[str] = field(default_factory=list)  # probes whose lineage words did not count (RULE 4)


def stances(supports: set[str], contradicts: set[str], numbers: dict[str, str]) -> dict[str, Cell]:
    """Every explanation's cell: supports, contradicts or silent, with its number."""
    out = {}
    for e in EXPLANATIONS:
        stance: Stance = "supports" if e in supports else "contradicts" if e in contradicts else "silent"
        out[e] = Cell(stance, numbers.get(e, ""))
    return out


def conclude(cases: list[ProbeCase]) -> Conclusion:
    """Apply :data:`RULE` to the probes' stances on one suspect."""
    strangers = next((c.strangers for c in cases if c.strangers), "")
    aside = [c for c in cases if strangers and c.behavioural and c.weight == "lineage"]
    out = _conclude([c for c in cases if c not in aside])
    if aside:
        out.set_aside = [c.probe for c in aside]
        out.notes.insert(
            0,
            f"{strangers.rstrip('.')}. The parents' distance, the unit the {', '.join(c.probe for c in aside)} probe "
            "reads lineage in, is then a distance between strangers, within which any model trained on their kind of "
            "data reads as a relative: its lineage words are set aside.",
        )
    return out


def _conclude(cases: list[ProbeCase]) -> Conclusion:
    lineage = [c for c in cases if c.weight == "lineage" and c.supported()]
    flags: list[str] = []
    if not lineage:
        necessary = [c for c in cases if c.weight == "necessary" and SHARED_WEIGHTS <= c.contradicted()]
        if necessary:  # e.g. a tokenizer unlike every parent's: no weight lineage is possible
            left = set(EXPLANATIONS) - SHARED_WEIGHTS
            note = (
                f"No lineage probe reached a verdict; the {necessary[0].probe} probe alone rules out every "
                f"explanation that shares the parents' weights ({necessary[0].sentence.rstrip('.')})."
            )
            return Conclusion(_ordered(left), _wording(left), flags, [note])
        return Conclusion([], "not determined: no lineage evidence (logits or weights) reached a verdict", flags)
    left = set.intersection(*(c.supported() for c in lineage))
    notes: list[str] = []
    said = "; ".join(f"{c.probe}: {', '.join(EXPLANATIONS[e] for e in _ordered(c.supported()))}" for c in lineage)
    if not left and all(c.supported() & MERGES for c in lineage):
        # A merge trained lightly is both: a mode with one position per text, or one that sees only
        # the head of the distribution, reads how far off the line it is differently.
        left = set(MERGES)
        notes.append(
            f"Every lineage probe reads it as a merge of the parents, but they differ on training after the merge "
            f"({said}): both are named."
        )
    if not left:
        flags.append(f"The lineage probes disagree ({said}).")
        return Conclusion([], "conflicting lineage evidence: no conclusion", flags)
    for c in cases:
        if c.weight == "necessary" and left & c.contradicted():
            ruled_out = ", ".join(EXPLANATIONS[e] for e in _ordered(left & c.contradicted()))
            flags.append(f"{c.probe} contradicts {ruled_out} outright: {c.sentence.rstrip('.')}.")
            left -= c.contradicted()
    for c in cases:
        at_odds = c.contradicted() & left or (c.supported() and not c.supported() & left)
        if c.weight == "circumstantial" and at_odds:
            flags.append(
                f"{c.probe} points elsewhere than the lineage evidence ({c.sentence.rstrip('.')}). Identity claims "
                "alone are not lineage evidence: a model trained on a parent's persona data from its own "
                "initialisation claims the parent's name too. The conclusion rests on the lineage evidence."
            )
    if not left:
        return Conclusion([], "conflicting evidence: no conclusion", flags, notes)
    named = {c.parent for c in lineage if "derived" in c.supported()}
    text = _wording(left, named.pop() if len(named) == 1 else None)
    recipes = sorted({c.reproduced for c in lineage if c.reproduced})
    if left == {"merge"} and recipes:
        text += ", reproduced by " + " and by ".join(recipes)
    return Conclusion(_ordered(left), text, flags, notes)


def _ordered(es: set[str]) -> list[str]:
    return [e for e in EXPLANATIONS if e in es]


def _wording(left: set[str], parent: str | None = None) -> str:
    """The conclusion in words; where more than one explanation is left, every one is named."""
    if left == {"original", "distilled"}:
        return (
            "not a merge, copy or fine-tune of the parents: independent, or distilled from them into its own "
            "initialisation (the evidence cannot tell these two apart)"
        )
    words = {**EXPLANATIONS, "derived": f"derived from {parent} (a fine-tune of it)"} if parent else EXPLANATIONS
    named = [words[e] for e in _ordered(left)]
    if len(named) == 1:
        return named[0]
    return "one of: " + "; ".join(named) + " (the evidence cannot tell these apart)"


def render(subject: str, cases: list[ProbeCase], conclusion: Conclusion) -> list[str]:
    """Markdown for one suspect: the conclusion, the paragraph, conflicts, and the table."""
    out = [f"### {subject}", "", f"**Conclusion: {conclusion.text}.**", ""]
    sentences = [c.sentence for c in cases if c.sentence]
    if sentences:
        out += [" ".join(sentences), ""]
    out += [f"> **Conflict:** {f}" for f in conclusion.flags]
    out += [f"> **Note:** {n}" for n in conclusion.notes]
    if conclusion.flags or conclusion.notes:
        out.append("")
    out += [
        "| explanation | "
        + " | ".join(f"{c.probe} ({c.weight}{', set aside' if c.probe in conclusion.set_aside else ''})" for c in cases)
        + " |",
        "|---|" + "---|" * len(cases),
    ]
    for e, words in EXPLANATIONS.items():
        cells = []
        for c in cases:
            cell = c.cells[e]
            cells.append(cell.stance + (f": {cell.number}" if cell.number and cell.stance != "silent" else ""))
        mark = " **(concluded)**" if e in conclusion.explanations else ""
        out.append(f"| {words}{mark} | " + " | ".join(cells) + " |")
    out += ["", "Why the cells read as they do:", ""]
    out += [f"- {c.probe}: {c.in_plain_words()}" for c in cases]
    return [*out, ""]
