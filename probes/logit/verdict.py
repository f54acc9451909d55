"""The verdict rule of the logit-interpolation probe: documented, configurable, and explained.

No single statistic separates the lineages (see DESIGN.md: a ties merge can leave as much
variance unexplained as a fine-tune; a copy makes the unexplained fraction undefined noise).
So the rule combines, in this order:

1. **copy** of parent X: the distance to the nearest parent (RMS over centred log-probs, in
   units of the distance between the parents) has a CI upper bound at or below
   ``copy_max_distance`` or within 3x the measured noise floor of scoring a parent twice.
2. **interpolation** (merge): the cross-validated interpolation beats the better single parent
   (Holm-adjusted p < alpha) by a margin that matters (mean out-of-sample gain >= ``min_cv_gain``:
   significance alone is cheap with thousands of points per text), every weight's CI lies
   inside (``a_margin``, 1 - ``a_margin``), the residual off the parents' line has a CI upper
   bound <= ``merge_max_residual``, and, when the suite has controls, the residual is below
   every control's.
3. **interpolation plus further training**: as 2, but the residual's upper bound is only
   <= ``trained_max_residual``.
4. **unrelated** (an initialisation of its own): the lineage signal
   (:func:`probes.logit.lineage.weight_descent`: distances on task-free inputs, which training
   never touched) says the model does not share the nearest parent's weights. This is checked
   before 2 and 3 too: a model that sits near the parents' line on natural text but not on
   task-free inputs imitates a merge (a student distilled from it) and is no merge.
5. **derived from one parent** X: not a merge, the lineage signal says the weights are
   inherited (the signal reads the actual token's log-prob, which every teacher-forced scoring
   reports exactly), and X is singled out: the distance to X divided by the distance to the
   farther parent has a CI upper bound <= ``derived_max_ratio``. "Not a merge" is ruled in by the
   data, not read off a merge rule that failed: the CV gain lies below ``min_cv_gain``, and either
   the residual's CI lower bound above ``merge_max_residual`` or every other parent's weight CI
   reaches below ``a_margin`` (where a merge needs more) (tiny zoo, top-20, seed 1: a
   task-arithmetic merge at CV gain 0.28, residual 0.48, missed the merge rule and was otherwise
   "derived from parent_a").
6. **sibling** (shares the parents' base, descends from neither): inherited weights, neither
   parent singled out (that ratio's CI lower bound above ``derived_max_ratio``), and off the
   parents' line beyond any merge trained further (residual CI lower bound above
   ``trained_max_residual``).
7. **related**: inherited weights, derived from one parent or a sibling, which is not resolved
   (the ratio's CI straddles ``derived_max_ratio``); the residual as for a sibling.
   Rules 5-7 read teacher-forced natural texts: from next-token data (one position per prompt)
   merges that miss the merge rule read as fine-tunes or siblings. There rules 5 and 6 read the
   task-free inputs' line instead (:func:`task_free_triangle`: scored teacher-forced in every
   mode), and "related" is not drawn.
8. **inconclusive** otherwise, also whenever the lineage signal is undecided or absent: nearness
   on natural text alone is likeness, not lineage (DESIGN.md, "Lineage is not likeness": a
   distilled student sits as close to a parent as a fine-tune does), so no verdict that claims
   shared weights short of a merge, and none that denies them, is drawn without it.

Known limit: a student distilled from a merge into a fresh initialisation can meet the residual
bound of a merge trained further (tiny zoo, top-20: residual 1.04 against merge_ft's 0.54; a
closer imitator gets nearer). The lineage signal withdraws that verdict when it says "own"
(rule 4); where it does not say "inherited" (next-token data, or no task-free inputs) the verdict
carries a caveat and its case names both "merge, trained further" and "distilled"
(``probes/logit/case.py``).

``derived_max_ratio``, ``min_cv_gain``, the residual bounds and ``own_min_task_free`` are constants,
parameters (``params.verdict``) a user can change and the report prints; their error rates on
both zoos are in the README's calibration table. The task-free yardstick (1: the parents' own
distance on those inputs) comes from the data.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from probes.base import ProbeParams
from probes.logit.lineage import weight_descent
from probes.logit.result import LogitResult

VERDICTS = (
    "copy",
    "interpolation",
    "interpolation_plus_training",
    "derived_from_one_parent",
    "sibling",
    "related",
    "unrelated",
    "inconclusive",
)


class VerdictThresholds(ProbeParams):
    copy_max_distance: float = Field(0.05, ge=0, description="Nearest-parent distance at or below which: copy.")
    a_margin: float = Field(0.05, ge=0, lt=0.5, description="Weights' CIs must lie inside (margin, 1 - margin).")
    min_cv_gain: float = Field(
        0.3, ge=0, lt=1, description="Least out-of-sample error reduction over the better parent for a merge."
    )
    merge_max_residual: float = Field(0.5, gt=0, description="Residual off the parents' line for a plain merge.")
    trained_max_residual: float = Field(0.75, gt=0, description="Residual for a merge trained further.")
    derived_max_ratio: float = Field(0.8, gt=0, lt=1, description="d(nearer parent) / d(farther parent).")
    own_min_task_free: float = Field(
        1.25,
        gt=1,
        description="Lineage signal: a task-free distance to the nearest parent (units of the parents' own distance "
        "there) whose CI lies above this means an initialisation of its own; at or below 1 (the parents' own "
        "distance, from the data), inherited weights; in between, undecided.",
    )


NO_SIGNAL_CAVEAT = (
    "without the lineage signal's word for inherited weights, a model distilled from a merge into its own "
    "initialisation looks like a merge trained further on natural text: the case names both"
)


def decide(
    r: LogitResult, t: VerdictThresholds, alpha: float, calibrated: bool, mode: str = "full"
) -> tuple[str, str | None, list[str]]:
    """Apply the rule to one model's result (values and CI bounds): (verdict, parent, reasons)."""
    reasons: list[str] = []
    near = r.nearest_parent_distance
    if r.residual.value is None or not np.isfinite(r.residual.value) or not near.finite():
        why = (
            "no scored position shares a token with both parents' reported top-k (undefined residual and "
            "distances): these data carry no logit evidence either way; use a richer data mode"
        )
        # The task-free inputs are scored on their own; they can still show an initialisation of its own.
        signals = {x: weight_descent(tf, t.own_min_task_free) for x, tf in r.task_free_distance.items()}
        if signals and all(d == "own" for d, _ in signals.values()):
            r.lineage_signal = "own"
            return "unrelated", None, [why, *(f"lineage signal to {x}: own ({w})" for x, (_, w) in signals.items())]
        return "inconclusive", None, [why]
    near_hi = float(near.hi)  # type: ignore[arg-type]  # finite() checked
    resid, resid_hi = float(r.residual.value), r.residual.hi
    copy_limit = max(t.copy_max_distance, 3 * r.noise_floor)
    if near_hi <= copy_limit:
        reasons.append(f"nearest-parent distance CI upper {near_hi:.3f} <= {copy_limit:.3f}")
        return "copy", r.nearest_parent, reasons
    descent, why_descent = weight_descent(r.task_free_distance.get(r.nearest_parent), t.own_min_task_free)
    r.lineage_signal = descent

    cv_p_adj = r.cv_p_adjusted if r.cv_p_adjusted is not None else r.cv_p
    cv_ok = cv_p_adj < alpha and r.cv_gain >= t.min_cv_gain
    tested = list(r.weights.values())[:1] if len(r.weights) == 2 else list(r.weights.values())
    weights_ok = all(
        w.lo is not None and w.hi is not None and t.a_margin < w.lo and w.hi < 1 - t.a_margin for w in tested
    )
    compared = calibrated and r.residual_below_all_controls is not None  # a lone control has no other to compare with
    below_controls = bool(r.residual_below_all_controls) if compared else True
    reasons.append(
        f"CV gain over the better parent {100 * r.cv_gain:.1f}% (needs >= {100 * t.min_cv_gain:.0f}%), "
        f"p_adj = {cv_p_adj:.2g} (needs < {alpha})"
    )
    reasons.append("weight CIs " + ("inside" if weights_ok else "not inside") + f" ({t.a_margin}, {1 - t.a_margin})")
    reasons.append(f"residual {resid:.3f} (CI upper {resid_hi:.3f})")
    if compared:
        others = "every other control" if r.role == "control" else "every control"
        reasons.append(f"residual {'' if below_controls else 'not '}below {others}")
    elif calibrated:
        reasons.append("no other control to compare the residual with")
    reasons.append(f"lineage signal to {r.nearest_parent}: {descent} ({why_descent})")
    if descent == "own":
        return "unrelated", None, reasons
    if cv_ok and weights_ok and below_controls and resid_hi is not None:
        if resid_hi <= t.merge_max_residual:
            return "interpolation", None, [*reasons, f"residual <= {t.merge_max_residual}"]
        if resid_hi <= t.trained_max_residual:
            reasons.append(f"{t.merge_max_residual} < residual <= {t.trained_max_residual}")
            if descent != "inherited":
                reasons.append("caveat: " + NO_SIGNAL_CAVEAT)
            return "interpolation_plus_training", None, reasons
    if descent != "inherited":
        reasons.append(
            "neither a merge nor a copy, and without the lineage signal's word nearness on natural text is "
            "likeness, not lineage: no claim of shared or separate weights is drawn"
        )
        return "inconclusive", None, reasons
    if mode == "next_token":
        return task_free_triangle(r, t, reasons)
    # Each claim below says "not a merge": the data must rule a merge out, not merely fail to confirm one.
    resid_lo = r.residual.lo if r.residual.lo is not None else -np.inf
    no_gain = r.cv_gain < t.min_cv_gain
    ratio = r.distance_ratio
    if ratio is not None and ratio.hi is not None and ratio.hi <= t.derived_max_ratio:
        reasons.append(f"d(nearer)/d(farther) CI upper {ratio.hi:.3f} <= {t.derived_max_ratio}: {r.nearest_parent}")
        # At the parent's end of the line: every other parent's weight CI reaches below the margin a merge needs.
        at_end = all(w.lo is not None and w.lo <= t.a_margin for x, w in r.weights.items() if x != r.nearest_parent)
        if no_gain and (resid_lo > t.merge_max_residual or at_end):
            why = (
                f"residual CI lower {resid_lo:.3f} > {t.merge_max_residual}"
                if resid_lo > t.merge_max_residual
                else f"the other parents' weight CIs reach below {t.a_margin}"
            )
            reasons.append(f"a merge leaning to {r.nearest_parent} ruled out: {why}, and CV gain below {t.min_cv_gain}")
            return "derived_from_one_parent", r.nearest_parent, reasons
        reasons.append(
            f"but a merge leaning to {r.nearest_parent} is not ruled out (it needs a CV gain below {t.min_cv_gain} and "
            f"a residual CI lower bound above {t.merge_max_residual} or the other parents' weights within "
            f"{t.a_margin} of 0): no claim short of a merge"
        )
        return "inconclusive", None, reasons
    if resid_lo <= t.trained_max_residual:
        reasons.append(
            f"between the parents with a residual CI lower bound {resid_lo:.3f} <= {t.trained_max_residual}: a merge "
            "trained further is not ruled out, so neither 'sibling' nor 'related' is claimed"
        )
        return "inconclusive", None, reasons
    if ratio is not None and ratio.lo is not None and ratio.lo > t.derived_max_ratio:
        reasons.append(
            f"d(nearer)/d(farther) CI lower {ratio.lo:.3f} > {t.derived_max_ratio}: no parent singled out, and "
            f"off the parents' line beyond any merge (residual CI lower {resid_lo:.3f} > {t.trained_max_residual}), so "
            "it shares the parents' base without descending from either (when one parent is the other's base, that "
            "base is the parent it descends from)"
        )
        return "sibling", None, reasons
    reasons.append(
        "d(nearer)/d(farther) straddles "
        f"{t.derived_max_ratio}: derived from one parent or a sibling from their base, which is not resolved"
    )
    return "related", None, reasons


def task_free_triangle(r: LogitResult, t: VerdictThresholds, reasons: list[str]) -> tuple[str, str | None, list[str]]:
    """Rules 5 and 6 for next-token data, read on the task-free inputs instead of the natural texts.

    Why: one position per prompt cannot rule out a merge the merge rule missed (tiny zoo: merges
    read as fine-tunes or siblings there in 4 of 27 cases), but the task-free inputs are scored
    teacher-forced in every mode, every position counted, and there each kind of model has its
    own place on the parents' line (tiny zoo seeds 0-2, next-token runs): a plain merge lies near
    the line (residual 0.09-0.29) at its weight; a merge trained further or a task-arithmetic merge
    lies off it (0.56-0.70) but inside it (position 0.55-0.72); a fine-tune of a parent lies off it
    by its own training (0.71-0.85) at that parent's end (position 0.96-1.00, or 0.03-0.14).

    So "derived from X" needs all of: X singled out (task-free d(nearer)/d(next) CI upper <=
    ``derived_max_ratio``); off the line (residual CI lower above ``merge_max_residual``); X the
    nearer parent on the natural prompts too, with no merge gain there; and a second sign that X
    alone carries the model: at X's end of the line (the position's CI within ``a_margin`` of X,
    where a merge needs more weight on the other parent), or X singled out on the prompts as well
    (their d(nearer)/d(farther) CI upper <= ``derived_max_ratio``). Being off the line alone is not
    enough here: on natural teacher-forced text the merge rule has already caught what is off the
    line in the middle, in next-token runs it has not (the task-arithmetic merge, tiny seed 2:
    task-free ratio CI upper 0.80, residual CI lower 0.52, but position 0.63-0.82 and the prompts'
    ratio 0.86-0.96). A fine-tune can leave its parent's end when it forgets some of the parent's
    own fine-tuning (smol family: nex_ft sits at 0.72-0.80 toward nex_mini on the line to
    nex_mini's base, smollm2); the prompts single nex_mini out (ratio 0.39-0.43)."""
    tf, ratio, resid, pos = r.task_free_distance, r.task_free_ratio, r.task_free_residual, r.task_free_weight
    if len(tf) != 2 or ratio is None or ratio.lo is None or ratio.hi is None or resid is None or resid.lo is None:
        reasons.append(
            "inherited weights, but next-token data (one position per prompt) cannot rule out a merge the merge rule "
            "missed, and no task-free line (two parents) is there to do it: no claim short of a merge"
        )
        return "inconclusive", None, reasons
    near = min(tf, key=lambda x: v if (v := tf[x].value) is not None else np.inf)
    first = next(iter(tf))
    no_gain = r.cv_gain < t.min_cv_gain
    where = (
        f"on the task-free inputs (scored teacher-forced): d(nearer)/d(next) {ratio.text()}, residual off the "
        f"parents' line {resid.text()}" + (f", position {pos.text()} ({first}'s weight)" if pos is not None else "")
    )
    if ratio.hi <= t.derived_max_ratio:
        at_end = (
            pos is not None
            and pos.lo is not None
            and pos.hi is not None
            and (pos.hi >= 1 - t.a_margin if near == first else pos.lo <= t.a_margin)
        )
        off_line = resid.lo > t.merge_max_residual
        prompts = r.distance_ratio  # d(nearer)/d(farther) on the natural prompts
        on_prompts = prompts is not None and prompts.hi is not None and prompts.hi <= t.derived_max_ratio
        if near == r.nearest_parent and no_gain and off_line and (at_end or on_prompts):
            why = (
                f"at {near}'s end of it (a merge needs more weight on the other parent)"
                if at_end
                else f"{near} singled out on the natural prompts as well (d(nearer)/d(farther) {prompts.text()})"  # type: ignore[union-attr]
            )
            reasons.append(f"{where}: {near} singled out, off the line and {why}, no merge gain on the prompts")
            return "derived_from_one_parent", near, reasons
        missing = [
            *([f"the natural prompts' nearest parent is {r.nearest_parent}"] if near != r.nearest_parent else []),
            *([f"a CV gain of {r.cv_gain:.2f} on the prompts"] if not no_gain else []),
            *([f"residual CI lower not above {t.merge_max_residual}"] if not off_line else []),
            *(
                [f"position not within {t.a_margin} of {near}'s end, nor {near} singled out on the prompts"]
                if not (at_end or on_prompts)
                else []
            ),
        ]
        reasons.append(
            f"{where}: {near} singled out, but a merge leaning to it is not ruled out ({'; '.join(missing)}): no "
            "claim short of a merge"
        )
        return "inconclusive", None, reasons
    if ratio.lo > t.derived_max_ratio and resid.lo > t.trained_max_residual and no_gain:
        reasons.append(
            f"{where}: no parent singled out and off the line beyond any merge trained further: it shares the "
            "parents' base without descending from either"
        )
        return "sibling", None, reasons
    reasons.append(f"{where}: neither one parent singled out nor a merge ruled out: no claim short of a merge")
    return "inconclusive", None, reasons
