"""What an OpenAI-compatible server really does, found out at load and recorded in the run.

Servers differ in what they return and hosted APIs change without notice, so nothing is
assumed: each feature is tried with one or two tiny requests, and a probe that needs a missing
feature degrades or is skipped with the reason recorded.

**Prompt log-prob alignment is decided from the server's answers, never from the model.** A
known-answer test ("does the model predict 1, 2, ..., 30?") is a question about the model: a
small or domain-specific model fails it although the server is perfectly aligned. Instead:

1. *format*: nothing precedes the first prompt token, so an aligned server gives it no
   log-prob, and every later position must contain the actual token, by id;
2. *ids*: the prompt's token ids must equal the server's own ``/tokenize`` of the same text;
3. *consistency*: at a few positions m, the distribution the server reports for prompt
   position m must be the one it generates from after the first m tokens (same top tokens,
   same log-probs within :data:`CONSISTENCY_TOL`). A server off by one position reports the
   distribution of position m+1 instead, which disagrees whatever the model.

llama.cpp's server gives its first echoed token a log-prob (its log-probs are shifted by one
position) and has no ``prompt_logprobs``; vLLM passes all three checks for any model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.backends import openai_wire as wire
from harness.backends.base import Capabilities, Capability
from harness.backends.http_client import HttpClient
from harness.errors import BackendError, CapabilityMissing

# Varied tokens (words, digits, punctuation), so distributions at neighbouring positions differ.
ALIGNMENT_TEXT = "The river froze in 1842; by March, seven ferrymen had walked across it to Quebec and back."
# Log-probs of the same distribution computed twice differ by batch composition only (about
# 1e-3 in fp32, a few 1e-2 in bf16 on GPU); neighbouring positions differ by nats.
CONSISTENCY_TOL = 0.15
TOP_K_TRIALS = (20, 5, 1)


def discover(client: HttpClient, model: str) -> dict[str, Any]:
    """Probe the server; every check is one or two tiny requests. The result is recorded."""
    out: dict[str, Any] = {}
    msg = [{"role": "user", "content": "Count: 1, 2, 3,"}]

    def attempt(path: str, body: dict) -> dict | None:
        try:
            return client.post(path, body)
        except CapabilityMissing:
            return None

    a = attempt("/chat/completions", {"model": model, "messages": msg, "max_tokens": 2, "temperature": 0})
    out["chat"] = a is not None
    out["usage"] = bool(a and (a.get("usage") or {}).get("prompt_tokens"))
    k = 0
    for trial in TOP_K_TRIALS:
        b = attempt(
            "/chat/completions",
            {"model": model, "messages": msg, "max_tokens": 1, "logprobs": True, "top_logprobs": trial},
        )
        if wire.chat_top_logprobs(b):
            k = min(trial, wire.chat_top_logprobs(b))
            break
    out["chat_top_logprobs"] = k
    seeded = {"model": model, "messages": msg, "max_tokens": 8, "temperature": 1.0, "seed": 1234}
    texts = [wire.chat_text(attempt("/chat/completions", seeded)) for _ in range(2)]
    out["seed_honoured"] = texts[0] is not None and texts[0] == texts[1]
    out["chat_token_ids"] = chat_token_ids(attempt("/chat/completions", seeded | {"return_token_ids": True}))
    out["tokenize"] = tokenize_endpoint(client, model)
    out["prompt_logprobs"] = prompt_alignment(client, model, out["tokenize"])
    out["echo"] = echo_check(client, model)
    return out


def chat_token_ids(answer: dict | None) -> bool:
    """Does the chat answer carry the prompt's and the answer's token ids (vLLM's
    ``return_token_ids``), as many as its usage counts? Then sampled answers keep their ids and
    answers can be scored after the exact prompt the server generated from."""
    if not answer:
        return False
    choice = ((answer.get("choices") or [{}])[0]) or {}
    usage = answer.get("usage") or {}
    prompt, sampled = answer.get("prompt_token_ids"), choice.get("token_ids")
    if not isinstance(prompt, list) or not isinstance(sampled, list):
        return False
    return len(prompt) == usage.get("prompt_tokens") and len(sampled) == usage.get("completion_tokens")


def tokenize_endpoint(client: HttpClient, model: str) -> str | None:
    """vLLM: POST /tokenize; llama-cpp-python: POST /extras/tokenize."""
    for path in ("/tokenize", "/extras/tokenize"):
        try:
            wire.parse_tokens(client.post(client.server_url(path), wire.tokenize_body(path, model, "a b")), model)
            return path
        except BackendError:  # includes CapabilityMissing and 404
            continue
    return None


def _largest_prompt_k(client: HttpClient, model: str) -> tuple[int, dict | None, str]:
    """The largest k (of 20, 5, 1) the server accepts for prompt log-probs, with its answer."""
    why = ""
    for k in TOP_K_TRIALS:
        try:
            return k, client.post("/completions", wire.prompt_logprobs_body(model, ALIGNMENT_TEXT, k)), ""
        except CapabilityMissing as e:  # k too large, or no prompt_logprobs at all
            why = str(e)[:200]
        except BackendError as e:  # no /completions route (chat-only APIs answer 404)
            return 0, None, str(e)[:200]
    return 0, None, why


def prompt_alignment(client: HttpClient, model: str, tokenize: str | None) -> dict[str, Any]:
    """The three model-independent checks of the module docstring. ``ok`` enables scoring."""
    k, answer, why = _largest_prompt_k(client, model)
    if answer is None:
        return {"ok": False, "reason": f"no prompt_logprobs: {why}"}
    try:
        ids, positions = wire.prompt_positions(answer, model)
    except BackendError as e:
        return {"ok": False, "reason": f"no prompt_logprobs: {str(e)[:200]}"}
    out: dict[str, Any] = {"ok": False, "top_k": k, "positions": len(ids)}
    if len(ids) < 8:
        return out | {"reason": f"only {len(ids)} prompt positions returned"}
    if positions[0] is not None:
        return out | {"reason": "shifted by one position: the first prompt token carries a log-prob"}
    missing = sum(1 for tok, pos in zip(ids[1:], positions[1:]) if pos is None or tok not in pos)
    if missing:
        return out | {"reason": f"{missing} positions lack the actual token's log-prob; cannot align by id"}
    if tokenize == "/tokenize":
        body = wire.tokenize_body(tokenize, model, ALIGNMENT_TEXT, add_special_tokens=True)
        own = wire.parse_tokens(client.post(client.server_url(tokenize), body), model)
        out["ids_match_tokenize"] = own == ids
        if own != ids:
            return out | {"reason": "the prompt's token ids differ from the server's own /tokenize of the same text"}

    def after(m: int) -> dict[Any, float]:
        return wire.next_token_top(client.post("/completions", wire.completion_body(model, ids[:m], k)), model)

    return out | consistency(positions, after)


def echo_check(client: HttpClient, model: str) -> dict[str, Any]:
    """Echo log-probs (recorded, not used for scoring), checked the same way with text prefixes.
    llama.cpp passes the format check (its first token has no log-prob) but reports at
    position m the distribution of position m+1."""
    try:
        answer = client.post("/completions", wire.echo_body(model, ALIGNMENT_TEXT, 5))
        offsets, tops = wire.echo_positions(answer, model, ALIGNMENT_TEXT)
    except BackendError as e:
        return {"ok": False, "reason": f"echo not supported: {str(e)[:200]}"}
    if len(tops) < 8:
        return {"ok": False, "reason": f"only {len(tops)} echoed positions"}
    if tops[0] is not None:
        return {"ok": False, "reason": "shifted by one position: the first echoed token carries a log-prob"}

    def after(m: int) -> dict[Any, float]:
        prefix = ALIGNMENT_TEXT[: offsets[m]] if m < len(offsets) else ALIGNMENT_TEXT
        answer = client.post("/completions", wire.completion_body(model, prefix, 5, ids=False))
        return wire.next_token_top(answer, model)

    return consistency(tops, after)


def _max_diff(a: dict | None, b: dict) -> float | None:
    """Largest log-prob difference over the tokens both distributions list (None: none shared)."""
    common = set(a or {}) & set(b)
    return round(max(abs(a[t] - b[t]) for t in common), 6) if a and common else None


def _agree(diffs: list[float | None]) -> bool:
    """At least two of the three positions agree within the tolerance."""
    return sum(d is not None and d <= CONSISTENCY_TOL for d in diffs) >= 2


def consistency(reported: list[dict | None], after: Callable[[int], dict[Any, float]]) -> dict[str, Any]:
    """Compare the reported distribution at three positions m with what the server generates
    after the first m tokens (aligned) and, if that fails, after m+1 tokens (shifted)."""
    n = len(reported)
    rows: list[dict[str, Any]] = [{"position": m} for m in (n // 4, n // 2, (3 * n) // 4)]
    for r in rows:
        r["aligned_max_abs_diff"] = _max_diff(reported[r["position"]], after(r["position"]))
    if _agree([r["aligned_max_abs_diff"] for r in rows]):
        return {"ok": True, "reason": "aligned", "consistency": rows}
    for r in rows:
        r["shifted_max_abs_diff"] = _max_diff(reported[r["position"]], after(r["position"] + 1))
    if _agree([r["shifted_max_abs_diff"] for r in rows]):
        reason = "shifted by one position: position m holds the distribution of position m+1"
    else:
        reason = "log-probs disagree with the server's own next-token distributions"
    return {"ok": False, "reason": reason, "consistency": rows}


def capabilities(probed: dict[str, Any]) -> Capabilities:
    """Capabilities from what :func:`discover` found (an unprobed server is assumed to chat)."""
    caps = [Capability.GENERATE] if probed.get("chat", True) else []
    if probed.get("chat_top_logprobs"):
        caps.append(Capability.NEXT_TOKEN_TOPK)
    if probed.get("usage") or probed.get("tokenize"):
        caps.append(Capability.TOKEN_COUNTS)
    prompt = probed.get("prompt_logprobs") or {}
    if prompt.get("ok"):
        caps.append(Capability.TOPK_LOGPROBS)
        if probed.get("chat_token_ids"):
            caps.append(Capability.CHAT_SCORING)
    k = max(int(probed.get("chat_top_logprobs") or 0), int(prompt.get("top_k") or 0) if prompt.get("ok") else 0)
    return Capabilities(supported=caps, max_top_k=k)
