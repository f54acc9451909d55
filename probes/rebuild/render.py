"""The rebuild probe's report section: per subject the verdict, the weight, the equality test and
the recipe as mergekit YAML; the distance curves as a figure."""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from harness.evidence import ProbeEvidence
from probes.base import save_figure, subplots
from probes.rebuild.case import best_fit, recipe_words
from probes.rebuild.result import FamilyFit, RebuildResult
from probes.rebuild.verdict import pinned

WORDS = {
    "rebuilt": "rebuilt: indistinguishable",
    "copy": "a parent, unchanged",
    "near": "differs beyond noise; nearer than either parent",
    "differs": "differs; no merge nearer than the parents",
    "not_rebuilt": "not rebuilt",
}


def fmt(x: float, spec: str) -> str:
    return format(x, spec) if math.isfinite(x) else "n/a"


def weights_text(f: FamilyFit) -> str:
    """The weight a, or every parent's weight where the family has several (" / " between them)."""
    return " / ".join(w.text(4) for w in f.weights) if f.weights else f.a.text(4)


def report_section(evidence: ProbeEvidence) -> str:
    results = evidence.results(RebuildResult)
    level = f"{100 * evidence.ci_level:g}% CI"
    out = [
        "Each subject against merges of the parents built with mergekit and served like it. Distances are in "
        "parents' distances (the two parents against each other = 1; with more, the mean over pairs); `a` is "
        "the first parent's share. "
        "Equality: the distance at the best rebuild is within repeat noise + storage rounding + what the "
        "weight's CI allows (p large: cannot be told apart).",
        "",
        f"| model | verdict | family | a, or every parent's weight ({level}) "
        f"| distance at the rebuild ({level}) | tolerance | p (equal) "
        "| rebuilds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    recipes = []
    for m, r in results.items():
        if not r.fits:
            out.append(f"| {m} | {WORDS[r.verdict]}: {r.reason} | | | | | | |")
            continue
        for f in sorted(r.fits, key=lambda f: f.family != r.best):  # the best family first
            head = f"{m} | {WORDS[r.verdict]}" if f.family == r.best else f"{m} | (not the nearest)"
            out.append(
                f"| {head} | {f.family} | {weights_text(f)} | {f.distance.text(4)} | {fmt(f.tolerance, '.2g')} | "
                f"{fmt(f.p_equal, '.2f')}{'' if pinned(f) else ' (weight not pinned)'} | "
                f"{r.rebuilds if f.family == r.best else ''} |"
            )
        if r.verdict in ("rebuilt", "near"):
            f = best_fit(r)
            recipe = yaml.safe_dump(f.recipe).strip()
            recipes += [f"Recipe for {m} ({recipe_words(r, f)}):", "", "```yaml", recipe, "```", ""]
    untried = sorted({u for r in results.values() for u in r.untried})
    if untried:
        out += ["", "Families not tried for the subjects no family rebuilt: " + "; ".join(untried) + "."]
    return "\n".join([*out, "", *recipes])


def figures(evidence: ProbeEvidence, out_dir: Path) -> list[tuple[str, Path]]:
    results = {m: r for m, r in evidence.results(RebuildResult).items() if r.fits}
    if not results:
        return []
    fig, ax = subplots(figsize=(7, 4))
    for m, r in results.items():
        f = best_fit(r)
        (line,) = ax.plot(f.points, [max(v, 1e-9) for v in f.curve], "o-", ms=3, label=f"{m} ({f.family})")
        ax.axvline(f.confirm_a, color=line.get_color(), lw=0.6, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("weight a of the first parent (0 and 1: the parents)")
    ax.set_ylabel("distance to the subject (parents' distances)")
    ax.legend(fontsize=7)
    path = save_figure(fig, out_dir / f"{evidence.instance}_curves.png")
    return [("Distance from each subject to the merges of its parents, by weight (dotted: the rebuild tested).", path)]
