"""The text probe's parameters (``params:`` of a ``text_interpolation`` probe in a suite), read
by planning (``probe.py``) and analysis (``analysis.py``) alike."""

from __future__ import annotations

from pydantic import Field

from probes.base import ProbeParams


class TextParams(ProbeParams):
    prompts: int = Field(32, ge=4, description="Prompts of the corpus, taken round-robin across its groups.")
    samples: int = Field(
        8,
        ge=2,
        description="Sampled answers per prompt and model. 8 with 32 prompts tells a fine-tune of one parent from a "
        "merge on the tiny zoo and Rio in miniature (results/bench-2026-12-06/text-specificity.md); 4 does not.",
    )
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (recorded; fitted back as T).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling; 1 keeps the likelihood exact.")
    max_new_tokens: int = Field(32, ge=2, description="Longest sampled answer, in tokens.")
    prompt_chars: int = Field(160, ge=20, description="A corpus text is cut to this many characters as the prompt.")
    seed: int = Field(0, description="Sampling seed (where the backend honours one).")
    parents: list[str] | None = Field(None, min_length=2, description="Parent model names; default: every parent.")
    vocab_sample: int = Field(4096, ge=0, description="Compact full-vocabulary storage of the parents' scoring.")
    vocab_head: int = Field(64, ge=1, description="Full-vocabulary scoring: the most likely tokens kept exactly.")
    bootstrap: int = Field(200, ge=20, description="Cluster-bootstrap replicates (each refits the likelihood).")
    cv_splits: int = Field(20, ge=5, description="Random half splits of the prompts for the held-out gain.")
    permutations: int = Field(999, ge=99, description="Permutations of the stratified equality test.")
    a_margin: float = Field(0.05, ge=0, lt=0.5, description="Weights' CIs must lie inside (margin, 1 - margin).")
    token_ids: bool = Field(
        True,
        description="Score the token ids a model sampled where its backend returns them (hf) and the parent's "
        "tokenizer decodes them to the answer; false re-tokenises every answer's text, as a text-only API forces.",
    )
