"""``openai`` backend: any OpenAI-compatible HTTP endpoint (hosted APIs, vLLM, llama.cpp server).

API-only models are where forensic questions are hardest, so this backend is careful about
three things:

* **Honest capabilities.** At load it probes what the server really does
  (:mod:`harness.backends.server_discovery`) and records it. Prompt log-probs are used only
  when their alignment is proven from the server's own answers; llama.cpp's echo log-probs are
  shifted by one position, and scoring is then switched off instead of producing garbage.
* **Throughput without abuse.** One client per loaded model (:mod:`harness.backends.http_client`):
  bounded concurrency, backoff honouring ``Retry-After``, bounded attempts and total time,
  401/403/404 fail at once, a 400 is a capability error.
* **Secrets.** The key is read from the environment variable *named* in the suite
  (``api_key_env``); it never enters the config dump, fingerprint, cache key or logs.

The code is composed of three parts: the transport (``http_client``), request bodies and
response parsing as pure functions (``openai_wire``), and capability discovery
(``server_discovery``). :class:`OpenAIEndpoint` puts them together for one model on one
server; the ``vllm`` backend uses the same endpoint behind a server it launches.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import Field

from harness.backends import openai_wire as wire
from harness.backends import server_discovery
from harness.backends.base import (
    Backend,
    BackendOptions,
    Capabilities,
    Capability,
    CountRequest,
    CountResult,
    GenerateRequest,
    GenerateResult,
    ModelRef,
    ScoreRequest,
    ScoreResult,
    decodes_to,
)
from harness.backends.http_client import HttpClient, RetryPolicy
from harness.errors import BackendError, CapabilityMissing, PartialBatch

T = TypeVar("T")


def check_key_env(opts: ApiOptions) -> None:
    """Pre-flight: a key variable that is unset would fail this model after earlier ones ran."""
    if opts.api_key_env and not os.environ.get(opts.api_key_env):
        raise ValueError(f"options.api_key_env: the environment variable {opts.api_key_env} is not set")


class ApiOptions(BackendOptions):
    """Options of every backend that talks to an OpenAI-compatible server."""

    api_key_env: str | None = Field(None, description="Name of the environment variable holding the API key.")
    concurrency: int = Field(8, ge=1, le=256, description="Requests in flight at once for this endpoint.")
    timeout_s: float = Field(120.0, gt=0, description="Per-request timeout.")
    max_attempts: int = Field(6, ge=1, description="Attempts per request, retries included.")
    max_retry_s: float = Field(300.0, gt=0, description="Give up retrying one request after this long.")
    backoff_s: float = Field(0.5, ge=0, description="First backoff; doubles each attempt, with jitter.")
    count_method: Literal["auto", "tokenize", "usage"] = Field(
        "auto", description="How token counts are obtained: a tokenize endpoint or usage.prompt_tokens differences."
    )
    probe_capabilities: bool = Field(True, description="Probe the server at load (recorded in the run).")
    token_ids: bool = Field(
        True,
        description="Ask for the sampled token ids where the server offers them (vLLM's return_token_ids), so "
        "answers are scored as sampled; false keeps the text only, as a hosted API answers.",
    )
    sampling_extra: dict[str, Any] = Field(
        default_factory=dict,
        description="Fields added to every sampled chat request (temperature > 0), beyond temperature and top_p. "
        "Servers truncate samples by default where OpenAI does not: llama.cpp's server applies top_k 40, min_p 0.05 "
        "and repeat_penalty 1.1 unless sent {top_k: 0, min_p: 0, repeat_penalty: 1}; a strict OpenAI API rejects "
        "fields it does not know, so nothing is sent by default. Part of the cache key.",
    )


class OpenAIOptions(ApiOptions):
    base_url: str = Field(description="Endpoint root including /v1, e.g. http://127.0.0.1:8000/v1")
    model: str | None = Field(None, description="Model name sent in requests; defaults to the spec's `path`.")


def _finish(results: dict[int, T], n: int, cause: BackendError | None) -> list[T]:
    """Results in request order, or PartialBatch with those that completed."""
    if cause is None:
        return [results[i] for i in range(n)]
    if not results:
        raise cause
    raise PartialBatch(results, cause)


class OpenAIEndpoint:
    """One model on one OpenAI-compatible server: connect, discover, then serve requests."""

    def __init__(
        self, label: str, base_url: str, model: str, options: ApiOptions, alive: Callable[[], bool] | None = None
    ):
        self.label = label
        self.alive = alive
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.options = options
        self.client: HttpClient | None = None
        self.probed: dict[str, Any] = {}
        self.server_model: dict[str, Any] = {}
        self._baseline: int | None = None
        self.server_version: str | None = None

    def _headers(self) -> dict[str, str]:
        env = self.options.api_key_env
        if env is None:
            return {}
        key = os.environ.get(env)
        if not key:
            raise BackendError(f"model '{self.label}': environment variable {env} (options.api_key_env) is not set")
        return {"Authorization": f"Bearer {key}"}

    def connect(self) -> None:
        """Open the client, find the model in ``/models``, and probe what the server does."""
        o = self.options
        self.client = HttpClient(
            self.base_url,
            label=self.label,
            headers=self._headers(),
            key_env=o.api_key_env,
            concurrency=o.concurrency,
            timeout_s=o.timeout_s,
            retry=RetryPolicy(o.max_attempts, o.max_retry_s, o.backoff_s),
            alive=self.alive,
        )
        models = self.client.get("/models").get("data")
        if not isinstance(models, list):
            raise BackendError(f"model '{self.label}': {self.base_url}/models answered no model list")
        match = next((m for m in models if isinstance(m, dict) and m.get("id") == self.model), None)
        self.server_model = match or {}
        self.server_version = self._server_version()
        if o.probe_capabilities:
            self.probed = server_discovery.discover(self.client, self.model)

    def _server_version(self) -> str | None:
        """vLLM and SGLang answer ``GET /version``; other servers do not, which is fine."""
        try:
            answer = self.http.get(self.http.server_url("/version"))
        except BackendError:
            return None
        version = answer.get("version")
        return version if isinstance(version, str) else None

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()

    @property
    def http(self) -> HttpClient:
        if self.client is None:
            raise BackendError(f"model '{self.label}': not connected (load() was not called or failed)")
        return self.client

    # ------------------------------------------------------------------ identity
    def capabilities(self) -> Capabilities:
        return server_discovery.capabilities(self.probed)

    def fingerprint(self) -> dict[str, Any]:
        """The served model's identity. The API key's variable is recorded by name, never its value."""
        server_model = {k: self.server_model.get(k) for k in ("id", "created", "owned_by", "root", "revision")}
        fp = {
            "base_url": self.base_url,
            "model": self.model,
            "server_model": server_model,
            "server": self.client.server_header if self.client else None,
            "server_version": self.server_version,
            "capabilities": self.probed,
            "api_key_env": self.options.api_key_env,
            "sampling_extra": self.options.sampling_extra,
        }
        fp["key"] = hashlib.sha256("\n".join([self.base_url, self.model, self.served_identity()]).encode()).hexdigest()
        return fp

    def served_identity(self) -> str:
        """What the server says it serves, and how it is asked to sample, for cache keys.
        ``created`` is left out: vLLM stamps it with the time of each request."""
        ident = {k: self.server_model.get(k) for k in ("id", "owned_by", "root", "revision")}
        if self.options.sampling_extra:  # absent when empty: keys cached before it existed still hold
            ident["sampling_extra"] = self.options.sampling_extra
        if self._token_ids():  # answers carry their sampled ids: not interchangeable with text-only ones
            ident["token_ids"] = True
        return json.dumps(ident, sort_keys=True)

    def _token_ids(self) -> bool:
        """Whether sampled answers come back with their token ids (asked for, and offered)."""
        return self.options.token_ids and bool(self.probed.get("chat_token_ids"))

    def usage(self) -> dict[str, int]:
        return dict(self.client.totals) if self.client else {}

    # ------------------------------------------------------------------ requests
    def generate(self, requests: list[GenerateRequest]) -> list[GenerateResult]:
        bodies, owners = [], []
        for j, r in enumerate(requests):
            for body in wire.chat_bodies(self.model, r, self.options.sampling_extra, token_ids=self._token_ids()):
                bodies.append(body)
                owners.append(j)
        answers, cause = self.http.post_many("/chat/completions", bodies)
        out: dict[int, GenerateResult] = {}
        for j, r in enumerate(requests):
            mine = [i for i, o in enumerate(owners) if o == j]
            if all(i in answers for i in mine):  # a request counts only with all its samples
                out[j] = wire.parse_chat([answers[i] for i in mine], r, self.label)
        return _finish(out, len(requests), cause)

    def count(self, requests: list[CountRequest]) -> list[CountResult]:
        method = self.options.count_method
        tokenize = self.probed.get("tokenize")
        if method in ("auto", "tokenize") and tokenize:
            url = self.http.server_url(tokenize)
            bodies = [wire.tokenize_body(tokenize, self.model, r.text) for r in requests]
            answers, cause = self.http.post_many(url, bodies)
            results = {i: CountResult(len(wire.parse_tokens(a, self.label)), "tokenize") for i, a in answers.items()}
            return _finish(results, len(requests), cause)
        if method == "tokenize":
            raise CapabilityMissing(f"model '{self.label}': the server has no tokenize endpoint")
        return self._count_usage(requests)

    def _prompt_tokens(self, texts: list[str]) -> tuple[dict[int, int], BackendError | None]:
        bodies = [
            {"model": self.model, "messages": [{"role": "user", "content": t}], "max_tokens": 1, "temperature": 0}
            for t in texts
        ]
        answers, cause = self.http.post_many("/chat/completions", bodies)
        return {i: wire.usage_prompt_tokens(a, self.label, texts[i]) for i, a in answers.items()}, cause

    def _count_usage(self, requests: list[CountRequest]) -> list[CountResult]:
        """prompt_tokens(message) - prompt_tokens(empty message): the template's own tokens cancel."""
        if self._baseline is None:
            base, cause = self._prompt_tokens([""])
            if cause is not None:
                raise cause
            self._baseline = base[0]
        counts, cause = self._prompt_tokens([r.text for r in requests])
        results = {i: CountResult(n - self._baseline, "usage") for i, n in counts.items()}
        return _finish(results, len(requests), cause)

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        """Teacher-forced top-k from ``prompt_logprobs``, only when alignment was proven at load."""
        check = self.probed.get("prompt_logprobs") or {}
        if not check.get("ok"):
            raise CapabilityMissing(
                f"model '{self.label}': teacher-forced scoring disabled: prompt log-probs {check.get('reason')}"
            )
        if any(r.mode == "full" for r in requests):
            raise CapabilityMissing(f"model '{self.label}': full-vocabulary scoring is not offered over HTTP")
        if any(r.prompt is not None for r in requests):
            if any(r.prompt is None for r in requests):
                raise ValueError("a batch mixes plain and chat-prompted scoring")
            return self._score_prompted(requests)
        bodies = [wire.prompt_logprobs_body(self.model, r.text, r.top_k or 1) for r in requests]
        answers, cause = self.http.post_many("/completions", bodies)
        results = {i: wire.parse_prompt_logprobs(a, requests[i], self.label) for i, a in answers.items()}
        return _finish(results, len(requests), cause)

    def _score_prompted(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        """An answer scored after chat messages, aligned by construction and checked:

        1. the prompt's ids are the ones the server generates after (a one-token chat request
           with ``return_token_ids``: its chat template, generation prompt added), so the
           answer's first token sits where a sampled answer started;
        2. the answer's ids are the sampled ids where the server's tokenizer decodes them to the
           answer's text (``/detokenize``), the text tokenised otherwise (as ``hf`` does);
        3. prompt + answer ids are scored with ``prompt_logprobs``, and the ids the server
           reports back must be the ids sent.
        """
        if not self.probed.get("chat_token_ids") or self.probed.get("tokenize") != "/tokenize":
            raise CapabilityMissing(
                f"model '{self.label}': scoring an answer after a chat prompt needs the prompt's token ids "
                "(return_token_ids) and /tokenize, as vLLM offers"
            )
        keys = sorted({json.dumps(r.prompt, sort_keys=True) for r in requests})
        bodies = [wire.chat_prompt_body(self.model, json.loads(k)) for k in keys]
        answers = self.http.post_all("/chat/completions", bodies)
        prompt_ids = {k: wire.chat_prompt_ids(a, self.label) for k, a in zip(keys, answers)}
        replies = self._reply_ids(requests)
        sent: list[list[int]] = []
        heads: list[int] = []
        for r, reply in zip(requests, replies):
            prompt = prompt_ids[json.dumps(r.prompt, sort_keys=True)]
            ids = prompt + reply
            sent.append(ids[: len(prompt) - 1 + r.max_tokens] if r.max_tokens else ids)
            heads.append(len(prompt) - 1)
            if len(sent[-1]) - heads[-1] < 2:
                raise BackendError(f"model '{self.label}': text tokenises to <2 tokens, nothing to score: {r.text!r}")
        bodies = [wire.prompt_logprobs_body(self.model, ids, r.top_k or 1) for ids, r in zip(sent, requests)]
        scored, cause = self.http.post_many("/completions", bodies)
        results = {}
        for i, a in scored.items():
            whole = wire.parse_prompt_logprobs(a, requests[i].model_copy(update={"max_tokens": None}), self.label)
            if whole.token_ids.tolist() != sent[i]:
                raise BackendError(
                    f"model '{self.label}': the server scored other token ids than were sent; cannot align"
                )
            results[i] = wire.slice_prompted(whole, heads[i])
        return _finish(results, len(requests), cause)

    def _reply_ids(self, requests: list[ScoreRequest]) -> list[list[int]]:
        """Each answer's tokens: its sampled ids where this server decodes them to its text,
        else its text tokenised (no special tokens)."""
        url = self.http.server_url("/detokenize")
        given = [i for i, r in enumerate(requests) if r.reply_ids]
        decoded, _ = self.http.post_many(  # an id list the server cannot decode: tokenise the text
            url, [wire.detokenize_body(self.model, list(requests[i].reply_ids or [])) for i in given]
        )
        out: dict[int, list[int]] = {}
        for j, i in enumerate(given):
            if j in decoded and decodes_to(wire.parse_detokenized(decoded[j], self.label), requests[i].text):
                out[i] = list(requests[i].reply_ids or [])
        rest = [i for i in range(len(requests)) if i not in out]
        bodies = [wire.tokenize_body("/tokenize", self.model, requests[i].text) for i in rest]
        for i, answer in zip(rest, self.http.post_all(self.http.server_url("/tokenize"), bodies)):
            out[i] = wire.parse_tokens(answer, self.label)
        return [out[i] for i in range(len(requests))]


class ApiBackend(Backend):
    """A backend whose requests go to an :class:`OpenAIEndpoint` (set up by ``load()``).

    ``_call`` is the one place a subclass can intercept failures (the ``vllm`` backend turns a
    failure after its server died into "died mid-run" with the server log's tail).
    """

    api: OpenAIEndpoint | None = None

    @property
    def endpoint(self) -> OpenAIEndpoint:
        if self.api is None:
            raise BackendError(f"model '{self.spec.name}': not loaded")
        return self.api

    def _call(self, fn: Callable[[list[Any]], list[T]], requests: list[Any]) -> list[T]:
        return fn(requests)

    def close(self) -> None:
        if self.api is not None:
            self.api.close()

    def capabilities(self) -> Capabilities:
        return self.endpoint.capabilities()

    @classmethod
    def expected_capabilities(cls, spec: ModelRef) -> Capabilities:
        """An OpenAI-compatible server, before it is probed: chat with top log-probs, prompt
        log-probs (vLLM's), scoring after a chat prompt (vLLM's token ids) and usage counts, at
        the options' top-k where they set one."""
        k = int(getattr(cls.Options.model_validate(spec.options), "max_logprobs", 20) or 20)
        supported = [
            Capability.GENERATE,
            Capability.NEXT_TOKEN_TOPK,
            Capability.TOPK_LOGPROBS,
            Capability.TOKEN_COUNTS,
            Capability.CHAT_SCORING,
        ]
        return Capabilities(supported=supported, max_top_k=k)

    def usage(self) -> dict[str, int]:
        return self.api.usage() if self.api else {}

    def batch_size(self, kind: str) -> int:
        return self.endpoint.options.concurrency * 4

    def generate(self, requests: list[GenerateRequest]) -> list[GenerateResult]:
        return self._call(self.endpoint.generate, requests)

    def count(self, requests: list[CountRequest]) -> list[CountResult]:
        return self._call(self.endpoint.count, requests)

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        return self._call(self.endpoint.score, requests)


class OpenAIBackend(ApiBackend):
    name: ClassVar[str] = "openai"
    description: ClassVar[str] = "any OpenAI-compatible endpoint: API-only models, vLLM, llama.cpp server"
    Options = OpenAIOptions
    options: OpenAIOptions

    @classmethod
    def check_spec(cls, spec: ModelRef) -> None:
        opts = OpenAIOptions.model_validate(spec.options)
        if not (opts.model or spec.path):
            raise ValueError("the openai backend needs the model name: `path` or options.model")
        if not opts.base_url.startswith(("http://", "https://")):
            raise ValueError(f"options.base_url must start with http:// or https:// (got {opts.base_url!r})")
        check_key_env(opts)

    def load(self) -> None:
        model = self.options.model or self.spec.path or ""
        self.api = OpenAIEndpoint(self.spec.name, self.options.base_url, model, self.options)
        self.api.connect()

    def fingerprint(self) -> dict[str, Any]:
        return {"backend": self.name, **self.endpoint.fingerprint()}
