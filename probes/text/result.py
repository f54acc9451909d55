"""One model's text-only result, typed: what ``evidence.json`` stores per model."""

from __future__ import annotations

from pydantic import BaseModel, Field

from harness.evidence import Interval, Number


class Equality(BaseModel):
    """The stratified two-sample test of the model's samples against one parent's."""

    statistic: Number
    p: Number
    p_adjusted: float | None = None
    p_unstratified: Number = Field(description="The same question permuted across prompts (for comparison only).")


class TextResult(BaseModel):
    role: str
    prompts: int
    samples: int = Field(description="Sampled answers scored (empty answers are not).")
    tokens: int = Field(description="Tokens of those answers, as the parents tokenise them.")
    weights: dict[str, Interval] = Field(description="Each parent's weight in the geometric interpolation.")
    temperature: Interval = Field(
        description="Fitted temperature of the suspect relative to the interpolation (the nuisance parameter)."
    )
    sampling_temperature: float
    nll: Number = Field(description="Held-out negative log-likelihood per token of the interpolation (nats).")
    excess: Interval = Field(
        description="nll minus the parents' own (each parent's NLL per token of its own answers to the same "
        "prompts, averaged): how much less likely the interpolation finds the model's answers than the parents "
        "find theirs. About 0 for a merge whose entropy is like its parents'."
    )
    excess_p: Number = Field(description="One-sided Wilcoxon over prompts: excess > 0.")
    parents_excess: Number = Field(
        None,  # NaN once validated (a NaN default would make the JSON Schema unequal to itself)
        validate_default=True,
        description="The yardstick of excess: how much less likely a parent finds another parent's answers than its "
        "own (nats per token, averaged over prompts and ordered pairs of parents). An interpolation or a fine-tune "
        "of a parent must be explained better than the parents explain each other.",
    )
    cv_gain: Number = Field(description="Held-out log-likelihood gain per token over the better single parent.")
    cv_p: Number
    fit_statistic: Number = Field(
        description="Information-matrix test of the fitted interpolation (Hotelling's T² over prompts on fit_df "
        "components, p from the F distribution): large when the samples are not from an interpolation of the parents.",
    )
    fit_df: int
    fit_p: Number
    p_gain_above_controls: float | None = Field(
        None, description="One-sided paired Wilcoxon over prompts, gain above the control's: the worst control's p."
    )
    closest_control: str | None = None
    equality: dict[str, Equality] = Field(default_factory=dict)
    verdict: str = "inconclusive"
    parent: str | None = None
    reasons: list[str] = Field(default_factory=list)
