"""The rebuild probe's parameters (``params:`` of a ``rebuild`` probe in a suite)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

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
        None, min_length=2, max_length=2, description="The two parents to merge; default: the suite's two parents."
    )
    families: list[Literal["linear", "slerp"]] = Field(
        ["linear", "slerp"],
        min_length=1,
        description="Merge families tried in order; a later one only when no earlier one rebuilt the suspect and "
        "its best rebuild came nearer than the parents are to each other.",
    )
    search_points: int = Field(
        6,
        ge=3,
        le=20,
        description="Golden-section rebuilds per family over the weight's whole range [0, 1]; three more are built "
        "at the minimiser: the parabola's, one Gauss-Newton step on (tested) and its rounding twin.",
    )
    keep_rebuilds: bool = Field(False, description="Keep the rebuilt models in the cache after scoring.")
    noise_texts: int = Field(
        8, ge=2, description="Texts each subject scores twice (batch order reversed): its repeat noise."
    )
