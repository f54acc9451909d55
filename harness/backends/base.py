"""The one interface every backend implements, and the request/result types it speaks.

Backends declare capabilities; probes state what they need. A request a backend cannot serve
raises :class:`CapabilityMissing` rather than returning something that looks like data.
There is one method per request kind, each taking a batch (the lm-evaluation-harness shape),
so a backend is free to batch, sort by length, or fan out concurrent HTTP requests.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class Capability(str, Enum):
    FULL_LOGPROBS = "full_logprobs"  # teacher-forced log-probs over the whole vocabulary
    TOPK_LOGPROBS = "topk_logprobs"  # teacher-forced top-k plus the actual token's log-prob
    GENERATE = "generate"  # sampled / greedy chat generations
    NEXT_TOKEN_TOPK = "next_token_topk"  # top-k log-probs of the first generated token
    CHAT_TEMPLATE = "chat_template"  # the backend can render (and report) its chat template
    TOKEN_COUNTS = "token_counts"  # token counts of arbitrary strings
    TOKENIZER_FILES = "tokenizer_files"  # white-box tokenizer files are available
    CHAT_SCORING = "chat_scoring"  # teacher-forced scoring of an answer after chat messages (ScoreRequest.prompt)


class Capabilities(BaseModel):
    """What a loaded backend can do. Recorded in the run so a reader sees why a probe degraded."""

    supported: list[Capability]
    max_top_k: int = 0

    def has(self, cap: Capability) -> bool:
        return cap in self.supported


Message = dict[str, str]


@dataclass
class RequestCost:
    """Upper bounds for one request: tokens scored, tokens generated, characters of prompt sent."""

    score_tokens: int = 0
    new_tokens: int = 0
    prompt_chars: int = 0


class _Request(BaseModel):
    """A request of one kind. The kind's name is also the name of the ``Backend`` method that
    serves a batch of them (``Backend.execute`` dispatches on it), so each kind owns its
    cost here and its result type owns its summary and cache payload: adding a kind touches
    this file and the backends that serve it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    # Fields added after answers were first cached: left out of the key while at their default,
    # so every answer cached before they existed keeps its key.
    _late_fields: ClassVar[tuple[str, ...]] = ()

    def cost(self) -> RequestCost:
        """At most what this request costs to serve: ``run --estimate`` sums these."""
        raise NotImplementedError

    def canonical(self) -> str:
        """Canonical JSON of the whole request; part of the cache key."""
        d = self.model_dump(mode="json")
        for name in self._late_fields:
            if d.get(name) == type(self).model_fields[name].default:
                d.pop(name, None)
        return json.dumps(d, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class ScoreRequest(_Request):
    """Teacher-forced scoring of ``text`` (tokenised with the model's own special tokens), or,
    with ``prompt``, of ``text`` as the assistant's answer to those chat messages."""

    _late_fields: ClassVar[tuple[str, ...]] = ("prompt", "reply_ids")
    kind: Literal["score"] = "score"
    text: str
    prompt: list[Message] | None = Field(
        None,
        description="Chat messages the text answers: rendered with the model's own chat template (generation "
        "prompt added) and put before the text; only the text's tokens are scored (token 0 of the result is the "
        "prompt's last). Scoring another model's sampled answers this way is how text-only evidence is scored.",
    )
    reply_ids: list[int] | None = Field(
        None,
        description="With ``prompt``: the token ids the answering model sampled. A backend whose tokenizer decodes "
        "them to ``text`` scores exactly these tokens; otherwise (another tokenizer, or ids not given) it "
        "tokenises ``text``. Decoding and re-encoding does not always give back the sampled tokens, and scoring "
        "other tokens than were sampled biases a likelihood fit.",
    )
    mode: Literal["full", "topk"] = "full"
    top_k: int = Field(0, ge=0)
    max_tokens: int | None = Field(None, ge=2, description="Score at most this many tokens of the text.")
    replicate: int = Field(0, ge=0, description="A repeat of the same scoring, to measure the noise floor.")
    vocab_sample: int = Field(
        0,
        ge=0,
        description="Full mode, compact storage: keep this many vocabulary entries per position, drawn at "
        "random once per text (the same draw for every model, see vocab_sample_ids), plus the top_k head and "
        "the actual token. 0 keeps the whole vocabulary.",
    )

    def cost(self) -> RequestCost:
        # Unbounded: about a token per character at most.
        return RequestCost(score_tokens=self.max_tokens or len(self.text), prompt_chars=len(self.text))


class GenerateRequest(_Request):
    """A chat generation. ``seed`` and ``n`` make sampled requests cacheable and reproducible."""

    kind: Literal["generate"] = "generate"
    messages: list[Message]
    max_new_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1)
    seed: int = 0
    top_logprobs: int = Field(0, ge=0, description="Return top-k log-probs of the first generated token.")

    def cost(self) -> RequestCost:
        return RequestCost(
            new_tokens=self.max_new_tokens * self.n, prompt_chars=sum(len(m["content"]) for m in self.messages)
        )


class CountRequest(_Request):
    """How many tokens ``text`` adds to a prompt, special tokens and chat template excluded."""

    kind: Literal["count"] = "count"
    text: str

    def cost(self) -> RequestCost:
        return RequestCost(prompt_chars=len(self.text))


Request = ScoreRequest | GenerateRequest | CountRequest


@dataclass
class ScoreResult:
    """Log-probs for tokens 1..T-1 of ``token_ids`` (token 0 has no prediction).

    ``full`` is (T-1, V) in full mode; ``topk_ids``/``topk_logprobs`` are (T-1, k) in top-k
    mode. ``token_logprobs`` (T-1,) is always the actual token's log-prob. Everything is
    aligned by token id, never by the order of a returned dict.

    Compact full mode (``ScoreRequest.vocab_sample`` > 0, see :func:`compact_full`) stores, instead
    of ``full``, the top-k head (``topk_*``), a uniform random sample of the vocabulary
    (``sample_ids`` (n,), the same for every position of the text, and ``sample_logprobs``
    (T-1, n)) and ``vocab_size``: enough for unbiased estimates of every full-vocabulary sum.
    """

    token_ids: np.ndarray
    token_logprobs: np.ndarray
    full: np.ndarray | None = None
    topk_ids: np.ndarray | None = None
    topk_logprobs: np.ndarray | None = None
    sample_ids: np.ndarray | None = None
    sample_logprobs: np.ndarray | None = None
    vocab_size: int = 0
    kind: ClassVar[str] = "score"

    def summary(self) -> dict[str, Any]:
        """The small, human-readable part kept in the run's raw record (arrays stay in the cache)."""
        return {"n_tokens": int(self.token_ids.shape[0]), "sum_logprob": float(self.token_logprobs.sum())}

    def to_payload(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON metadata and numpy arrays, as the cache stores them."""
        arrays = {k: v for k, v in self.__dict__.items() if isinstance(v, np.ndarray)}
        return ({"vocab_size": self.vocab_size} if self.vocab_size else {}), arrays

    @classmethod
    def from_payload(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> ScoreResult:
        return cls(**arrays, vocab_size=meta.get("vocab_size", 0))


def vocab_sample_ids(text: str, vocab_size: int, n: int) -> np.ndarray:
    """The vocabulary sample of compact full mode: ``n`` distinct token ids, uniform without
    replacement, seeded by the text itself. Every model that scores the text (with the same
    vocabulary size) draws the same ids, so the sample needs no coordination between runs or
    backends; different texts draw independently, so the sampling noise averages over texts and
    the text-level bootstrap sees it."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    ids = np.random.default_rng(seed).choice(vocab_size, size=n, replace=False)
    return np.sort(ids).astype(np.int32)


def compact_full(result: ScoreResult, request: ScoreRequest) -> ScoreResult:
    """A full-vocabulary result reduced to what ``request`` asks to keep (unchanged when it asks
    for the whole vocabulary, or when the sample and head would cover most of it anyway).

    Why: the whole vocabulary costs 4 V bytes per scored token (196 KB at SmolLM2's 49,152, 608 KB
    at Qwen's 151,936). The statistics are sums over the vocabulary; the head (top-k, the
    actual token) carries most of the probability mass and a uniform sample stands for the rest
    (``probes/shared/align.py`` weights it by V / n: Horvitz-Thompson)."""
    full = result.full
    n = request.vocab_sample
    if full is None or n == 0 or n + request.top_k >= full.shape[1]:
        return result
    vocab = full.shape[1]
    ids = vocab_sample_ids(request.text, vocab, n)
    k = max(request.top_k, 1)
    top = np.argpartition(-full, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(full, top, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return ScoreResult(
        token_ids=result.token_ids,
        token_logprobs=result.token_logprobs,
        topk_ids=np.take_along_axis(top, order, axis=1).astype(np.int32),
        topk_logprobs=np.take_along_axis(vals, order, axis=1).astype(np.float32),
        sample_ids=ids,
        sample_logprobs=full[:, ids].astype(np.float32),
        vocab_size=vocab,
    )


@dataclass
class GenerateResult:
    """``token_ids``: each answer's sampled token ids (end of sequence cut), where the backend
    knows them (``hf``; ``vllm`` and servers that honour ``return_token_ids``); ``None`` where
    only text came back (a hosted API)."""

    texts: list[str]
    completion_tokens: list[int]
    prompt_tokens: int
    rendered_prompt: str | None = None
    first_token_topk: list[list[tuple[str, float]]] = field(default_factory=list)
    token_ids: list[list[int]] | None = None
    kind: ClassVar[str] = "generate"

    def summary(self) -> dict[str, Any]:
        return {"texts": self.texts, "completion_tokens": self.completion_tokens}

    def to_payload(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return dict(self.__dict__), {}

    @classmethod
    def from_payload(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> GenerateResult:
        fields = dict(meta)
        fields["first_token_topk"] = [[tuple(p) for p in pos] for pos in fields.get("first_token_topk", [])]
        return cls(**fields)


@dataclass
class CountResult:
    """``method`` says where the count came from: ``tokenizer`` (local files), ``tokenize``
    (a server's /tokenize endpoint) or ``usage`` (prompt_tokens minus an empty-message baseline)."""

    n_tokens: int
    method: str
    kind: ClassVar[str] = "count"

    def summary(self) -> dict[str, Any]:
        return {"n_tokens": self.n_tokens, "method": self.method}

    def to_payload(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return dict(self.__dict__), {}

    @classmethod
    def from_payload(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> CountResult:
        return cls(n_tokens=meta["n_tokens"], method=meta["method"])


Result = ScoreResult | GenerateResult | CountResult
# Result types by kind: how the cache finds the type of a stored answer.
RESULT_TYPES: dict[str, type[ScoreResult] | type[GenerateResult] | type[CountResult]] = {
    t.kind: t for t in (ScoreResult, GenerateResult, CountResult)
}


def decodes_to(decoded: str, text: str) -> bool:
    """Whether sampled ids that decode to ``decoded`` are the answer ``text``: equal, or equal
    but for incomplete characters at the end. An answer cut by ``max_new_tokens`` in the middle of
    a multi-byte character decodes to U+FFFD there; vLLM leaves the broken character out of the
    text it returns, transformers keeps the replacement character. Either way the ids are what was
    sampled."""
    return decoded == text or (decoded.startswith(text) and set(decoded[len(text) :]) == {"\ufffd"})


def sha256_text(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class ModelRef:
    """What a backend is told about the model it serves: its name in the suite (messages, log
    files), its path or model id, and its options (validated by the backend's ``Options``).

    Backends never see the suite's ``ModelSpec`` (roles, system prompts, notes are the harness's
    business), so the backend layer does not depend on the suite schema."""

    name: str
    path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # ``path`` is a Hub id not downloaded yet (validated online): `run` fetches it before loading,
    # so the checks of its files wait; the other checks (launcher, device, keys) do not.
    hub_pending: bool = False


class BackendOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Backend(ABC):
    """A model served somehow. Lifecycle: ``load()`` -> requests -> ``close()`` (also a context manager)."""

    name: ClassVar[str]
    description: ClassVar[str]
    Options: ClassVar[type[BackendOptions]] = BackendOptions
    # How ``path`` relates to the suite file's directory: "always" a local path resolved against
    # it (hf), "if_exists" resolved when that names something on disk and kept as a model id
    # otherwise (vllm), "never" (API model names).
    local_path: ClassVar[Literal["always", "if_exists", "never"]] = "never"

    def __init__(self, spec: ModelRef):
        self.spec = spec
        self.options = self.Options.model_validate(spec.options)
        self.run_dir: Path | None = None  # set by the runner: where a backend may write logs

    @classmethod
    def check_spec(cls, spec: ModelRef) -> None:
        """Static checks at validation time (e.g. the path exists). Raise ValueError with a message."""

    @abstractmethod
    def load(self) -> None: ...

    @property
    def launched(self) -> bool:
        """Whether ``load()`` starts a server process (minutes, where loading in process takes seconds)."""
        return False

    def close(self) -> None:
        """Free the model. Sequential scheduling relies on this actually releasing memory."""

    @abstractmethod
    def capabilities(self) -> Capabilities: ...

    @classmethod
    def expected_capabilities(cls, spec: ModelRef) -> Capabilities:
        """What this backend is expected to offer before it is loaded (``run --estimate``): the
        planning of a dry run. The default is everything; backends that know less override it."""
        return Capabilities(supported=list(Capability), max_top_k=1_000_000)

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """Identity of the served model: path/id, revision or file hashes, dtype, backend, versions,
        chat-template hash. ``fingerprint()["key"]`` is the stable part that enters cache keys."""

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        from harness.errors import CapabilityMissing

        raise CapabilityMissing(f"backend '{self.name}' cannot score texts")

    def generate(self, requests: list[GenerateRequest]) -> list[GenerateResult]:
        from harness.errors import CapabilityMissing

        raise CapabilityMissing(f"backend '{self.name}' cannot generate")

    def count(self, requests: list[CountRequest]) -> list[CountResult]:
        from harness.errors import CapabilityMissing

        raise CapabilityMissing(f"backend '{self.name}' cannot count tokens")

    def usage(self) -> dict[str, int]:
        """Requests and tokens sent/received so far (API backends), recorded per model in the run."""
        return {}

    def batch_size(self, kind: str) -> int:
        """How many requests of this kind the runner hands over at once."""
        return 8

    def execute(self, requests: list[Request]) -> list[Result]:
        """Dispatch a batch of one kind to the method of that name (``score``, ``generate``, ...)."""
        kinds = sorted({r.kind for r in requests})
        if len(kinds) != 1 or kinds[0] not in RESULT_TYPES:
            raise ValueError(f"mixed or unknown request kinds in one batch: {kinds}")
        return list(getattr(self, kinds[0])(requests))

    def __enter__(self) -> Backend:
        self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
