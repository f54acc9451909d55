"""The logit probe's parameters (``params:`` of a ``logit_interpolation`` probe in a suite),
read by planning (``probe.py``) and analysis (``analysis.py``) alike."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from probes.base import ProbeParams
from probes.logit.verdict import VerdictThresholds


class LogitParams(ProbeParams):
    max_texts: int | None = Field(None, ge=4, description="Use N texts, taken round-robin across corpus groups.")
    max_tokens: int = Field(64, ge=4, description="Tokens scored per text.")
    mode: Literal["auto", "full", "topk", "next_token"] = Field(
        "auto", description="Data mode; 'auto' uses the richest mode every model supports."
    )
    top_k: int = Field(20, ge=2, le=1000, description="k for top-k and next-token modes.")
    vocab_sample: int = Field(
        4096,
        ge=0,
        description="Full mode: store this many vocabulary entries per scored token, a uniform sample drawn once "
        "per text and shared by every model, plus the vocab_head most likely tokens and the actual token; the "
        "statistics weight the sample by V / n (unbiased for the full-vocabulary sums). 0 stores the whole "
        "vocabulary (4 V bytes per token). A vocabulary no larger than vocab_sample + vocab_head is stored whole.",
    )
    vocab_head: int = Field(64, ge=1, description="Full mode, compact storage: the most likely tokens kept exactly.")
    parents: list[str] | None = Field(None, min_length=2, description="Parent model names; default: every parent.")
    candidates: list[str] = Field(
        default_factory=list,
        description="Models (of any role) that may be parents, besides those with role: candidate. With "
        "candidates, each suspect and control gets the subset of parents and candidates that explains it "
        "(probes/logit/selection.py).",
    )
    screen_texts: int | None = Field(
        None,
        ge=4,
        description="Screen the pool first: score each role-candidate model on the first N texts only, rank the "
        "candidates per suspect on them, and score in full only each suspect's `shortlist` best (a second "
        "load of each). None: every candidate is scored in full.",
    )
    shortlist: int = Field(
        6, ge=2, description="With screen_texts: the candidates per suspect that go on to full scoring."
    )
    task_free_texts: int = Field(
        24,
        ge=0,
        description="Task-free inputs (shuffled words, word salad, random characters; probes/logit/lineage.py) "
        "scored teacher-forced besides the corpus (in next-token mode too, where the backend can score a prompt): "
        "the lineage signal that tells inherited weights from imitation. Without them (0, or a backend that only "
        "chats) no verdict that claims or denies shared weights short of a merge or a copy (derived, sibling, "
        "related, unrelated) is drawn.",
    )
    disagreement_tau: float = Field(1.0, gt=0, description="Parents 'disagree' where centred log-probs differ by more.")
    cv_splits: int = Field(50, ge=5, description="Random half splits of the cross-validated test.")
    noise_replicate: bool = Field(True, description="Score each parent twice (batch order reversed): noise floor.")
    verdict: VerdictThresholds = Field(default_factory=VerdictThresholds)

    @model_validator(mode="after")
    def _screen_within_texts(self) -> LogitParams:
        if self.screen_texts is not None and self.max_texts is not None and self.screen_texts > self.max_texts:
            raise ValueError(
                f"screen_texts ({self.screen_texts}) is more than max_texts ({self.max_texts}): the screen would "
                "score every text; set screen_texts below max_texts, or leave it out"
            )
        return self
