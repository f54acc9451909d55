"""One model's tokenizer result, typed: what ``evidence.json`` stores per model.

The case, the summary and the report read these attributes: the suspect's agreement with the
suite's own models (``vs_models``, what a merge needs) is kept apart from its best match among
the reference tokenizers (``matches``/``verdict``, circumstantial), so one is not read as the other.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class Match(BaseModel):
    """Identical token counts against one candidate tokenizer or one other model of the suite."""

    candidate: str = Field(description="A reference tokenizer's name, or 'model:<name>' for a model of the suite.")
    k: int = Field(description="Diagnostic strings with identical token counts.")
    n: int = Field(description="Diagnostic strings.")
    rate: float
    ci: tuple[float, float] = Field(description="Wilson interval of the rate at the evidence's ci_level.")

    @property
    def name(self) -> str:
        """The candidate without the 'model:' prefix."""
        return self.candidate.removeprefix("model:")


class TokenizerResult(BaseModel):
    role: str
    method: str = Field(description="How the counts were obtained (tokenizer, server tokenize endpoint, usage).")
    n_strings: int
    matches: list[Match] = Field(description="Every candidate and model, best first.")
    best: str | None = Field(None, description="The single best reference tokenizer, None when tied or absent.")
    ties: list[str] = Field(default_factory=list, description="Reference tokenizers sharing the best count.")
    verdict: str = Field(description="The sentence for the best reference-tokenizer match.")
    vs_models: list[Match] = Field(default_factory=list, description="Agreement with the suite's other models.")

    def library_matches(self) -> list[Match]:
        """Matches against the reference tokenizers only, best first."""
        return [r for r in self.matches if not r.candidate.startswith("model:")]
