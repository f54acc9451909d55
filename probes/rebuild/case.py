"""The rebuild probe's stance on each explanation of a suspect's origin (``harness.case``).

Lineage evidence: a merge of the parents that cannot be told apart from the suspect is the
strongest support a merge can get. A suspect that every rebuild misses, but whose best rebuild is
nearer than either parent, was trained after merging; or it is a fine-tune of one parent that
moved toward the other, or shares the parents' base without being made from either (measured:
the smol family's fine-tune of nex_mini and its sibling both sit nearer a merge than either
parent). All three stay open, and the other probes decide between them.
"""

from __future__ import annotations

from harness.case import EXPLANATIONS, ProbeCase, stances
from probes.rebuild.recipes import ON_CURVE, split_label
from probes.rebuild.result import FamilyFit, RebuildResult
from probes.rebuild.verdict import pinned


def equality_words(f: FamilyFit) -> str:
    words = f"tolerance {f.tolerance:.2g}, p = {f.p_equal:.2f}"
    return words if pinned(f) else words + "; the weight is not pinned, so equality is not claimed"


def best_fit(r: RebuildResult) -> FamilyFit:
    return next(f for f in r.fits if f.family == r.best)


def recipe_words(r: RebuildResult, f: FamilyFit) -> str:
    first, second = r.parents[:2]
    method, density = split_label(f.family)
    weights = f.confirm_weights or [f.confirm_a, 1 - f.confirm_a]
    if method == "linear":
        return " + ".join(f"{p} {w:.3f}" for p, w in zip(r.parents, weights)) + " (linear)"
    if method == "slerp":
        return f"slerp from {second} toward {first}, t = {f.confirm_a:.3f}"
    if method == "task_arithmetic":
        terms = " + ".join(f"{w:.3f} x ({p} - base)" for p, w in zip(r.parents, weights))
        return f"the base + {terms} (task arithmetic)"
    return f"{first} {f.confirm_a:.3f} + {second} {1 - f.confirm_a:.3f} ({method}, density {density:g}, on the base)"


def copied_parent(r: RebuildResult, f: FamilyFit) -> str:
    """The parent a "copy" verdict names: the one whose weight is (near) 1."""
    weights = f.confirm_weights or [f.confirm_a, 1 - f.confirm_a]
    return r.parents[max(range(len(weights)), key=weights.__getitem__)]


def nearest_parent(r: RebuildResult, f: FamilyFit) -> str | None:
    """The parent the curve bottoms out at: the weight's CI reaches an end of [0, 1], or the
    weight is within the search's last bracket of it."""
    a = f.a.value
    if a is None or split_label(f.family)[0] not in ON_CURVE or f.weights:
        return None
    if ((f.a.hi is not None and f.a.hi >= 1) or a >= 1 - f.resolution) and a >= 0.5:
        return r.parents[0]
    if ((f.a.lo is not None and f.a.lo <= 0) or a <= f.resolution) and a < 0.5:
        return r.parents[1]
    return None


def rebuild_case(title: str, r: RebuildResult) -> ProbeCase:
    f = best_fit(r)
    everything = set(EXPLANATIONS)
    d = f"distance {f.distance.value:.2g} of the parents' distance; {equality_words(f)}"
    if r.verdict == "rebuilt":
        cells = stances({"merge"}, everything - {"merge"}, dict.fromkeys(everything, d))
        sentence = (
            f"Rebuilt: merging {recipe_words(r, f)} with mergekit gives a model that cannot be told apart from it "
            f"({d}); the weight is {f.a.text()}."
        )
        plain = f"We rebuilt it: the merge {recipe_words(r, f)} answers as it does, within measurement noise."
    elif r.verdict == "copy":
        parent = copied_parent(r, f)
        cells = stances({"copy"}, everything - {"copy"}, dict.fromkeys(everything, d))
        sentence = f"The rebuild that matches it is {parent} itself ({d}): a copy of {parent}."
        plain = f"It answers exactly as {parent} does."
    elif r.verdict == "near":
        near = {"merge_trained", "derived", "sibling"}
        cells = stances(near, {"merge", "copy"}, dict.fromkeys(everything, d))
        sentence = (
            f"No merge of the parents reproduces it: the nearest, {recipe_words(r, f)}, differs beyond noise "
            f"({d}), yet is nearer than either parent: trained after merging, a fine-tune of one parent moved "
            "toward the other, or a sibling of the parents."
        )
        plain = (
            "No merge of the parents answers as it does, but the best one comes closer than either parent: it was "
            "trained after merging, or it is a fine-tune or a sibling of the parents (other probes tell these apart)."
        )
    elif (end := nearest_parent(r, f)) is not None:
        cells = stances(set(), {"merge", "copy"}, dict.fromkeys(everything, d))
        sentence = f"No merge of the parents reproduces it: the nearest is {end} itself, and it differs ({d})."
        plain = f"No merge of the parents answers as it does; the nearest is {end} itself, which differs from it."
    else:
        cells = stances(set(), {"merge", "copy"}, dict.fromkeys(everything, d))
        sentence = f"No merge of the parents reproduces it: the nearest, {recipe_words(r, f)}, differs ({d})."
        plain = "No merge of the parents answers as it does, and none comes nearer than the parents themselves."
    reproduced = f"merging {recipe_words(r, f)} with mergekit" if r.verdict == "rebuilt" else ""
    return ProbeCase(title, "lineage", cells, sentence, plain=plain, reproduced=reproduced)
