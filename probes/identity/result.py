"""One model × condition's identity result, typed: what ``evidence.json`` stores per entry.

``per_model`` is keyed ``"<model> | <condition>"``; the report, the figure and the tests read
these attributes rather than string keys, so a renamed field fails where it is read.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from harness.evidence import Number


class Count(BaseModel):
    k: int = Field(description="Answers claiming the label.")
    n: int = Field(description="Answers.")


class LabelRate(Count):
    """How often one label (a persona name or organisation) was claimed."""

    questions: int = Field(description="Distinct questions behind the n answers (the independent units).")
    rate: Number = Field(description="k / n; undefined (null) without answers.")
    ci: tuple[float, float] = Field(
        description="Wilson interval at the effective sample size of answers clustered by question."
    )
    n_effective: float | None = Field(
        None,
        description="The independent answers the n clustered ones are worth (n / design effect), the interval's "
        "sample size: equal counts spread over fewer questions are worth fewer answers, hence a wider interval.",
    )
    by_language: dict[str, Count] = Field(default_factory=dict)


class Answer(BaseModel):
    """One sampled answer with the claims found in it (an example in the evidence)."""

    text: str
    lang: str = ""
    question: str
    claims: list[str] = Field(default_factory=list)
    negated: list[str] = Field(default_factory=list, description="Labels named only in a denial ('I am not X').")


class IdentityResult(BaseModel):
    role: str
    condition: str = Field(description="none / own / neutral / no_default_system.")
    n: int = Field(description="Answers collected under this condition.")
    labels: dict[str, LabelRate]
    system_text_rendered: str = Field(
        "", description="The first prompt as the chat template rendered it (or what was sent to a server)."
    )
    examples: list[Answer] = Field(default_factory=list, description="Up to three answers that claim a label.")
