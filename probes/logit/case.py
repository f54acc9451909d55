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

from typing import Any

from harness.case import EXPLANATIONS, ProbeCase, stances
from harness.format import ci_label
from probes.logit.render import merge_weight_text

ALL = set(EXPLANATIONS)
MAPPING: dict[str, tuple[set[str], set[str]]] = {
    "copy": ({"copy"}, ALL - {"copy"}),
    "interpolation": ({"merge"}, {"original", "distilled", "derived", "copy"}),
    "interpolation_plus_training": ({"merge_trained"}, ALL - {"merge_trained"}),
    "derived_from_one_parent": ({"derived"}, ALL - {"derived"}),
    "related": ({"derived"}, {"merge", "merge_trained", "copy", "original"}),
    "unrelated": ({"original", "distilled"}, {"merge", "merge_trained", "derived", "copy"}),
}


def _ci(s: dict[str, Any], name: str) -> str:
    return f"{s[name]:.3f} [{s[name + '_lo']:.3f}, {s[name + '_hi']:.3f}]"


def logit_case(title: str, s: dict[str, Any], parents: list[str], level: float) -> ProbeCase:
    """``s``: the suspect's per-model entry in the logit evidence."""
    verdict = s["verdict"]
    supports, contradicts = MAPPING.get(verdict, (set(), set()))
    weights = (
        f"a = {_ci(s, 'a_hat')}"
        if "a_hat" in s
        else ", ".join(f"{p} {s[f'weight[{p}]']:.2f}" for p in parents if f"weight[{p}]" in s)
    )
    resid, near = f"residual {_ci(s, 'residual')}", f"nearest parent {_ci(s, 'nearest_parent_distance')}"
    numbers = {
        "merge": f"{weights}, {resid}",
        "merge_trained": resid,
        "copy": near,
        "derived": near,
        "original": f"{resid}, {near}",
        "distilled": f"{resid}, {near}",
    }
    return ProbeCase(title, "lineage", stances(supports, contradicts, numbers), _sentence(s, parents, level))


def _sentence(s: dict[str, Any], parents: list[str], level: float) -> str:
    lab = ci_label(level)
    controls = (s.get("calibration") or {}).get("residual", {}).get("controls", {})
    vs = f", against {min(controls.values()):.2f} or more for every control" if controls else ""
    resid = f"a residual of {s['residual']:.3f} of the parents' distance ({lab} CI {s['residual_lo']:.3f}-" + (
        f"{s['residual_hi']:.3f}){vs}"
    )
    verdict = s["verdict"].replace("_", " ")
    if "a_hat" in s and s["verdict"] in ("interpolation", "interpolation_plus_training"):
        line = (
            f"Its log-probs sit on the line between {parents[0]} and {parents[1]} at a = {s['a_hat']:.3f} "
            f"({lab} CI {s['a_hat_lo']:.3f}-{s['a_hat_hi']:.3f}) towards {parents[0]}{merge_weight_text(s)}, leaving "
            f"{resid}"
        )
    else:
        near = s.get("nearest_parent", "?")
        line = (
            f"Its log-probs are {s['nearest_parent_distance']:.3f} parent distances from the nearest parent "
            f"({near}; {lab} CI {s['nearest_parent_distance_lo']:.3f}-{s['nearest_parent_distance_hi']:.3f}), with "
            f"{resid}"
        )
    return f"{line} (logit verdict: {verdict}, over {s.get('n_texts', '?')} texts)."
