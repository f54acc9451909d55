"""The logit probe's stance on each explanation of a suspect's origin (``harness.case``).

Its verdict (``verdict.py``) already weighs the numbers; this maps each verdict onto the
explanations it supports and contradicts, with the number that decides each cell:

| verdict | supports | contradicts |
|---|---|---|
| copy | copy | every other |
| interpolation | merge | original, distilled, derived, sibling, copy (merge trained further: silent) |
| interpolation plus training | merge trained further (and distilled, unless inherited weights shown) | every other |
| derived from one parent | derived (naming the parent) | every other |
| sibling | sibling (shares the parents' base) | every other |
| related | derived, sibling (which one not resolved) | merge, merge trained, copy, original, distilled |
| unrelated | original, distilled (logits cannot separate them) | merge, merge trained, derived, sibling, copy |
| inconclusive | nothing | nothing |

"derived", "sibling" and "related" are drawn only where the task-free inputs show inherited
weights (``verdict.py``), and "unrelated" where they show an initialisation of the model's own,
so "distilled" gets its support from the signal distillation cannot fake.

A merge trained only lightly stays inside a pure merge's residual, hence "silent" there.
"""

from __future__ import annotations

from harness.case import EXPLANATIONS, ProbeCase, stances
from harness.format import ci_label, fmt, fmt_range
from probes.logit.render import merge_weight_text
from probes.logit.result import LogitResult

ALL = set(EXPLANATIONS)
MAPPING: dict[str, tuple[set[str], set[str]]] = {
    "copy": ({"copy"}, ALL - {"copy"}),
    "interpolation": ({"merge"}, {"original", "distilled", "derived", "sibling", "copy"}),
    "interpolation_plus_training": ({"merge_trained"}, ALL - {"merge_trained"}),
    "derived_from_one_parent": ({"derived"}, ALL - {"derived"}),
    "sibling": ({"sibling"}, ALL - {"sibling"}),
    "related": ({"derived", "sibling"}, {"merge", "merge_trained", "copy", "original", "distilled"}),
    "unrelated": ({"original", "distilled"}, {"merge", "merge_trained", "derived", "sibling", "copy"}),
}


def logit_case(title: str, r: LogitResult, parents: list[str], level: float) -> ProbeCase:
    """``r``: the suspect's result in the logit evidence (placed against ``r.parents`` when some
    listed parents had no support)."""
    parents = r.parents or parents
    supports, contradicts = MAPPING.get(r.verdict, (set(), set()))
    if r.verdict == "interpolation_plus_training" and r.lineage_signal != "inherited":
        # off the line by what training or imitation leaves: a student of a merge looks the same
        supports, contradicts = supports | {"distilled"}, contradicts - {"distilled"}
    weights = f"a = {r.a_hat.text()}" if r.a_hat else ", ".join(f"{p} {fmt(w.value, 2)}" for p, w in r.weights.items())
    resid, near = f"residual {r.residual.text()}", f"nearest parent {r.nearest_parent_distance.text()}"
    ex = r.lineage_excess.get(r.nearest_parent)
    tf = r.task_free_distance.get(r.nearest_parent)
    signal = "" if tf is None else f"task-free distance {tf.text()}" + (f", excess {ex.text()}" if ex else "")
    numbers = {
        "merge": f"{weights}, {resid}",
        "merge_trained": resid,
        "copy": near,
        "derived": f"{near}; {signal}" if signal else near,
        "sibling": f"{near}; {signal}" if signal else near,
        "original": f"{resid}, {near}",
        "distilled": f"{near}; {signal}" if signal else f"{resid}, {near}",
    }
    parent = r.parent if r.verdict == "derived_from_one_parent" else None
    cells = stances(supports, contradicts, numbers)
    sentence, plain = _sentence(r, parents, level), _plain(r, parents)
    return ProbeCase(title, "lineage", cells, sentence, parent=parent, plain=plain, behavioural=True)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def _plain(r: LogitResult, parents: list[str]) -> str:
    """What the verdict means, in words a non-statistician can quote, with the one or two numbers
    that carry it (shares of the parents' gap as percentages)."""
    what = f"Its word-by-word predictions (log-probabilities) on {r.n_texts} texts"
    gap = f"{_pct(r.residual.value)} of the gap between the parents"
    cal = r.calibration.get("residual")
    versus = ""
    if cal and cal.controls:
        k = len(cal.controls)
        versus = (
            f", against {_pct(min(cal.controls.values()))} or more for "
            + ("the one control model" if k == 1 else f"each of the {k} control models")
            + " of known other origin"
        )
    if r.verdict in ("interpolation", "interpolation_plus_training") and r.a_hat is not None and len(parents) == 2:
        a = r.a_hat.value
        other = None if a is None else 1 - a
        blend = f"a blend of the parents', about {_pct(a)} {parents[0]} and {_pct(other)} {parents[1]}"
    elif r.verdict in ("interpolation", "interpolation_plus_training"):
        blend = "a blend of " + ", ".join(f"{p} ({_pct(w.value)})" for p, w in r.weights.items())
    else:
        blend = ""
    words = {
        "interpolation": f"{what} are {blend}, leaving {gap} unexplained{versus}: what averaging their weights gives.",
        "interpolation_plus_training": f"{what} lie near {blend}, but further off than a plain merge ({gap} "
        f"unexplained{versus}): a merge trained further, or a model taught to imitate one.",
        "derived_from_one_parent": f"{what} are closest to {r.parent}'s, and on random inputs that no training "
        f"teaches it still behaves like {r.parent}: weights inherited from it.",
        "sibling": f"{what} are no closer to either parent than the parents are to each other, but on random inputs "
        "it behaves like them: weights shared with them, through their common base.",
        "related": f"On random inputs that no training teaches, it behaves like {r.nearest_parent} (inherited "
        "weights), but its predictions do not show whether it is a fine-tune of one parent or shares their base.",
        "unrelated": "On random inputs that no training teaches, it behaves unlike the parents: its weights were "
        "not inherited from them.",
        "copy": f"{what} match {r.parent or r.nearest_parent}'s within the noise of serving the same model twice.",
    }
    return words.get(
        r.verdict,
        f"{what} neither form a blend of the parents nor set it clearly apart from them ({gap} unexplained).",
    )


def _sentence(r: LogitResult, parents: list[str], level: float) -> str:
    lab = ci_label(level)
    cal = r.calibration.get("residual")
    if cal and len(cal.controls) == 1:  # one model compared, not "every control"
        vs = f", against {min(cal.controls.values()):.2f} for the one control"
    elif cal and cal.controls:
        vs = f", against {min(cal.controls.values()):.2f} or more for every one of the {len(cal.controls)} controls"
    else:
        vs = ""
    resid = (
        f"a residual of {fmt(r.residual.value)} of the parents' distance "
        f"({lab} CI {fmt_range(r.residual.lo, r.residual.hi)}){vs}"
    )
    verdict = r.verdict.replace("_", " ")
    if r.a_hat and r.verdict in ("interpolation", "interpolation_plus_training"):
        a = r.a_hat
        line = (
            f"Its log-probs sit on the line between {parents[0]} and {parents[1]} at a = {fmt(a.value)} "
            f"({lab} CI {fmt_range(a.lo, a.hi)}) towards {parents[0]}{merge_weight_text(r)}, leaving {resid}"
        )
    else:
        d = r.nearest_parent_distance
        line = (
            f"Its log-probs are {fmt(d.value)} parent distances from the nearest parent "
            f"({r.nearest_parent}; {lab} CI {fmt_range(d.lo, d.hi)}), with {resid}"
        )
    dropped = (
        " Not supported by the evidence (no weight): "
        + ", ".join(f"{x} ({lab} CI of its weight {fmt_range(w.lo, w.hi)})" for x, w in r.unsupported.items())
        + "."
        if r.unsupported
        else ""
    )
    return f"{line} (logit verdict: {verdict}, over {r.n_texts} texts).{_signal_sentence(r, lab)}{dropped}"


def _signal_sentence(r: LogitResult, lab: str) -> str:
    """The lineage signal in words: inherited weights, or an initialisation of its own."""
    tf, ex = r.task_free_distance.get(r.nearest_parent), r.lineage_excess.get(r.nearest_parent)
    if tf is None:
        return " No task-free inputs were scored, so nothing here tells inherited weights from imitation."
    meaning = {
        "unrelated": "its own initialisation, not inherited weights",
        "derived_from_one_parent": "inherited weights",
        "sibling": "inherited weights",
        "related": "inherited weights",
    }.get(r.verdict, "")
    return (
        f" On task-free inputs (random words and characters, {r.n_task_free} of them) it is {fmt(tf.value)} "
        f"parents' distances from {r.nearest_parent} ({lab} CI {fmt_range(tf.lo, tf.hi)})"
        + (f", an excess of {fmt(ex.value)} over natural text" if ex is not None else "")
        + (f": {meaning}." if meaning else ".")
    )
