"""``openai`` backend: any OpenAI-compatible HTTP endpoint (hosted APIs, vLLM, llama.cpp server).

API-only models are where forensic questions are hardest, so this backend is careful about
three things:

* **Honest capabilities.** At load it probes what the server really does (chat log-probs and
  the largest k, ``usage`` counts, a tokenize endpoint, whether a seed is honoured, echo /
  ``prompt_logprobs``) and records it. Prompt log-probs must pass a known-answer alignment
  check: "1, 2, ..., 30" is scored and the actual tokens must be the likely ones. llama.cpp's
  server returns echo log-probs shifted by one position; the check catches that and
  teacher-forced scoring is switched off instead of producing garbage statistics.
* **Throughput without abuse.** Requests in a batch go out concurrently (bounded per
  endpoint) with exponential backoff honouring ``Retry-After``, bounded attempts and total
  time; 401/403/404 fail at once with a clear message; a 400 is a capability error.
* **Secrets.** The key is read from the environment variable *named* in the suite
  (``api_key_env``); it never enters the config dump, fingerprint, cache key or logs.

Sampled generations with ``n > 1`` are sent as ``n`` requests with seeds ``seed+i`` so each
sample is reproducible and servers that ignore ``n`` still give ``n`` answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
from typing import Any, ClassVar, Literal

import httpx
import numpy as np
from pydantic import Field

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
)
from harness.config import ModelSpec
from harness.errors import BackendError, CapabilityMissing, PartialBatch

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
FATAL_STATUS = {401: "authentication failed", 403: "access denied", 404: "not found"}
ALIGNMENT_TEXT = ", ".join(str(i) for i in range(1, 31))


class OpenAIOptions(BackendOptions):
    base_url: str = Field(description="Endpoint root including /v1, e.g. http://127.0.0.1:8000/v1")
    model: str | None = Field(None, description="Model name sent in requests; defaults to the spec's `path`.")
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


class OpenAIBackend(Backend):
    name: ClassVar[str] = "openai"
    description: ClassVar[str] = "any OpenAI-compatible endpoint: API-only models, vLLM, llama.cpp server"
    Options = OpenAIOptions
    options: OpenAIOptions

    @classmethod
    def check_spec(cls, spec: ModelSpec) -> None:
        opts = OpenAIOptions.model_validate(spec.options)
        if not (opts.model or spec.path):
            raise ValueError("the openai backend needs the model name: `path` or options.model")
        if not opts.base_url.startswith(("http://", "https://")):
            raise ValueError(f"options.base_url must start with http:// or https:// (got {opts.base_url!r})")

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        self.model = self.options.model or spec.path or ""
        self.base_url = (self.options.base_url or "").rstrip("/")
        self.probed: dict[str, Any] = {}
        self.server_model: dict[str, Any] = {}
        self.server_header: str | None = None
        self.totals = {"requests": 0, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0}
        self._baseline: int | None = None

    # ------------------------------------------------------------------ HTTP
    def _headers(self) -> dict[str, str]:
        env = self.options.api_key_env
        if env is None:
            return {}
        key = os.environ.get(env)
        if not key:
            raise BackendError(f"model '{self.spec.name}': environment variable {env} (options.api_key_env) is not set")
        return {"Authorization": f"Bearer {key}"}

    def _client(self) -> httpx.AsyncClient:
        limits = httpx.Limits(
            max_connections=self.options.concurrency, max_keepalive_connections=self.options.concurrency
        )
        return httpx.AsyncClient(timeout=self.options.timeout_s, limits=limits, headers=self._headers())

    async def _post(self, client: httpx.AsyncClient, sem: asyncio.Semaphore, path: str, body: dict) -> dict:
        """POST with retries. Raises BackendError (fatal) or CapabilityMissing (a 400)."""
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"
        start = time.monotonic()
        last = ""
        for attempt in range(self.options.max_attempts):
            delay = None
            async with sem:
                try:
                    resp = await client.post(url, json=body)
                    self.totals["requests"] += 1
                    self.server_header = resp.headers.get("server", self.server_header)
                    if resp.status_code == 200:
                        return resp.json()
                    if resp.status_code in FATAL_STATUS:
                        raise BackendError(
                            f"model '{self.spec.name}': {url} answered {resp.status_code} "
                            f"({FATAL_STATUS[resp.status_code]}): {resp.text[:300]}"
                            + (f" (check {self.options.api_key_env})" if resp.status_code in (401, 403) else "")
                        )
                    if resp.status_code == 400 or resp.status_code == 422:
                        raise CapabilityMissing(f"{url} rejected the request ({resp.status_code}): {resp.text[:300]}")
                    last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                    if resp.status_code not in RETRY_STATUS:
                        raise BackendError(f"model '{self.spec.name}': {url} answered {last}")
                    delay = _retry_after(resp.headers.get("retry-after"))
                except (httpx.TransportError, json.JSONDecodeError) as e:  # timeouts, resets, truncated JSON
                    last = f"{type(e).__name__}: {e}"
            if attempt + 1 == self.options.max_attempts:
                break
            if delay is None:
                delay = self.options.backoff_s * 2**attempt * (0.5 + random.random())
            if time.monotonic() - start + delay > self.options.max_retry_s:
                break
            self.totals["retries"] += 1
            await asyncio.sleep(delay)
        raise BackendError(
            f"model '{self.spec.name}': {url} failed after {attempt + 1} attempts "
            f"({time.monotonic() - start:.1f}s); last error: {last}"
        )

    def _run_partial(self, path: str, bodies: list[dict]) -> tuple[dict[int, dict], BackendError | None]:
        """Send ``bodies`` concurrently (bounded). Returns the answers by index and the first
        error, if any: answers that arrived before a failure are kept, not thrown away."""

        async def go() -> list[dict | BaseException]:
            sem = asyncio.Semaphore(self.options.concurrency)
            async with self._client() as client:
                return await asyncio.gather(*(self._post(client, sem, path, b) for b in bodies), return_exceptions=True)

        answers = asyncio.run(go())
        cause = None
        for a in answers:
            if isinstance(a, BackendError):
                cause = cause or a
            elif isinstance(a, BaseException):
                raise a
        done = {i: a for i, a in enumerate(answers) if not isinstance(a, BaseException)}
        for a in done.values():
            usage = a.get("usage") or {}
            self.totals["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
            self.totals["completion_tokens"] += int(usage.get("completion_tokens") or 0)
        return done, cause

    def _run(self, path: str, bodies: list[dict]) -> list[dict]:
        """All answers in order, or the first error."""
        done, cause = self._run_partial(path, bodies)
        if cause is not None:
            raise cause
        return [done[i] for i in range(len(bodies))]

    @staticmethod
    def _finish(results: dict[int, Any], n: int, cause: BackendError | None) -> list[Any]:
        """Results in request order, or PartialBatch with those that completed."""
        if cause is None:
            return [results[i] for i in range(n)]
        if not results:
            raise cause
        raise PartialBatch(results, cause)

    def _get(self, path: str) -> dict:
        try:
            resp = httpx.get(f"{self.base_url}{path}", headers=self._headers(), timeout=self.options.timeout_s)
        except httpx.TransportError as e:
            raise BackendError(
                f"model '{self.spec.name}': cannot reach {self.base_url}: {type(e).__name__}: {e}"
            ) from e
        if resp.status_code in FATAL_STATUS:
            raise BackendError(
                f"model '{self.spec.name}': {self.base_url}{path} answered {resp.status_code} "
                f"({FATAL_STATUS[resp.status_code]})"
                + (f"; check {self.options.api_key_env}" if resp.status_code < 404 else "")
            )
        resp.raise_for_status()
        return resp.json()

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> None:
        models = self._get("/models").get("data", [])
        match = next((m for m in models if m.get("id") == self.model), None)
        if match is None and len(models) == 1 and self.options.model is None and self.spec.path is None:
            match = models[0]
        self.server_model = match or {}
        if self.options.probe_capabilities:
            self.probed = self._probe()

    def _probe(self) -> dict[str, Any]:
        """What the server really supports. Each check is one or two tiny requests."""
        out: dict[str, Any] = {}
        msg = [{"role": "user", "content": "Count: 1, 2, 3,"}]

        def attempt(path: str, body: dict) -> dict | None:
            try:
                return self._run(path, [body])[0]
            except CapabilityMissing:
                return None

        a = attempt("/chat/completions", {"model": self.model, "messages": msg, "max_tokens": 2, "temperature": 0})
        out["chat"] = a is not None
        out["usage"] = bool(a and (a.get("usage") or {}).get("prompt_tokens"))
        k = 0
        for trial in (20, 5, 1):
            b = attempt(
                "/chat/completions",
                {"model": self.model, "messages": msg, "max_tokens": 1, "logprobs": True, "top_logprobs": trial},
            )
            content = ((b or {}).get("choices") or [{}])[0].get("logprobs") or {}
            tops = (content.get("content") or [{}])[0].get("top_logprobs") or []
            if tops:
                k = min(trial, len(tops))
                break
        out["chat_top_logprobs"] = k
        s = [
            attempt(
                "/chat/completions",
                {"model": self.model, "messages": msg, "max_tokens": 8, "temperature": 1.0, "seed": 1234},
            )
            for _ in range(2)
        ]
        texts = [((x or {}).get("choices") or [{}])[0].get("message", {}).get("content") for x in s]
        out["seed_honoured"] = texts[0] is not None and texts[0] == texts[1]
        out["tokenize"] = self._tokenize_endpoint()
        out["echo_alignment"] = self._alignment_check()
        return out

    def _tokenize_endpoint(self) -> str | None:
        """vLLM: POST /tokenize {model, prompt}; llama-cpp-python: POST /extras/tokenize {input}."""
        root = self.base_url.removesuffix("/v1")
        for path, body, field in (
            ("/tokenize", {"model": self.model, "prompt": "a b", "add_special_tokens": False}, "tokens"),
            ("/extras/tokenize", {"input": "a b"}, "tokens"),
        ):
            try:
                r = httpx.post(root + path, json=body, headers=self._headers(), timeout=self.options.timeout_s)
            except httpx.TransportError:
                continue
            if r.status_code == 200 and isinstance(r.json().get(field), list):
                return path
        return None

    def _alignment_check(self) -> dict[str, Any]:
        """Score "1, 2, ..., 30" with echo: the actual tokens must be the model's top choices.

        Returns the share of positions where the top-1 token is the actual token and where it
        is the *next* token. A shifted server (llama.cpp) has the second high and the first low.
        """
        body = {
            "model": self.model,
            "prompt": ALIGNMENT_TEXT,
            "max_tokens": 1,
            "echo": True,
            "logprobs": 1,
            "temperature": 0,
        }
        try:
            ans = self._run("/completions", [body])[0]
        except (CapabilityMissing, BackendError) as e:
            return {"ok": False, "reason": f"echo not supported: {str(e)[:200]}"}
        lp = (ans.get("choices") or [{}])[0].get("logprobs") or {}
        tokens, tops = lp.get("tokens") or [], lp.get("top_logprobs") or []
        n = min(len(tokens), len(tops))
        pairs = [(i, tops[i]) for i in range(n // 2, n - 1) if tops[i]]  # the predictable second half
        if not pairs:
            return {"ok": False, "reason": "no prompt log-probs in the echo answer"}
        aligned = sum(max(t, key=t.get) == tokens[i] for i, t in pairs) / len(pairs)
        shifted = sum(max(t, key=t.get) == tokens[i + 1] for i, t in pairs) / len(pairs)
        ok = aligned >= 0.8 and aligned > shifted
        reason = "aligned" if ok else ("shifted by one position" if shifted > aligned else "low agreement")
        return {"ok": ok, "aligned": aligned, "shifted": shifted, "positions": len(pairs), "reason": reason}

    def close(self) -> None:
        pass

    # ------------------------------------------------------------------ identity
    def capabilities(self) -> Capabilities:
        p = self.probed
        caps = [Capability.GENERATE] if p.get("chat", True) else []
        if p.get("chat_top_logprobs"):
            caps.append(Capability.NEXT_TOKEN_TOPK)
        if p.get("usage") or p.get("tokenize"):
            caps.append(Capability.TOKEN_COUNTS)
        if (p.get("echo_alignment") or {}).get("ok"):
            caps.append(Capability.TOPK_LOGPROBS)
        return Capabilities(supported=caps, max_top_k=int(p.get("chat_top_logprobs") or 0))

    def fingerprint(self) -> dict[str, Any]:
        fp = {
            "backend": self.name,
            "base_url": self.base_url,
            "model": self.model,
            "server_model": {k: self.server_model.get(k) for k in ("id", "created", "owned_by", "root", "revision")},
            "server": self.server_header,
            "capabilities": self.probed,
            "api_key_env": self.options.api_key_env,  # the variable's name, never its value
        }
        key_fields = [self.base_url, self.model, json.dumps(fp["server_model"], sort_keys=True)]
        fp["key"] = hashlib.sha256("\n".join(key_fields).encode()).hexdigest()
        return fp

    def usage(self) -> dict[str, int]:
        return dict(self.totals)

    def batch_size(self, kind: str) -> int:
        return self.options.concurrency * 4

    # ------------------------------------------------------------------ requests
    def generate(self, requests: list[GenerateRequest]) -> list[GenerateResult]:
        bodies, owners = [], []
        for j, r in enumerate(requests):
            for i in range(r.n):
                body: dict[str, Any] = {
                    "model": self.model,
                    "messages": r.messages,
                    "max_tokens": r.max_new_tokens,
                    "temperature": r.temperature,
                    "top_p": r.top_p,
                    "seed": r.seed + i,
                }
                if r.top_logprobs:
                    body |= {"logprobs": True, "top_logprobs": r.top_logprobs}
                bodies.append(body)
                owners.append(j)
        answers, cause = self._run_partial("/chat/completions", bodies)
        out: dict[int, GenerateResult] = {}
        complete = {j for j in range(len(requests)) if all(i in answers for i, o in enumerate(owners) if o == j)}
        for j, a in zip(owners, [answers.get(i) for i in range(len(bodies))]):
            if j not in complete:
                continue
            choice = _first_choice(a, self.spec.name)
            text = (choice.get("message") or {}).get("content")
            if not isinstance(text, str):
                raise BackendError(f"model '{self.spec.name}': answer without message content: {str(a)[:300]}")
            usage = a.get("usage") or {}
            res = out.setdefault(j, GenerateResult(texts=[], completion_tokens=[], prompt_tokens=0))
            res.texts.append(text)
            res.completion_tokens.append(int(usage.get("completion_tokens") or 0))
            res.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            if requests[j].top_logprobs and not res.first_token_topk:
                content = (choice.get("logprobs") or {}).get("content") or []
                if content:
                    res.first_token_topk = [[(t["token"], float(t["logprob"])) for t in content[0]["top_logprobs"]]]
        return self._finish(out, len(requests), cause)

    def count(self, requests: list[CountRequest]) -> list[CountResult]:
        method = self.options.count_method
        tokenize = self.probed.get("tokenize") if self.probed else None
        if method in ("auto", "tokenize") and tokenize:
            return self._count_tokenize(tokenize, requests)
        if method == "tokenize":
            raise CapabilityMissing(f"model '{self.spec.name}': the server has no tokenize endpoint")
        return self._count_usage(requests)

    def _count_tokenize(self, path: str, requests: list[CountRequest]) -> list[CountResult]:
        """Counts from the server's tokenize endpoint (outside /v1), with the same concurrency,
        retries and partial-batch handling as every other request."""
        url = self.base_url.removesuffix("/v1") + path
        bodies = [
            {"input": r.text}
            if path == "/extras/tokenize"
            else {"model": self.model, "prompt": r.text, "add_special_tokens": False}
            for r in requests
        ]
        answers, cause = self._run_partial(url, bodies)
        results = {i: CountResult(len(a["tokens"]), "tokenize") for i, a in answers.items()}
        return self._finish(results, len(requests), cause)

    def _prompt_tokens(self, texts: list[str]) -> tuple[dict[int, int], BackendError | None]:
        bodies = [
            {"model": self.model, "messages": [{"role": "user", "content": t}], "max_tokens": 1, "temperature": 0}
            for t in texts
        ]
        answers, cause = self._run_partial("/chat/completions", bodies)
        out = {}
        for i, a in answers.items():
            n = (a.get("usage") or {}).get("prompt_tokens")
            if not isinstance(n, int):
                raise CapabilityMissing(
                    f"model '{self.spec.name}': the server reports no usage.prompt_tokens, so token counts "
                    f"cannot be measured this way (text {texts[i]!r})"
                )
            out[i] = n
        return out, cause

    def _count_usage(self, requests: list[CountRequest]) -> list[CountResult]:
        """prompt_tokens(message) - prompt_tokens(empty message): the template's own tokens cancel."""
        if self._baseline is None:
            base, cause = self._prompt_tokens([""])
            if cause is not None:
                raise cause
            self._baseline = base[0]
        counts, cause = self._prompt_tokens([r.text for r in requests])
        results = {i: CountResult(n - self._baseline, "usage") for i, n in counts.items()}
        return self._finish(results, len(requests), cause)

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        """Teacher-forced top-k via echo, only when the alignment check passed and the server
        returns token ids (vLLM's ``return_tokens_as_token_ids``): the logit probes align by id."""
        check = self.probed.get("echo_alignment") or {}
        if not check.get("ok"):
            raise CapabilityMissing(
                f"model '{self.spec.name}': teacher-forced scoring disabled: echo alignment check {check.get('reason')}"
            )
        bodies = [
            {
                "model": self.model,
                "prompt": r.text,
                "max_tokens": 1,
                "echo": True,
                "logprobs": r.top_k or 1,
                "return_tokens_as_token_ids": True,
            }
            for r in requests
        ]
        out = []
        for a in self._run("/completions", bodies):
            lp = _first_choice(a, self.spec.name).get("logprobs") or {}
            tokens, token_lp, tops = (
                lp.get("tokens") or [],
                lp.get("token_logprobs") or [],
                lp.get("top_logprobs") or [],
            )
            n = len(tokens) - 1  # echo ends with the one generated token
            ids = [_token_id(t) for t in tokens[:n]]
            if n < 2 or None in ids:
                raise CapabilityMissing(
                    f"model '{self.spec.name}': the server returns token strings, not ids; cannot align log-probs by id"
                )
            top_items = [sorted(((_token_id(k), v) for k, v in t.items()), key=lambda kv: -kv[1]) for t in tops[1:n]]
            k = min(len(t) for t in top_items)
            out.append(
                ScoreResult(
                    token_ids=np.array(ids),
                    token_logprobs=np.array(token_lp[1:n], dtype=np.float32),
                    topk_ids=np.array([[i for i, _ in t[:k]] for t in top_items]),
                    topk_logprobs=np.array([[v for _, v in t[:k]] for t in top_items], dtype=np.float32),
                )
            )
        return out


def _token_id(token: str) -> int | None:
    """vLLM writes tokens as "token_id:123" when asked to; anything else has no id."""
    return int(token[9:]) if token.startswith("token_id:") and token[9:].isdigit() else None


def _first_choice(answer: dict, model: str) -> dict:
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices:
        raise BackendError(f"model '{model}': malformed answer (no choices): {str(answer)[:300]}")
    return choices[0]


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (seconds form; HTTP dates are rare for APIs)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
