"""The weights probe's stance on each explanation of a suspect's origin (``harness.case``).

Lineage evidence, the strongest there is: parameters on the parents' line (or simplex) at the
storage floor are a merge and nothing else; the same with a residual well above the floor is a
merge trained further (or merged by a method the family fits do not model); one parent carrying
the weight is a fine-tune of it; a bit-level match is a copy; no fit above the controls' says
the weights are not made from the parents (an original, or a model distilled into its own
initialisation: weights cannot tell those two apart; nor, placed against the parents alone, a
sibling that fine-tuned their base in its own direction, which stays open).
"""

from __future__ import annotations

import math

from harness.case import EXPLANATIONS, ProbeCase, stances
from probes.weights.result import WeightsResult
from probes.weights.verdict import INSIDE, conversion


def weights_case(title: str, r: WeightsResult, level: float) -> ProbeCase:
    a = r.a.text() if r.a is not None else "n/a"
    number = f"a = {a}, cos fit {r.cos_fit:.3f}"
    everything = set(EXPLANATIONS)
    if r.verdict == "copy" and r.parent == r.reference and r.reference not in r.weights:
        d = f"|S - {r.reference}|/|S| {r.distance_to[r.reference]:.2g}"
        cells = stances({"sibling"}, everything - {"sibling"}, {"sibling": d})
        sentence = (
            f"Its weights are a copy of the parents' shared base, {r.reference} ({d}): it is the model both "
            "parents were made from, not a model made from them."
        )
    elif r.verdict == "copy":
        cells = stances(
            {"copy"}, everything - {"copy"}, {"copy": f"|S - {r.parent}|/|S| {r.distance_to[r.parent or '']:.2g}"}
        )
        how = conversion(r, r.parent or "")
        sentence = (
            f"Its weights are a copy of {r.parent}'s{f' ({how})' if how else ''}: relative distance "
            f"{r.distance_to[r.parent or '']:.2g}, every element within what a dtype conversion moves."
        )
    elif r.verdict == "interpolation":
        supports = {
            "linear": {"merge"},
            "slerp": {"merge"},
            "sparse (ties/dare)": {"merge", "merge_trained"},  # the sparse fit is not modelled to the floor
        }.get(r.family.name, {"merge_trained"})
        cells = stances(supports, everything - supports, dict.fromkeys(everything, number))
        weights = ", ".join(f"{p} {w.value:.3f}" for p, w in r.weights.items() if w.value is not None)
        sentence = (
            f"Its weights are a merge of {', '.join(r.weights)} (family: {r.family.name}; weights {weights}; "
            f"first parent's a = {a}) over {r.tensors} tensors: cos fit {r.cos_fit:.4f} against {r.null_cos:.3f} for "
            f"a non-merge ({r.null_source}), relative residual {r.rel_residual:.2g} (storage floor "
            f"{r.storage_floor:.2g})."
        )
    elif r.verdict == "unrelated":
        shared = {"merge", "merge_trained", "copy", "derived", "sibling"}
        kin = ", ".join(f"{m} {c:.3f}" for m, c in r.kin_to.items())
        cells = stances({"original", "distilled"}, shared, dict.fromkeys(everything, f"median cosine {kin}"))
        sentence = (
            f"Its weights share nothing with the parents' or their reference's: median matrix cosine {kin}, at or "
            f"below {r.kin_bound:.3f}, as separate initialisations are."
        )
    elif r.verdict == "derived":
        cells = stances(
            {"derived"}, {"merge", "copy", "original", "distilled", "sibling"}, dict.fromkeys(everything, number)
        )
        sentence = f"Its weights are {r.parent}'s, moved (cos fit {r.cos_fit:.3f}, {r.parent} carries the weight)."
    else:
        fit = f"cos fit {r.cos_fit:.3f} vs null {r.null_cos:.3f}"
        sentence = (
            f"Its weights are not an interpolation of the parents': cos fit {r.cos_fit:.3f}, not above "
            f"{r.null_cos:.3f} ({r.null_source}); {100 * r.tensors_cos_below_half:.0f}% of tensors fit with cos < 0.5."
        )
        words = _family_words(r)
        if words:
            # It shares the family's weights (not an own initialisation) but its update from R is none of
            # the parents'. With R the parents' base and the poor fit's weight spread over both parents, a
            # sibling; with the weight on one parent, a fine-tune of it that moved farther than the fit
            # allows is one too, and with R a parent, so is a fine-tune of R.
            total = sum(w.value or 0.0 for w in r.weights.values())
            spread = total > 0 and sum((w.lo or 0.0) / total > INSIDE[0] for w in r.weights.values()) >= 2
            supports = {"sibling"} if r.reference not in r.weights and spread else {"sibling", "derived"}
            cells = stances(supports, everything - supports, dict.fromkeys(everything, f"{fit}; median cosine {words}"))
            sentence += f" Yet they are the family's (median matrix cosine {words}, above {r.kin_bound:.3f}): " + (
                "the parents' base, fine-tuned its own way."
                if supports == {"sibling"}
                else "a sibling from the parents' common ancestor, or a fine-tune of one parent that moved farther "
                "than the fit allows, which the weights here cannot tell apart."
            )
        else:
            cells = stances(
                {"original", "distilled", "sibling"},
                {"merge", "merge_trained", "copy", "derived"},
                dict.fromkeys(everything, fit),
            )
    parent = r.parent if r.verdict == "derived" else None
    apart = r.strangers()
    strangers = (
        "The weights show that "
        + ", ".join(f"{pair} share none (median cosine {c:.3f}, below {r.kin_bound:.3f})" for pair, c in apart.items())
        if apart
        else ""
    )
    return ProbeCase(title, "lineage", cells, sentence, parent=parent, plain=_plain(r), strangers=strangers)


def _plain(r: WeightsResult) -> str:
    """The verdict in words a non-statistician can quote."""
    if r.verdict == "copy" and r.parent == r.reference and r.reference not in r.weights:
        return f"Its published weights are those of {r.reference}, the base both parents were made from."
    if r.verdict == "copy":
        return f"Its published weights are {r.parent}'s, element for element (up to a change of number format)."
    if r.verdict == "interpolation":
        mix = " + ".join(f"{w.value:.2f} x {p}" for p, w in r.weights.items() if w.value is not None)
        exact = r.rel_residual <= 3 * r.storage_floor
        return f"Its published weights are {mix}" + (
            ", to within rounding: a weight merge." if exact else ", plus changes a merge alone does not make."
        )
    if r.verdict == "derived":
        return f"Its published weights are {r.parent}'s, changed by further training."
    if r.verdict == "unrelated":
        return "Its published weights have nothing in common with the parents': a model of its own initialisation."
    if _family_words(r):
        return (
            "Its published weights come from the parents' family (they started where the parents did) but are no "
            "mix of theirs: trained its own way from a common ancestor."
        )
    return (
        "Its published weights are not the parents': a mix of theirs fits it no better than it fits unrelated models."
    )


def _family_words(r: WeightsResult) -> str:
    """The subject's median matrix cosine to R and each parent, in words, where every one lies above
    the bound separate initialisations stay below (it shares the family's weights); else ""."""
    kin = {m: c for m, c in r.kin_to.items() if math.isfinite(c)}
    if not kin or not math.isfinite(r.kin_bound) or any(c <= r.kin_bound for c in kin.values()):
        return ""
    return ", ".join(f"{m} {c:.3f}" for m, c in kin.items())
