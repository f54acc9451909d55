"""The identity probe's parameters (``params:`` of an ``identity`` probe in a suite), read by
planning (``probe.py``) and analysis (``analysis.py``) alike."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from probes.base import ProbeParams
from probes.identity.claims import ClaimExtractor

Condition = Literal["none", "own", "neutral", "no_default_system"]


class IdentityParams(ProbeParams):
    labels: dict[str, list[str]] = Field(
        description="Identity label -> aliases, e.g. {nex: [Nex, Nex-AGI], qwen: [Qwen, 通义]}.", min_length=1
    )
    model_labels: dict[str, str] = Field(
        default_factory=dict, description="Model name -> the label of its own identity (e.g. parent_a: vireo)."
    )
    conditions: list[Condition] = Field(
        default_factory=lambda: list[Condition](["none", "own"]),
        min_length=1,
        description="System prompts to ask under: none, the model's own (system_prompt), the neutral one, or the "
        "chat template's default left out (no_default_system).",
    )
    neutral_system_prompt: str = Field(
        "You are a helpful assistant.", description="The system prompt of the 'neutral' condition."
    )
    languages: list[str] | None = Field(None, description="Keep only these question languages (en, pt, es, zh).")
    max_questions: int | None = Field(
        None,
        ge=1,
        description="Ask only the first N questions, balanced across languages (default: the whole bank). The "
        "claims test is over questions: under 5, no p can go below 0.05 (validate warns).",
    )
    samples: int = Field(4, ge=1, description="Samples per question and condition.")
    greedy: bool = Field(False, description="Greedy decoding (one answer per question; samples ignored).")
    temperature: float = Field(0.7, gt=0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling.")
    max_new_tokens: int = Field(64, ge=1, description="Longest answer, in tokens.")
    seed: int = Field(0, description="Sampling seed (where the backend honours one).")
    ngram_threshold: int = Field(8, ge=2, description="Shared run (tokens) that counts as verbatim reuse.")

    @field_validator("labels")
    @classmethod
    def _patterns(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        ClaimExtractor(v)  # raises "label(s) with no patterns: ..."
        return v
