"""The identity probe's stance on each explanation of a suspect's origin (``harness.case``).

Circumstantial evidence: claiming a parent's persona, asked without a system prompt, at a rate
above the controls', is what a merge, a fine-tune or a copy of that parent does, and also what a
model distilled from it (or trained on its persona data) does; it is at odds only with an
independent original. Not claiming it proves nothing (a persona can be trained away), so that
case is silent everywhere. The case rule never lets it decide.
"""

from __future__ import annotations

from typing import Any

from harness.case import ProbeCase, stances
from harness.format import ci_label, fmt_range

PREFERRED = ("none", "neutral", "empty")  # conditions that show the model's own identity, best first


def condition_words(condition: str) -> str:
    """A condition as a reader says it: "without a system prompt", not "(none system prompt)"."""
    return {"none": "without a system prompt", "neutral": "with a neutral system prompt"}.get(
        condition, f"with the '{condition}' system prompt"
    )


def identity_case(
    title: str, tests: list[dict[str, Any]], names: list[str], parents: list[str], alpha: float
) -> ProbeCase | None:
    """``tests``: the identity evidence's ``claims_vs_controls`` rows (question-level tests)."""
    rows = [t for t in tests if t["suspect"] in names and t["parent"] in parents]
    conditions = [c for c in PREFERRED if any(t["condition"] == c for t in rows)]
    if not conditions:
        return None
    rows = [t for t in rows if t["condition"] == conditions[0]]
    prompt = condition_words(conditions[0])
    claims = [t for t in rows if t["p_adjusted"] < alpha and t["k"] * t["n_controls"] > t["k_controls"] * t["n"]]
    level = ci_label(1 - alpha)

    def said(t: dict[str, Any]) -> str:
        lo, hi = t["ci"]
        return (
            f"{t['label']} ({t['parent']}'s persona) in {t['k']}/{t['n']} answers ({100 * t['k'] / t['n']:.0f}%, "
            f"{level} CI {fmt_range(100 * lo, 100 * hi, 0)}%) vs {t['k_controls']}/{t['n_controls']} for the controls "
            f"(p_adj {t['p_adjusted']:.2g})"
        )

    if claims:
        text = "; ".join(said(t) for t in claims)
        short = "; ".join(
            f"{t['label']} {t['k']}/{t['n']} vs controls {t['k_controls']}/{t['n_controls']}" for t in claims
        )
        supports = {"merge", "merge_trained", "derived", "copy", "distilled"}
        cells = stances(supports, {"original"}, dict.fromkeys(supports | {"original"}, short))
        return ProbeCase(title, "circumstantial", cells, f"{prompt.capitalize()} it claims {text}.")
    text = "; ".join(f"{t['label']} {t['k']}/{t['n']}" for t in rows)
    sentence = f"{prompt.capitalize()} it claims no parent's persona more often than the controls ({text})."
    return ProbeCase(title, "circumstantial", stances(set(), set(), {}), sentence)
