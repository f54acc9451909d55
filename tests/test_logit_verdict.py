"""Issue 26: the logit verdict rule claims "not a merge" (derived, sibling, related) only where the
data rule a merge out: from teacher-forced natural texts, or, in next-token runs, from the
task-free inputs (scored teacher-forced there too).

Each case is one model's result as the headline benchmark measured it (tiny zoo, 64 texts; the
numbers are copied from `results/bench-2026-12-07`), put through :func:`probes.logit.verdict.decide`
alone. Before this rule, a merge that missed the merge rule by a hair fell through to the
fallbacks: the task-arithmetic merge below (seed 1, top-20) was "derived from parent_a", and from
next-token data merges read "sibling".
"""

from __future__ import annotations

import pytest

from harness.evidence import Interval
from probes.logit.result import LogitResult
from probes.logit.verdict import VerdictThresholds, decide


def result(
    a: tuple[float, float, float],
    residual: tuple[float, float, float],
    ratio: tuple[float, float, float],
    cv_gain: float,
    task_free: tuple[float, float, float],
    near: str = "parent_a",
    line: dict[str, tuple[float, float, float]] | None = None,
) -> LogitResult:
    """One model's result; ``line``: the task-free triangle of a next-token run (distances to
    parent_a and parent_b, the nearer-over-next ratio, residual off the line and position on it)."""
    iv = lambda v: Interval(value=v[0], lo=v[1], hi=v[2])  # noqa: E731
    tf = {near: iv(task_free)}
    extra = {}
    if line:
        tf = {"parent_a": iv(line["a"]), "parent_b": iv(line["b"])}
        extra = {
            "task_free_ratio": iv(line["ratio"]),
            "task_free_residual": iv(line["residual"]),
            "task_free_weight": iv(line["position"]),
        }
    return LogitResult(
        role="suspect",
        n_texts=64,
        a_hat=iv(a),
        weights={"parent_a": iv(a), "parent_b": iv((1 - a[0], 1 - a[2], 1 - a[1]))},
        residual=iv(residual),
        nearest_parent_distance=Interval(value=0.6, lo=0.55, hi=0.65),
        nearest_parent=near,
        distance_ratio=iv(ratio),
        cv_gain=cv_gain,
        cv_p=1e-12,
        p_weights_inside=1e-6,
        task_free_distance=tf,
        **extra,
    )


# (name, result, mode, expected verdict, expected parent)
CASES = [
    # A fine-tune of parent_a (seed 0, top-20): near parent_a, off the line beyond a plain merge,
    # nothing gained from parent_b; inherited weights on the task-free inputs.
    (
        "a_ft top-20",
        result((0.973, 0.964, 0.981), (0.649, 0.633, 0.667), (0.555, 0.545, 0.567), 0.002, (0.768, 0.697, 0.853)),
        "topk",
        "derived_from_one_parent",
        "parent_a",
    ),
    # The task-arithmetic merge (seed 1, top-20; read as full data, where the rule before this one
    # already trusted the signal and said "derived from parent_a"): CV gain 0.284 misses the merge
    # rule's 0.3, but its residual (CI from 0.450) is a plain merge's: a merge leaning to parent_a is
    # not ruled out.
    (
        "task_arithmetic",
        result((0.677, 0.657, 0.698), (0.475, 0.450, 0.501), (0.695, 0.673, 0.717), 0.284, (0.778, 0.663, 0.886)),
        "full",
        "inconclusive",
        None,
    ),
    # The sibling (seed 2, full): between the parents, no parent singled out, off the line beyond
    # any merge trained further.
    (
        "sibling full",
        result((0.348, 0.322, 0.372), (0.784, 0.755, 0.811), (0.841, 0.814, 0.867), 0.174, (0.889, 0.781, 0.987)),
        "full",
        "sibling",
        None,
    ),
    # A merge trained further that missed the CV threshold (merge_ft seed 1, top-20, its gain 0.304
    # lowered to 0.29): between the parents and within a trained merge's residual: no "sibling" or
    # "related" claim.
    (
        "merge_ft near the CV threshold",
        result((0.597, 0.567, 0.625), (0.553, 0.536, 0.571), (0.841, 0.796, 0.888), 0.29, (0.789, 0.724, 0.862)),
        "full",
        "inconclusive",
        None,
    ),
    # Next-token data (seed 0): the task-arithmetic merge read "sibling", the fine-tune of
    # parent_b "sibling" too. One position per prompt cannot rule a merge out.
    (
        "task_arithmetic next-token",
        result((0.507, 0.496, 0.517), (0.855, 0.843, 0.866), (0.993, 0.982, 1.0), 0.246, (0.755, 0.672, 0.862)),
        "next_token",
        "inconclusive",
        None,
    ),
    # The same fine-tune of parent_b without the task-free line: nothing rules a merge out.
    (
        "b_ft next-token, no task-free line",
        result((0.331, 0.318, 0.344), (0.930, 0.918, 0.942), (0.862, 0.852, 0.873), 0.113, (0.773, 0.690, 0.869)),
        "next_token",
        "inconclusive",
        None,
    ),
    # Next-token runs read the task-free inputs' line (scored teacher-forced; results/bench-2026-12-07,
    # 64 prompts). The fine-tune of parent_b (seed 0): parent_b singled out, off the line, at
    # parent_b's end of it: derived from parent_b (it was "inconclusive" from next-token data).
    (
        "b_ft next-token, task-free line",
        result(
            (0.341, 0.322, 0.360),
            (0.927, 0.903, 0.949),
            (0.868, 0.851, 0.885),
            0.119,
            (0.773, 0.680, 0.875),
            near="parent_b",
            line={
                "a": (1.241, 1.145, 1.346),
                "b": (0.773, 0.680, 0.875),
                "ratio": (0.623, 0.572, 0.683),
                "residual": (0.773, 0.680, 0.874),
                "position": (0.029, -0.059, 0.125),
            },
        ),
        "next_token",
        "derived_from_one_parent",
        "parent_b",
    ),
    # The task-arithmetic merge (seed 2, next-token), with its natural nearest parent put at
    # parent_a so that only the line decides: parent_a singled out (ratio CI upper 0.797) and off
    # the line (residual CI lower 0.517), but inside it (position 0.63-0.82): a merge, not a
    # fine-tune, is not ruled out.
    (
        "task_arithmetic next-token, task-free line",
        result(
            (0.376, 0.304, 0.449),
            (1.027, 0.920, 1.136),
            (0.910, 0.858, 0.964),
            0.099,
            (0.654, 0.602, 0.710),
            line={
                "a": (0.654, 0.602, 0.710),
                "b": (0.924, 0.827, 1.030),
                "ratio": (0.708, 0.622, 0.797),
                "residual": (0.587, 0.517, 0.655),
                "position": (0.713, 0.631, 0.820),
            },
        ),
        "next_token",
        "inconclusive",
        None,
    ),
    # The smol family's fine-tune of nex_mini (here parent_a; smollm2, nex_mini's own base, is
    # parent_b), next-token through vLLM, 210 prompts: it forgot some of nex_mini's fine-tuning, so
    # it sits at 0.72-0.80 on the task-free line, not at nex_mini's end; but the prompts single
    # nex_mini out too (ratio 0.39-0.43), unlike the task-arithmetic merge's (0.86-0.96).
    (
        "smol nex_ft next-token, task-free line",
        result(
            (0.871, 0.854, 0.888),
            (0.362, 0.346, 0.377),
            (0.407, 0.385, 0.429),
            -0.395,
            (0.607, 0.558, 0.653),
            line={
                "a": (0.607, 0.558, 0.653),
                "b": (0.944, 0.908, 0.980),
                "ratio": (0.643, 0.594, 0.692),
                "residual": (0.558, 0.510, 0.603),
                "position": (0.762, 0.724, 0.796),
            },
        ),
        "next_token",
        "derived_from_one_parent",
        "parent_a",
    ),
    # The fine-tune of parent_b on seed 2 moved toward parent_a (position 0.065-0.225): a light
    # merge is not ruled out, so no claim.
    (
        "b_ft seed 2 next-token, task-free line",
        result(
            (0.242, 0.187, 0.296),
            (0.916, 0.827, 1.010),
            (0.797, 0.758, 0.837),
            0.075,
            (0.726, 0.656, 0.806),
            near="parent_b",
            line={
                "a": (1.120, 1.052, 1.178),
                "b": (0.726, 0.656, 0.806),
                "ratio": (0.648, 0.587, 0.725),
                "residual": (0.713, 0.644, 0.786),
                "position": (0.136, 0.065, 0.225),
            },
        ),
        "next_token",
        "inconclusive",
        None,
    ),
    # A student distilled into its own initialisation (seed 0, next-token): the task-free inputs,
    # scored teacher-forced, put it 4.66 parents' distances away: unrelated in every mode.
    (
        "student next-token",
        result((0.589, 0.568, 0.606), (1.04, 1.02, 1.06), (0.93, 0.93, 0.94), 0.113, (4.66, 3.62, 5.75)),
        "next_token",
        "unrelated",
        None,
    ),
]


@pytest.mark.parametrize(("name", "r", "mode", "verdict", "parent"), CASES, ids=[c[0] for c in CASES])
def test_claims_short_of_a_merge_need_the_merge_ruled_out(name, r, mode, verdict, parent):
    got, named, reasons = decide(r, VerdictThresholds(), 0.05, calibrated=False, mode=mode)
    assert (got, named) == (verdict, parent), reasons


def test_the_lineage_signal_reads_the_same_in_every_teacher_forced_mode():
    """Inherited weights within the parents' own distance count in top-k data too (the statistic is
    the actual token's log-prob, which top-k scoring reports exactly); before, only full data could
    show them, and every fine-tune read "inconclusive" from top-k data."""
    r = CASES[0][1]
    for mode in ("full", "topk"):
        assert decide(r, VerdictThresholds(), 0.05, calibrated=False, mode=mode)[0] == "derived_from_one_parent"
        assert r.lineage_signal == "inherited"
