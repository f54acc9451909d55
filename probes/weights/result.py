"""One subject's weights result, typed: what ``evidence.json`` stores per model."""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

from harness.evidence import Interval, Number


class GroupSummary(BaseModel):
    """Per-tensor fits of one module class or one layer: the spread of the first parent's weight."""

    tensors: int
    a_mean: Number
    a_sd: Number
    a_min: Number
    a_max: Number
    cos_median: Number
    residual_rms: Number = Field(description="sqrt(sum |residual|^2 / sum |S - R|^2) over the group's tensors.")


class Family(BaseModel):
    """Which merge family fits best, with the numbers that decide it."""

    name: str = Field(description="linear / slerp / sparse (ties or dare) / none.")
    linear_residual: Number = Field(description="Relative residual of per-tensor line/simplex fits, pooled.")
    slerp_residual: Number = Field(description="Relative residual of per-tensor slerp fits (two parents), pooled.")
    slerp_t: Number
    zero_where_parents_moved: Number = Field(
        description="Share of the coordinates some parent moved away from R where the subject equals R exactly."
    )
    rescale: Number = Field(
        description="Slope of S - R on the fit over coordinates where S differs from R (DARE: 1/density)."
    )
    sign_agreement: Number = Field(
        description="sign(S - R) == sign(sum of the parents' differences), where both are nonzero."
    )


class WeightsResult(BaseModel):
    role: str
    dtype: str = Field(description="The subject's stored dtype(s); each tensor's sets its part of the storage floor.")
    storage: str = Field(
        "safetensors", description="How the subject's checkpoint is stored: safetensors, or GGUF and its file type."
    )
    dtypes_of: dict[str, str] = Field(
        default_factory=dict, description="The reference's and each parent's stored dtype(s), as ``dtype``."
    )
    reference: str = Field(description="R: the shared base, or the parent every difference is taken from.")
    parents: list[str] = Field(description="The parents whose differences from R are fitted, in order.")
    tensors: int = Field(description="Tensors fitted: present in every model, same shape, differing between parents.")
    tensors_identical: int = Field(0, description="Tensors equal in every parent (nothing to fit).")
    unmatched: list[str] = Field(default_factory=list, description="Tensors missing or of another shape, with why.")
    weights: dict[str, Interval] = Field(
        description="One weight per parent for all tensors (NNLS), tensor-bootstrap CI."
    )
    a: Interval | None = Field(None, description="The first parent's weight: the single a.")
    cos_fit: Number
    cos_fit_lo: Number = Field(
        description="Lower bound of the cos fit's CI (tensors resampled): what the rule compares."
    )
    toward_others: Number = Field(
        description=(
            "Cos fit of S minus the parent carrying the weight on the other parents' differences from it: "
            "how much of S's departure from that parent points to the others (a merge's does, a fine-tune's not)."
        ),
    )
    toward_others_lo: Number = Field(description="Its CI's lower bound (tensors resampled).")
    toward_null: Number = Field(
        0.5,
        description=(
            "What a non-merge's departure from its nearest parent reaches toward the others: the controls' "
            "highest, at least 0.5 (an equal-norm sibling of the parents gives exactly 0.5)."
        ),
    )
    rel_residual: Number
    storage_floor: Number = Field(
        description="Relative residual that rounding S to its stored dtypes alone leaves: one ulp (2^-mantissa) of |S|."
    )
    tensors_cos_below_half: Number = Field(description="Share of fitted tensors with cos fit < 0.5.")
    heterogeneity_q: Number = Field(description="Cochran's Q of per-tensor a around the pooled a.")
    heterogeneity_df: int
    spread_in_se: Number = Field(description="sqrt(Q / df): the tensors' spread in units of their own standard errors.")
    modules: dict[str, GroupSummary] = Field(default_factory=dict)
    layers: dict[str, GroupSummary] = Field(default_factory=dict)
    family: Family
    distance_to: dict[str, Number] = Field(
        default_factory=dict, description="|S - P| / |S| for the reference and each parent."
    )
    beyond_conversion: dict[str, Number] = Field(
        default_factory=dict,
        description=(
            "Share of elements further from the reference's / each parent's than a dtype conversion moves them "
            "(one bf16 ulp relative; fp16's smallest normal absolute for an fp16 subject): 0 is a copy."
        ),
    )
    parents_cos: dict[str, Number] = Field(
        default_factory=dict,
        description="Median over weight matrices of the cosine between the raw weights of each pair of the reference "
        "and the parents: near 1 for relatives, near 0 for separate initialisations.",
    )
    kin_to: dict[str, Number] = Field(
        default_factory=dict,
        description="The same median cosine between the subject's raw weights and the reference's and each parent's.",
    )
    kin_bound: Number = Field(
        default_factory=lambda: math.nan,  # a NaN default would make the JSON Schema unequal to itself
        description="The cosine separate initialisations stay below (5 null standard deviations, 1/sqrt(numel) each).",
    )
    null_cos: Number = Field(description="The cos fit a non-merge reaches here (controls, or the parents' own).")

    def strangers(self, among_parents: bool = True) -> dict[str, float]:
        """The pairs of ``parents_cos`` that share no weights (cosine at or below ``kin_bound``):
        between two parents (``among_parents``), or between the given base and a parent."""
        apart = {pair: c for pair, c in self.parents_cos.items() if math.isfinite(c) and c <= self.kin_bound}
        return {p: c for p, c in apart.items() if all(n in self.weights for n in p.split(" ~ ")) == among_parents}

    null_source: str
    verdict: str = "inconclusive"
    parent: str | None = None
    reasons: list[str] = Field(default_factory=list)
