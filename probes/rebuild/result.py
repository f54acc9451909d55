"""One subject's rebuild result, typed: what ``evidence.json`` stores per model."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from harness.evidence import Interval, Number

Verdict = Literal["rebuilt", "copy", "near", "differs", "not_rebuilt"]


class FamilyFit(BaseModel):
    """One merge family's search for one subject: the curve, its minimiser and the equality test."""

    family: str = Field(
        description="mergekit merge_method: linear (weight a on the first parent), slerp (t), task_arithmetic "
        "(weights a and b on the two task vectors), ties@d or dare_ties@d (weight a, 1 - a, density d, normalized)."
    )
    a: Interval = Field(
        description="The weight (or t) of the merge nearest the subject: a Gauss-Newton step on the log-prob "
        "differences from the rebuild served (ties, dare_ties: the V through the best points); CI by bootstrap "
        "over texts, widened by that step (ties, dare_ties: and by the distance at the rebuild over the V's "
        "shallower arm, the weights a merge of this family could have)."
    )
    weights: list[Interval] | None = Field(
        None,
        description="task_arithmetic, and linear over three or more parents: every parent's weight, in the "
        "parents' order (a is the first); a linear merge's last is 1 minus the others.",
    )
    resolution: Number = Field(
        description="The golden section's last bracket (0.618^(points - 1)): equality needs the CI narrower."
    )
    curvature: Number = Field(description="The distance's curvature in a (Gauss-Newton), parents' distances per a^2.")
    slope: float | None = Field(
        None, description="ties and dare_ties: the slope of the V the distance makes at its minimum (per unit a)."
    )
    points: list[float] = Field(description="Every weight served, the parents (0, 1) included, ascending.")
    curve: list[float] = Field(description="Mean distance to the subject at each point, in parents' distances.")
    confirm_a: Number = Field(
        description="The weight of the rebuild the equality test served: the search's parabola minimum, moved by "
        "one Gauss-Newton step (rounded to 6 decimals)."
    )
    confirm_weights: list[float] | None = Field(
        None, description="task_arithmetic, and linear over three or more parents: the tested rebuild's weights."
    )
    distance: Interval = Field(description="The subject against the rebuild at confirm_a, in parents' distances.")
    tolerance: Number = Field(
        description="What equality allows: repeat noise + storage rounding + curvature x (the farthest CI end from "
        "confirm_a)^2."
    )
    repeat_noise: Number = Field(description="The subject against itself scored twice, in parents' distances.")
    storage_floor: Number = Field(
        description="Rounding: the rebuild against its twin, the same merge written in the subject's storage dtype "
        "where narrower than float32, else computed in float64 (float32 arithmetic's own rounding)."
    )
    p_equal: Number = Field(description="Bootstrap p of 'the distance is within the tolerance' (large: equal).")
    nearer_than_parents: bool = Field(
        description="The best rebuild is nearer than either parent in 1 - alpha of bootstrap replicates."
    )
    recipe: dict = Field(default_factory=dict, description="The mergekit recipe of the rebuild at confirm_a.")


class RebuildResult(BaseModel):
    verdict: Verdict
    reason: str = ""
    parents: list[str] = Field(default_factory=list, description="First parent (a = 1), second parent (a = 0).")
    best: str | None = Field(None, description="The family whose rebuild came nearest.")
    fits: list[FamilyFit] = Field(default_factory=list)
    untried: list[str] = Field(
        default_factory=list, description="Families named in params.families that were not tried, with the reason."
    )
    texts: int = 0
    rebuilds: int = Field(0, description="Merges built and served for this subject (shared ones included).")
