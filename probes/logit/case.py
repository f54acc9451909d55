"""The logit probe's stance on each explanation of a suspect's origin (``harness.case``).

Its verdict (``verdict.py``) already weighs the numbers; this maps each verdict onto the
explanations it supports and contradicts, with the number that decides each cell:

| verdict | supports | contradicts |
|---|---|---|
| copy | copy | every other |
| interpolation | merge | original, distilled, derived, copy (merge trained further: silent) |
| interpolation plus training | merge trained further | every other |
| derived from one parent | derived | every other |
| related | derived (from a parent or the parents' shared base) | merge, merge trained, copy, original |
| unrelated | original, distilled (logits cannot separate them) | merge, merge trained, derived, copy |
| inconclusive | nothing | nothing |

A merge trained only lightly stays inside a pure merge's residual, hence "silent" there.
"""

from __future__ import annotations

from harness.case import EXPLANATIONS, ProbeCase, stances
from harness.format import ci_label, fmt
from probes.logit.render import merge_weight_text
from probes.logit.result import LogitResult

ALL = set(EXPLANATIONS)
MAPPING: dict[str, tuple[set[str], set[str]]] = {
    "copy": ({"copy"}, ALL - {"copy"}),
    "interpolation": ({"merge"}, {"original", "distilled", "derived", "copy"}),
    "interpolation_plus_training": ({"merge_trained"}, ALL - {"merge_trained"}),
    "derived_from_one_parent": ({"derived"}, ALL - {"derived"}),
    "related": ({"derived"}, {"merge", "merge_trained", "copy", "original"}),
    "unrelated": ({"original", "distilled"}, {"merge", "merge_trained", "derived", "copy"}),
}


def logit_case(title: str, r: LogitResult, parents: list[str], level: float) -> ProbeCase:
    """``r``: the suspect's result in the logit evidence (placed against ``r.parents`` when some
    listed parents had no support)."""
    parents = r.parents or parents
    supports, contradicts = MAPPING.get(r.verdict, (set(), set()))
    weights = f"a = {r.a_hat.text()}" if r.a_hat else ", ".join(f"{p} {fmt(w.value, 2)}" for p, w in r.weights.items())
    resid, near = f"residual {r.residual.text()}", f"nearest parent {r.nearest_parent_distance.text()}"
    numbers = {
        "merge": f"{weights}, {resid}",
        "merge_trained": resid,
        "copy": near,
        "derived": near,
        "original": f"{resid}, {near}",
        "distilled": f"{resid}, {near}",
    }
    return ProbeCase(title, "lineage", stances(supports, contradicts, numbers), _sentence(r, parents, level))


def _sentence(r: LogitResult, parents: list[str], level: float) -> str:
    lab = ci_label(level)
    cal = r.calibration.get("residual")
    vs = f", against {min(cal.controls.values()):.2f} or more for every control" if cal and cal.controls else ""
    resid = f"a residual of {fmt(r.residual.value)} of the parents' distance ({lab} CI {fmt(r.residual.lo)}-" + (
        f"{fmt(r.residual.hi)}){vs}"
    )
    verdict = r.verdict.replace("_", " ")
    if r.a_hat and r.verdict in ("interpolation", "interpolation_plus_training"):
        a = r.a_hat
        line = (
            f"Its log-probs sit on the line between {parents[0]} and {parents[1]} at a = {fmt(a.value)} "
            f"({lab} CI {fmt(a.lo)}-{fmt(a.hi)}) towards {parents[0]}{merge_weight_text(r)}, leaving {resid}"
        )
    else:
        d = r.nearest_parent_distance
        line = (
            f"Its log-probs are {fmt(d.value)} parent distances from the nearest parent "
            f"({r.nearest_parent}; {lab} CI {fmt(d.lo)}-{fmt(d.hi)}), with {resid}"
        )
    dropped = (
        " Not supported by the evidence (no weight): "
        + ", ".join(f"{x} ({lab} CI of its weight {fmt(w.lo)}-{fmt(w.hi)})" for x, w in r.unsupported.items())
        + "."
        if r.unsupported
        else ""
    )
    return f"{line} (logit verdict: {verdict}, over {r.n_texts} texts).{dropped}"
