"""Request bodies and response parsing for OpenAI-compatible servers, as pure functions.

Nothing here sends anything: the functions turn requests into JSON bodies and JSON answers
into results, so they are unit-tested on answers recorded from real vLLM and llama.cpp
servers (``tests/data/wire/``). Everything that aligns log-probs does so by token id, never by
the order of a returned dict.

Teacher-forced scoring uses vLLM's ``prompt_logprobs`` with ``return_token_ids``: each prompt
position comes back keyed by token id, with the actual token always present, and the prompt's
token ids come with it (measured against echo in ``benchmarks/bench_vllm_scoring.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.backends.base import GenerateRequest, GenerateResult, ScoreRequest, ScoreResult
from harness.errors import BackendError, CapabilityMissing


def first_choice(answer: dict, model: str) -> dict:
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BackendError(f"model '{model}': malformed answer (no choices): {str(answer)[:300]}")
    return choices[0]


# ---------------------------------------------------------------------- chat generations
def chat_bodies(
    model: str, request: GenerateRequest, sampling_extra: dict[str, Any] | None = None, token_ids: bool = False
) -> list[dict[str, Any]]:
    """One body per sample: ``n`` samples are ``n`` requests with seeds ``seed+i``, so each is
    reproducible and servers that ignore ``n`` still give ``n`` answers. ``sampling_extra`` goes
    into sampled requests only (a greedy answer does not depend on it). ``token_ids`` asks for
    the sampled token ids (vLLM's ``return_token_ids``), so answers are scored as sampled."""
    bodies = []
    for i in range(request.n):
        body: dict[str, Any] = {
            "model": model,
            "messages": request.messages,
            "max_tokens": request.max_new_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "seed": request.seed + i,
        }
        if request.top_logprobs:
            body |= {"logprobs": True, "top_logprobs": request.top_logprobs}
        if request.temperature > 0 and sampling_extra:
            body |= sampling_extra
        if token_ids:
            body["return_token_ids"] = True
        bodies.append(body)
    return bodies


def parse_chat(answers: list[dict], request: GenerateRequest, model: str) -> GenerateResult:
    """The ``n`` answers of one request (in sample order) as one result. Sampled token ids are
    kept only when every answer carries them (``return_token_ids``)."""
    res = GenerateResult(texts=[], completion_tokens=[], prompt_tokens=0)
    ids: list[list[int]] = []
    for a in answers:
        choice = first_choice(a, model)
        text = (choice.get("message") or {}).get("content")
        if not isinstance(text, str):
            raise BackendError(f"model '{model}': answer without message content: {str(a)[:300]}")
        usage = a.get("usage") or {}
        res.texts.append(text)
        res.completion_tokens.append(int(usage.get("completion_tokens") or 0))
        res.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        if request.top_logprobs and not res.first_token_topk:
            content = (choice.get("logprobs") or {}).get("content") or []
            if content:
                res.first_token_topk = [[(t["token"], float(t["logprob"])) for t in content[0]["top_logprobs"]]]
        sampled = sampled_token_ids(choice)
        if sampled is not None:
            ids.append(sampled)
    if ids and len(ids) == len(answers):
        res.token_ids = ids
    return res


def sampled_token_ids(choice: dict) -> list[int] | None:
    """The answer's sampled token ids, the end-of-sequence token cut as the ``hf`` backend cuts
    it: vLLM lists the token that stopped generation (finish "stop" without a stop string;
    ``stop_reason`` is None for the model's EOS, the id for another stop token)."""
    ids = choice.get("token_ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        return None
    stop = choice.get("stop_reason")
    if choice.get("finish_reason") == "stop" and ids and (stop is None or stop == ids[-1]):
        ids = ids[:-1]
    return list(ids)


def chat_top_logprobs(answer: dict | None) -> int:
    """How many top log-probs a chat answer carries for its first token (0: none)."""
    choice = ((answer or {}).get("choices") or [{}])[0]
    content = (choice.get("logprobs") or {}).get("content") or [{}]
    return len(content[0].get("top_logprobs") or [])


def chat_text(answer: dict | None) -> str | None:
    return (((answer or {}).get("choices") or [{}])[0].get("message") or {}).get("content")


# ---------------------------------------------------------------------- teacher-forced scoring
def prompt_logprobs_body(model: str, text: str | list[int], top_k: int) -> dict[str, Any]:
    """vLLM's ``prompt_logprobs``: top-k plus the actual token at every prompt position."""
    return {
        "model": model,
        "prompt": text,
        "max_tokens": 1,
        "temperature": 0,
        "prompt_logprobs": top_k,
        "return_token_ids": True,
    }


def prompt_positions(answer: dict, model: str) -> tuple[list[int], list[dict[int, float] | None]]:
    """Prompt token ids and, per position, ``{token_id: logprob}`` (None where nothing predicts)."""
    choice = first_choice(answer, model)
    ids, positions = choice.get("prompt_token_ids"), choice.get("prompt_logprobs")
    if not isinstance(ids, list) or not isinstance(positions, list):
        raise CapabilityMissing(f"model '{model}': the answer has no prompt_token_ids / prompt_logprobs")
    if len(ids) != len(positions):
        raise BackendError(
            f"model '{model}': {len(ids)} prompt token ids but {len(positions)} prompt log-prob positions"
        )
    parsed: list[dict[int, float] | None] = []
    for p in positions:
        if p is None:
            parsed.append(None)
            continue
        try:
            parsed.append({int(k): float(v["logprob"] if isinstance(v, dict) else v) for k, v in p.items()})
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            raise BackendError(f"model '{model}': unreadable prompt log-probs {str(p)[:200]}: {e}") from e
    return [int(i) for i in ids], parsed


def parse_prompt_logprobs(answer: dict, request: ScoreRequest, model: str) -> ScoreResult:
    """A :class:`ScoreResult` from a ``prompt_logprobs`` answer: positions 1..T-1, top-k by id."""
    ids, positions = prompt_positions(answer, model)
    if request.max_tokens is not None:
        ids, positions = ids[: request.max_tokens], positions[: request.max_tokens]
    if len(ids) < 2:
        raise BackendError(f"model '{model}': fewer than two prompt tokens to score")
    if positions[0] is not None:
        raise BackendError(f"model '{model}': the first prompt token carries a log-prob; positions are misaligned")
    actual, top_ids, top_lps = [], [], []
    k = request.top_k or 1
    for pos, tok in zip(positions[1:], ids[1:]):
        if pos is None or tok not in pos:
            raise BackendError(f"model '{model}': prompt log-probs lack the actual token {tok}; cannot align by id")
        actual.append(pos[tok])
        ranked = sorted(pos.items(), key=lambda kv: -kv[1])
        if len(ranked) < k:
            raise CapabilityMissing(f"model '{model}': asked for top-{k} prompt log-probs, got {len(ranked)}")
        top_ids.append([i for i, _ in ranked[:k]])
        top_lps.append([v for _, v in ranked[:k]])
    return ScoreResult(
        token_ids=np.array(ids),
        token_logprobs=np.array(actual, dtype=np.float32),
        topk_ids=np.array(top_ids),
        topk_logprobs=np.array(top_lps, dtype=np.float32),
    )


def slice_prompted(result: ScoreResult, head: int) -> ScoreResult:
    """The scored answer of a prompt-plus-answer scoring: tokens from ``head`` (the prompt's last
    token, which predicts the answer's first) on, as the ``hf`` backend returns it."""
    cut = {k: v[head:] for k, v in result.__dict__.items() if isinstance(v, np.ndarray) and k != "sample_ids"}
    return ScoreResult(**(result.__dict__ | cut))


def chat_prompt_body(model: str, messages: list[dict[str, str]]) -> dict[str, Any]:
    """One greedy token after chat messages, with the prompt's token ids: the ids the server
    generates after (its chat template, generation prompt added), so an answer scored after
    them starts exactly where a sampled answer started."""
    return {"model": model, "messages": messages, "max_tokens": 1, "temperature": 0, "return_token_ids": True}


def chat_prompt_ids(answer: dict, model: str) -> list[int]:
    ids = answer.get("prompt_token_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, int) for i in ids):
        raise CapabilityMissing(f"model '{model}': the chat answer carries no prompt_token_ids (return_token_ids)")
    return ids


def completion_body(model: str, prompt: str | list[int], top_k: int, ids: bool = True) -> dict[str, Any]:
    """One greedy token after ``prompt`` with its top-k log-probs (tokens written as ids if ``ids``)."""
    body = {"model": model, "prompt": prompt, "max_tokens": 1, "temperature": 0, "logprobs": top_k}
    return body | {"return_tokens_as_token_ids": True} if ids else body


def next_token_top(answer: dict, model: str) -> dict[Any, float]:
    """The first generated token's top-k log-probs, keyed by token id where the server writes
    ids ("token_id:123"), else by token string."""
    lp = first_choice(answer, model).get("logprobs") or {}
    tops = lp.get("top_logprobs") or [None]
    out: dict[Any, float] = {}
    for k, v in (tops[0] or {}).items():
        tid = token_id(k)
        out[k if tid is None else tid] = float(v)
    return out


def echo_body(model: str, text: str, top_k: int) -> dict[str, Any]:
    """Echo of the prompt with its log-probs (the OpenAI legacy way; llama.cpp supports it)."""
    return {"model": model, "prompt": text, "max_tokens": 1, "temperature": 0, "echo": True, "logprobs": top_k}


def echo_positions(answer: dict, model: str, prompt: str) -> tuple[list[int], list[dict[str, float] | None]]:
    """Character offsets and top log-probs of the echoed ``prompt``'s tokens. Servers differ on
    whether the generated token is listed too (vLLM: yes; llama.cpp: no): offsets tell."""
    lp = first_choice(answer, model).get("logprobs") or {}
    offsets, tops = lp.get("text_offset") or [], lp.get("top_logprobs") or []
    if not tops or len(offsets) != len(tops):
        raise CapabilityMissing(f"model '{model}': the echo answer carries no prompt log-probs with offsets")
    n = sum(1 for o in offsets if o < len(prompt))
    return list(offsets[:n]), [dict(t) if t else None for t in tops[:n]]


# ---------------------------------------------------------------------- token counts
def tokenize_body(path: str, model: str, text: str, add_special_tokens: bool = False) -> dict[str, Any]:
    """vLLM: POST /tokenize {model, prompt}; llama-cpp-python: POST /extras/tokenize {input}."""
    if path == "/extras/tokenize":
        return {"input": text}
    return {"model": model, "prompt": text, "add_special_tokens": add_special_tokens}


def detokenize_body(model: str, ids: list[int]) -> dict[str, Any]:
    """vLLM: POST /detokenize {model, tokens}: the text the server's tokenizer makes of ids."""
    return {"model": model, "tokens": ids}


def parse_detokenized(answer: dict, model: str) -> str:
    text = answer.get("prompt")
    if not isinstance(text, str):
        raise BackendError(f"model '{model}': malformed detokenize answer: {str(answer)[:300]}")
    return text


def parse_tokens(answer: dict, model: str) -> list[int]:
    tokens = answer.get("tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
        raise BackendError(f"model '{model}': malformed tokenize answer: {str(answer)[:300]}")
    return tokens


def usage_prompt_tokens(answer: dict, model: str, text: str) -> int:
    n = (answer.get("usage") or {}).get("prompt_tokens")
    if not isinstance(n, int):
        raise CapabilityMissing(
            f"model '{model}': the server reports no usage.prompt_tokens, so token counts "
            f"cannot be measured this way (text {text!r})"
        )
    return n


def token_id(token: str) -> int | None:
    """vLLM writes tokens as "token_id:123" when asked to; anything else has no id."""
    return int(token[9:]) if token.startswith("token_id:") and token[9:].isdigit() else None
