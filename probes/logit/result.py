"""One model's logit-interpolation result, typed: what ``evidence.json`` stores per model.

Every number that has a confidence interval is an :class:`Interval`, so the verdict rule, the
case and the report read ``r.residual.hi`` instead of a ``"residual_hi"`` string key that a typo
would turn into a KeyError far from its cause (or, with ``.get``, into a silent None). The full
list of named estimates (per-parent distances, divergences, fitted curves) stays in the
evidence's ``estimates``; this holds what the rule and the report use.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field

from harness.evidence import ProbeEvidence

# A number that can be undefined (NaN in analysis: e.g. no CV gain against a copy). JSON has no NaN,
# so evidence.json stores null; reading it back gives NaN again, and the code sees one type.
Number = Annotated[float, BeforeValidator(lambda v: math.nan if v is None else v)]


class Interval(BaseModel):
    """A point estimate and its interval, at the evidence's ``ci_level``; None where undefined."""

    value: float | None
    lo: float | None = None
    hi: float | None = None

    def finite(self) -> bool:
        return all(x is not None and math.isfinite(x) for x in (self.value, self.lo, self.hi))

    def text(self, digits: int = 3) -> str:
        """'0.571 [0.564, 0.577]'; 'n/a' for an undefined part."""

        def f(x: float | None) -> str:
            return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"

        return f"{f(self.value)} [{f(self.lo)}, {f(self.hi)}]"


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
    verdict: str = "inconclusive"
    parent: str | None = None
    reasons: list[str] = Field(default_factory=list)


def results_of(evidence: ProbeEvidence) -> dict[str, LogitResult]:
    """The typed per-model results of a logit evidence, in its order."""
    return {m: LogitResult.model_validate(s) for m, s in evidence.per_model.items()}
