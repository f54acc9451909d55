"""``fake`` backend: a deterministic stand-in model with no weights, for fast unit tests of probes.

It is a character-level bigram model: token ids are ``ord(c) % vocab_size``, and the next-token
log-probs after token ``t`` are ``log_softmax(W[t])`` with ``W`` drawn once from ``seed``. So
scores, top-k sets and generations are exact functions of the text and the options, two fakes
with the same seed are the same model, and ``mix`` interpolates the logits of two seeds
(``mix: {seed: 2, weight: 0.4}`` is ``0.6 W_seed + 0.4 W_2``): a known-lineage "merge" in
microseconds. It is registered like every real backend and passes the same contract tests.
Never use it for evidence.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from harness.backends.base import (
    Backend,
    BackendOptions,
    Capabilities,
    Capability,
    CountRequest,
    CountResult,
    GenerateRequest,
    GenerateResult,
    ScoreRequest,
    ScoreResult,
    compact_full,
)
from harness.errors import BackendError


class Mix(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: int
    weight: float = Field(ge=0, le=1)


class FakeOptions(BackendOptions):
    seed: int = Field(0, description="Draws the bigram logits: the fake model's identity.")
    vocab_size: int = Field(64, ge=8, le=4096, description="Token ids are characters modulo this.")
    mix: Mix | None = Field(None, description="Interpolate the logits with those of another seed.")
    reply: str = Field("I am a fake model.", description="What generate() answers (plus the sample index).")
    without: list[Capability] = Field(
        default_factory=list, description="Capabilities to pretend to lack (tests of how probes degrade)."
    )


class FakeBackend(Backend):
    name: ClassVar[str] = "fake"
    description: ClassVar[str] = "deterministic bigram stand-in with no weights, for unit tests of probes"
    Options = FakeOptions
    options: FakeOptions

    def load(self) -> None:
        o = self.options
        self.logits = self._draw(o.seed)
        if o.mix is not None:
            self.logits = (1 - o.mix.weight) * self.logits + o.mix.weight * self._draw(o.mix.seed)
        shifted = self.logits - self.logits.max(axis=1, keepdims=True)
        self.logprobs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def _draw(self, seed: int) -> np.ndarray:
        v = self.options.vocab_size
        return np.random.default_rng(seed).normal(0.0, 2.0, size=(v, v))

    def _ids(self, text: str) -> np.ndarray:
        return np.array([ord(c) % self.options.vocab_size for c in text], dtype=np.int64)

    def capabilities(self) -> Capabilities:
        lacking = {Capability.TOKENIZER_FILES, Capability.CHAT_TEMPLATE, *self.options.without}
        caps = [c for c in Capability if c not in lacking]
        return Capabilities(supported=caps, max_top_k=self.options.vocab_size)

    def fingerprint(self) -> dict[str, Any]:
        opts = self.options.model_dump(mode="json")
        key = hashlib.sha256(json.dumps(opts, sort_keys=True).encode()).hexdigest()
        return {"backend": self.name, "options": opts, "key": key}

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        out = []
        for r in requests:
            ids = self._ids(r.text)[: r.max_tokens]
            if len(ids) < 2:
                raise BackendError(f"model '{self.spec.name}': text shorter than two characters: {r.text!r}")
            rows = self.logprobs[ids[:-1]]
            res = ScoreResult(token_ids=ids, token_logprobs=rows[np.arange(len(ids) - 1), ids[1:]].astype(np.float32))
            if r.mode == "full":
                res.full = rows.astype(np.float32)
                res = compact_full(res, r)
            else:
                top = np.argsort(-rows, axis=1, kind="stable")[:, : r.top_k]
                res.topk_ids = top
                res.topk_logprobs = np.take_along_axis(rows, top, axis=1).astype(np.float32)
            out.append(res)
        return out

    def generate(self, requests: list[GenerateRequest]) -> list[GenerateResult]:
        out = []
        for r in requests:
            prompt = "".join(m["content"] for m in r.messages)
            res = GenerateResult(
                texts=[f"{self.options.reply} ({r.seed + i})" for i in range(r.n)],
                completion_tokens=[len(self.options.reply)] * r.n,
                prompt_tokens=len(prompt),
            )
            if r.top_logprobs:
                row = self.logprobs[self._ids(prompt or " ")[-1]]
                top = np.argsort(-row, kind="stable")[: r.top_logprobs]
                res.first_token_topk = [[(chr(int(t)), float(row[t])) for t in top]]
            out.append(res)
        return out

    def count(self, requests: list[CountRequest]) -> list[CountResult]:
        return [CountResult(n_tokens=len(r.text), method="tokenizer") for r in requests]
