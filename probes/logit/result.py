"""One model's logit-interpolation result, typed: what ``evidence.json`` stores per model.

Every number that has a confidence interval is an :class:`Interval`, so the verdict rule, the
case and the report read ``r.residual.hi`` instead of a ``"residual_hi"`` string key that a typo
would turn into a KeyError far from its cause (or, with ``.get``, into a silent None). The full
list of named estimates (per-parent distances, divergences, fitted curves) stays in the
evidence's ``estimates``; this holds what the rule and the report use.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from harness.evidence import Interval, Number

# The verdicts that read the model as a merge: only these are given a merge weight in the report.
MERGE_VERDICTS = ("interpolation", "interpolation_plus_training")


class ControlCalibration(BaseModel):
    """One statistic of a model placed among the controls' values of it."""

    value: float
    controls: dict[str, float]
    empirical_p: float = Field(description="(1 + controls at least as merge-like) / (1 + controls).")
    z: float | None = None


class LogitResult(BaseModel):
    role: str
    n_texts: int
    a_hat: Interval | None = Field(None, description="Logit-space weight of the first parent (two parents only).")
    merge_weight: Interval | None = Field(
        None, description="a_hat read as a weight-space merge weight: its CI widened by the residual."
    )
    weights: dict[str, Interval] = Field(default_factory=dict, description="Each parent's weight.")
    residual: Interval
    nearest_parent_distance: Interval
    nearest_parent: str
    noise_floor: Number = Field(0.0, description="RMS difference between two scorings of the nearest parent.")
    distance_ratio: Interval | None = None
    betweenness: Interval | None = None
    cv_gain: Number
    cv_p: Number
    cv_p_adjusted: float | None = None
    p_weights_inside: Number
    p_weights_inside_adjusted: float | None = None
    p_residual_below_controls: float | None = None
    p_residual_below_controls_adjusted: float | None = None
    closest_control: str | None = None
    residual_below_all_controls: bool | None = None
    calibration: dict[str, ControlCalibration] = Field(default_factory=dict)
    parents: list[str] = Field(
        default_factory=list, description="The parents this result is computed on, when not every listed one."
    )
    unsupported: dict[str, Interval] = Field(
        default_factory=dict, description="Listed parents the evidence gives no weight, with their weight's CI."
    )
    task_free_distance: dict[str, Interval] = Field(
        default_factory=dict,
        description="Distance to each parent on the task-free inputs, in units of the parents' distance there.",
    )
    task_free_residual: Interval | None = Field(
        None,
        description="Two parents: distance from the parents' line on the task-free inputs, in units of the parents' "
        "distance there (reported; the verdict does not read it).",
    )
    task_free_weight: Interval | None = Field(
        None,
        description="Two parents: where the model's projection falls on the parents' line on the task-free inputs, "
        "as the first parent's weight (1 at it, 0 at the other).",
    )
    task_free_ratio: Interval | None = Field(
        None,
        description="Task-free distance to the nearer parent there divided by the distance to the next nearer: "
        "below 1 when the task-free inputs single one parent out.",
    )
    lineage_excess: dict[str, Interval] = Field(
        default_factory=dict,
        description="Per parent: log(task-free distance / natural-text distance), both in parents' distances. "
        "About 0 for a model that shares the parent's weights; above 0 for one with its own initialisation.",
    )
    n_task_free: int = Field(0, description="Task-free inputs the lineage signal was measured on.")
    lineage_signal: str = Field(
        "absent",
        description="What the task-free inputs say of the nearest parent's weights: inherited, own (an "
        "initialisation of its own), undecided, or absent (not measured); probes/logit/lineage.py.",
    )
    verdict: str = "inconclusive"
    parent: str | None = None
    reasons: list[str] = Field(default_factory=list)
