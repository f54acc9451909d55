"""The rebuild probe's parameters (``params:`` of a ``rebuild`` probe in a suite)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from probes.base import ProbeParams


class RebuildParams(ProbeParams):
    max_texts: int | None = Field(32, ge=4, description="Texts scored by the suspect, the parents and every rebuild.")
    max_tokens: int = Field(64, ge=4, description="Tokens scored per text.")
    mode: Literal["full", "topk"] = Field(
        "full",
        description="Teacher-forced data: the whole vocabulary (stored compactly, as the logit probe does) or the "
        "top-k a server returns; rebuilds are scored in the same mode as the suspect.",
    )
    top_k: int = Field(20, ge=2, le=1000, description="k for top-k mode, and the exact head of compact full mode.")
    vocab_sample: int = Field(
        4096, ge=0, description="Full mode: vocabulary entries stored per token (as the logit probe's); 0: all."
    )
    parents: list[str] | None = Field(
        None,
        min_length=2,
        description="The parents to merge, in order (the first has weight a); default: the suite's parents. With "
        "three or more, only linear (weights summing to 1) and task_arithmetic are searched.",
    )
    families: list[Literal["linear", "slerp", "task_arithmetic", "ties", "dare_ties"]] = Field(
        ["linear", "slerp", "task_arithmetic", "ties", "dare_ties"],
        min_length=1,
        description="Merge families tried in order; a later one only when no earlier one rebuilt the suspect and "
        "some earlier one came nearer than the parents are to each other. task_arithmetic, ties and dare_ties "
        "need the parents' base (params.base); without it they are not tried, and the report says so.",
    )
    base: str | None = Field(
        None,
        description="The parents' shared base (a folder of weights with a config.json): the base_model of the "
        "task_arithmetic, ties and dare_ties rebuilds.",
    )
    densities: list[float] = Field(
        [0.5],
        min_length=1,
        description="ties and dare_ties: each density is a family of its own (searched over the weight a, with "
        "normalize: true, so only the weights' ratio matters). 0.5 is mergekit's documented example; a maker's "
        "density is unknown, and a rebuild at another density reads 'near', not 'rebuilt'.",
    )
    search_points: int = Field(
        6,
        ge=3,
        le=20,
        description="Golden-section rebuilds per family over the weight's whole range [0, 1]; three more are built "
        "at the minimiser: the parabola's, one Gauss-Newton step on (tested) and its rounding twin. "
        "task_arithmetic (two free weights) builds 6 instead: three for the Jacobian, two Gauss-Newton steps "
        "(the second tested) and the twin.",
    )
    keep_rebuilds: bool = Field(False, description="Keep the rebuilt models in the cache after scoring.")
    noise_texts: int = Field(
        8, ge=2, description="Texts each subject scores twice (batch order reversed): its repeat noise."
    )

    @field_validator("densities")
    @classmethod
    def _densities_in_range(cls, v: list[float]) -> list[float]:
        if any(not 0 < d <= 1 for d in v):
            raise ValueError("every density is in (0, 1]: the share of each task vector kept")
        return v
