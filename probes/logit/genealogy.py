"""The pool's own genealogy, and a suspect's parents expressed in the pool's roots.

A pool drawn from the Hub holds the popular bases, their fine-tunes, and many merges of the same
few models. A suspect made of P1 and P2 is then also well explained by {P2, S} where S is itself
a merge of P1 and P2: 0.635 S + 0.365 P2 is the same point as 0.35 P1 + 0.65 P2, and in log-prob
space it can even fit better. Reporting {P2, S} alone tells the reader the suspect was made from
a model it was not made from. So, before a suspect's set is read:

1. **Genealogy.** Each candidate is analysed against the rest of the pool with the same
   selection and held-out confirmation as a suspect (``selection.select``). A candidate with two
   or more confirmed members is a *merge of the pool*; the others are its **roots** (parents,
   bases, fine-tunes, models of their own: nothing in the pool explains them). Each merge is then
   selected again from the roots alone: its form in roots. Selecting from roots only is what keeps
   the graph acyclic (on a line of merges of P1 and P2, each inner one is a merge of its
   neighbours, and of P1 and P2).
2. **Roots.** A suspect whose set has a merge of the pool among its members is rewritten in
   roots: the weights compose (w_S x S's root weights + the rest), and the roots are also refitted
   freely. The lineage is stated in roots: a merge of merges of P1 and P2 is a merge of P1 and P2,
   and the verdict is drawn against the roots, as it would be were they given as the parents.
   Both forms are reported, with how well each predicts held-out texts (fitted on one random
   half, scored on the other). That comparison cannot choose between them: log-probs are not
   linear in the weights, so merges nearer the suspect interpolate it better whatever it was made
   from (measured on the tiny zoo: {linear_0.25, linear_0.75} predict linear_0.6's held-out texts
   about 20x better than {parent_a, parent_b}, its true parents, with the same composed weights
   0.601 / 0.399).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.stats import wilcoxon_greater
from probes.logit.interpolation import sq_distance
from probes.logit.selection import SuspectPool, fit_set, holdout_gain, select


@dataclass
class Lineage:
    """One candidate in the pool's genealogy."""

    name: str
    merge_of: dict[str, float] = field(default_factory=dict)  # confirmed members and weights; {}: a root
    equivalent: list[list[str]] = field(default_factory=list)  # sets that predict held-out texts as well
    roots: dict[str, float] = field(default_factory=dict)  # its form in roots ({name: 1} for a root)
    roots_equivalent: list[list[str]] = field(default_factory=list)
    verdict: str | None = None  # the logit verdict against the members selected, where two or more were

    @property
    def is_root(self) -> bool:
        return not self.merge_of


def _weights(gram: np.ndarray, pool: list[str], chosen: list[str]) -> dict[str, float]:
    """Simplex weights of ``chosen`` (names in ``pool``) for row 0 of ``gram``, on every text."""
    idx = [pool.index(c) + 1 for c in chosen]
    w, _ = fit_set(gram.sum(axis=0), idx)
    return {c: float(x) for c, x in zip(chosen, w)}


def _restrict(gram: np.ndarray, pool: list[str], keep: list[str]) -> tuple[np.ndarray, list[str]]:
    names = [c for c in pool if c in keep]
    idx = [0, *[pool.index(c) + 1 for c in names]]
    return gram[:, idx][:, :, idx], names


def genealogy(
    pools: dict[str, SuspectPool],
    rng: np.random.Generator,
    alpha: float,
    min_gain: float,
    splits: int,
    verdict: Callable[[str, list[str]], str],
) -> dict[str, Lineage]:
    """Every candidate's relation to the rest of its pool (``pools``: each candidate's pool, less
    itself, with its Grams), and each merge's form in the roots. A candidate is a merge of the
    pool only where ``verdict`` (the logit probe's rule against the members selected, calibrated
    by the controls, as for a suspect) is a plain merge, "interpolation": selection alone made
    the tiny zoo's distilled student (seed 1) "base 0.67 + a_ft 0.33", and "a merge, trained
    further" made its base "student 0.50 + independent 0.50" (seed 0, 16 candidates): the base
    sits between two models trained from scratch on its own data. A merge trained further stays
    a root of the genealogy: the suspects' own verdicts still read it."""
    out: dict[str, Lineage] = {}
    for c, p in pools.items():
        if p.gram is None or len(p.pool) < 2:
            out[c] = Lineage(c, roots={c: 1.0})
            continue
        sel = select(p.gram, p.pool, rng, alpha, min_gain, splits)
        line = Lineage(c, equivalent=[e["set"] for e in sel.equivalent])
        if len(sel.selected) >= 2:
            line.verdict = verdict(c, sorted(sel.selected, key=p.pool.index))
        if line.verdict == "interpolation":
            line.merge_of = _weights(p.gram, p.pool, sel.selected)
        else:
            line.roots = {c: 1.0}
        out[c] = line
    roots = [c for c, line in out.items() if line.is_root]
    for c, line in out.items():
        if line.is_root:
            continue
        p = pools[c]
        gram, names = _restrict(p.gram, p.pool, roots)  # type: ignore[arg-type]
        if len(names) >= 2:
            sel = select(gram, names, rng, alpha, min_gain, splits)
            line.roots = _weights(gram, names, sel.selected) if len(sel.selected) >= 2 else {}
            line.roots_equivalent = [e["set"] for e in sel.equivalent]
    return out


def in_roots(
    gram: np.ndarray,
    pool: list[str],
    chosen: list[str],
    lineage: dict[str, Lineage],
    rng: np.random.Generator,
    alpha: float,
    min_gain: float,
    splits: int,
) -> dict[str, Any] | None:
    """A suspect's set ``chosen`` (names in ``pool``; Grams over [suspect, *pool]) rewritten in the
    pool's roots, or None where every member is a root (or a member's root form is unknown): the
    composed weights, the roots refitted, and the held-out comparison of the two forms."""
    if all(lineage.get(c, Lineage(c)).is_root for c in chosen):
        return None
    if any(not lineage[c].roots for c in chosen if c in lineage):
        return None
    direct = _weights(gram, pool, chosen)
    composed: dict[str, float] = {}
    for c, w in direct.items():
        for r, v in (lineage[c].roots if c in lineage else {c: 1.0}).items():
            composed[r] = composed.get(r, 0.0) + w * v
    roots = [r for r in pool if composed.get(r, 0.0) > 0]
    if not all(r in pool for r in composed) or len(roots) < 1:
        return None
    # The roots, selected again (held-out confirmation): two roots that are copies of each other
    # (a parent and its re-rounded copy, each named by a different merge) are not both kept.
    sub, names = _restrict(gram, pool, roots)
    if len(names) >= 2:
        kept = select(sub, names, rng, alpha, min_gain, splits).selected
        roots = [r for r in roots if r in kept] if len(kept) >= 2 else roots
    refit = _weights(gram, pool, roots)
    n = gram.shape[0]
    perm = rng.permutation(n)
    half, other = np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])
    small = [pool.index(c) + 1 for c in chosen]
    big = [pool.index(r) + 1 for r in roots]
    gain = holdout_gain(gram[half], gram[other], small, big)  # > 0 where the roots predict better
    p_direct, p_roots = wilcoxon_greater(-gain), wilcoxon_greater(gain)
    return {
        "direct": direct,
        "composed": composed,
        "refit": refit,
        "held_out_loss_ratio": float(np.mean(1 - gain)),  # roots' held-out loss over the direct set's
        "p_direct_better": p_direct,
        "p_roots_better": p_roots,
        "predicts_better": "direct" if p_direct < alpha else "roots" if p_roots < alpha else "neither",
        "texts": {"fit": len(half), "test": len(other)},
    }


def merge_partners(lineage: dict[str, Lineage]) -> dict[str, dict[str, list[str]]]:
    """Root -> {other root: the merges of the pool whose form in roots holds both}."""
    out: dict[str, dict[str, list[str]]] = {}
    for m, line in lineage.items():
        if line.is_root:
            continue
        roots = [r for r, w in line.roots.items() if w > 0]
        for r in roots:
            for q in roots:
                if q != r:
                    out.setdefault(r, {}).setdefault(q, []).append(m)
    return out


def partner_pair(
    gram: np.ndarray, pool: list[str], nearest: str, partners: dict[str, dict[str, list[str]]], alpha: float
) -> tuple[str, str, list[str]] | None:
    """For a suspect one candidate explains (``nearest``; Grams over [suspect, *pool]): (X, Y,
    the merges that join them) where X is ``nearest`` or a root no farther from the suspect (per
    text, Wilcoxon at ``alpha``: a parent's re-rounded copy stands in for it) and Y the root it
    is merged with in the pool (``partners``: :func:`merge_partners`), the nearer to the suspect
    where there are several; None where no such root has a partner."""
    per_text = {c: sq_distance(gram, 0, pool.index(c) + 1) for c in pool}
    total = {c: float(v.sum()) for c, v in per_text.items()}
    as_near = [c for c in pool if c != nearest and wilcoxon_greater(per_text[c] - per_text[nearest]) >= alpha]
    for x in [nearest, *sorted(as_near, key=total.__getitem__)]:
        joined = {y: ms for y, ms in partners.get(x, {}).items() if y in pool}
        if joined:
            y = min(joined, key=total.__getitem__)
            return x, y, joined[y]
    return None


def genealogy_rows(lineage: dict[str, Lineage]) -> list[dict[str, Any]]:
    """The genealogy as evidence rows (``tables["genealogy"]``)."""
    return [
        {
            "candidate": c,
            "root": line.is_root,
            "merge_of": line.merge_of,
            "near_equivalent": line.equivalent,
            "in_roots": line.roots,
            "roots_near_equivalent": line.roots_equivalent,
            "verdict": line.verdict,
        }
        for c, line in lineage.items()
    ]
