"""The HTTP transport every API backend shares: one client from ``load()`` to ``close()``.

It owns what is the same for every OpenAI-compatible server, whatever the request:

* **bounded concurrency**: a thread pool of ``concurrency`` workers over one keep-alive
  ``httpx.Client`` (thread-safe), so a batch of answers overlaps its network and server time;
* **retries**: exponential backoff with jitter, ``Retry-After`` honoured, bounded attempts and
  bounded total time per request; timeouts, resets and truncated JSON are transient;
* **fatal statuses**: 401/403/404 fail at once with a message naming the key's variable; a
  400/422 is :class:`CapabilityMissing` (the server does not do what was asked);
* **partial batches**: answers that arrived before a failure are returned with the error, so
  the runner caches what was paid for;
* **usage totals**: requests, retries and tokens, recorded per model in the run log.

Request bodies and response parsing are not here: they are pure functions in
:mod:`harness.backends.openai_wire`.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from harness.errors import BackendError, CapabilityMissing

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
FATAL_STATUS = {401: "authentication failed", 403: "access denied", 404: "not found"}


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    max_retry_s: float = 300.0
    backoff_s: float = 0.5

    def delay(self, attempt: int) -> float:
        """The pause after failed attempt ``attempt`` (0-based): doubles, with +-50% jitter."""
        return self.backoff_s * 2**attempt * (0.5 + random.random())


class HttpClient:
    """A keep-alive client bound to one API root (``base_url``, e.g. ``http://host:port/v1``).

    Relative paths are under ``base_url``; :meth:`server_url` is for routes outside it (vLLM's
    ``/tokenize`` and ``/health``, llama.cpp's ``/extras/tokenize``).

        ``label`` names the model in every message; ``key_env`` is the *name* of the variable that
        holds the key (its value is sent as a header and never appears in a message).
    """

    def __init__(
        self,
        base_url: str,
        *,
        label: str,
        headers: dict[str, str] | None = None,
        key_env: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        alive: Callable[[], bool] | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.label = label
        self.key_env = key_env
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self.alive = alive  # a launched server's liveness: no retries into a dead process
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._http = httpx.Client(timeout=timeout_s, limits=limits, headers=headers or {})
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"http-{label}")
        self._lock = threading.Lock()
        self.server_header: str | None = None
        self.totals = {"requests": 0, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0}

    def close(self) -> None:
        """Queued requests are cancelled and in-flight ones abandoned, so Ctrl-C does not wait
        for a slow server's timeouts (their answers were never going to be recorded)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"

    def server_url(self, path: str) -> str:
        """A route at the server's root rather than under ``/v1``."""
        return self.base_url.removesuffix("/v1") + path

    # ------------------------------------------------------------------ one request
    def _fatal(self, url: str, resp: httpx.Response) -> BackendError:
        hint = f" (check {self.key_env})" if resp.status_code in (401, 403) and self.key_env else ""
        return BackendError(
            f"model '{self.label}': {url} answered {resp.status_code} "
            f"({FATAL_STATUS[resp.status_code]}): {resp.text[:300]}{hint}"
        )

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        """One request with retries. Raises BackendError (fatal, or retries exhausted) or
        CapabilityMissing (400/422: the server does not support what was asked)."""
        url = self.url(path)
        start = time.monotonic()
        last = ""
        attempt = 0
        for attempt in range(self.retry.max_attempts):
            delay = None
            try:
                resp = self._http.request(method, url, json=body)
                with self._lock:
                    self.totals["requests"] += 1
                    self.server_header = resp.headers.get("server", self.server_header)
                if resp.status_code == 200:
                    answer = resp.json()
                    if not isinstance(answer, dict):
                        raise json.JSONDecodeError("not a JSON object", resp.text[:100], 0)
                    return answer
                if resp.status_code in FATAL_STATUS:
                    raise self._fatal(url, resp)
                if resp.status_code in (400, 422):
                    raise CapabilityMissing(f"{url} rejected the request ({resp.status_code}): {resp.text[:300]}")
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                if resp.status_code not in RETRY_STATUS:
                    raise BackendError(f"model '{self.label}': {url} answered {last}")
                delay = retry_after(resp.headers.get("retry-after"))
            except (httpx.TransportError, json.JSONDecodeError) as e:  # timeouts, resets, truncated JSON
                last = f"{type(e).__name__}: {e}"
            if attempt + 1 == self.retry.max_attempts or (self.alive is not None and not self.alive()):
                break
            if delay is None:
                delay = self.retry.delay(attempt)
            if time.monotonic() - start + delay > self.retry.max_retry_s:
                break
            with self._lock:
                self.totals["retries"] += 1
            time.sleep(delay)
        raise BackendError(
            f"model '{self.label}': {url} failed after {attempt + 1} attempts "
            f"({time.monotonic() - start:.1f}s); last error: {last}"
        )

    def get(self, path: str) -> dict:
        return self.request("GET", path)

    def post(self, path: str, body: dict) -> dict:
        return self.request("POST", path, body)

    # ------------------------------------------------------------------ batches
    def post_many(self, path: str, bodies: list[dict]) -> tuple[dict[int, dict], BackendError | None]:
        """POST ``bodies`` concurrently (bounded). Returns the answers by index and the first
        error, if any: answers that arrived before a failure are kept, not thrown away."""
        futures = [self._pool.submit(self.post, path, b) for b in bodies]
        done: dict[int, dict] = {}
        cause: BackendError | None = None
        for i, f in enumerate(futures):
            try:
                done[i] = f.result()
            except BackendError as e:
                cause = cause or e
        for a in done.values():
            usage = a.get("usage") or {}
            if isinstance(usage, dict):
                self.totals["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
                self.totals["completion_tokens"] += int(usage.get("completion_tokens") or 0)
        return done, cause

    def post_all(self, path: str, bodies: list[dict]) -> list[dict]:
        """All answers in order, or the first error."""
        done, cause = self.post_many(path, bodies)
        if cause is not None:
            raise cause
        return [done[i] for i in range(len(bodies))]


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (seconds form; HTTP dates are rare for APIs)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
