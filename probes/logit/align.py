"""Turn raw records into aligned log-prob arrays for one text: (P positions, K support, M models).

Alignment is always by token id (or, for chat APIs that return strings, by token string),
never by the order of a returned dict. Three data modes, richest first:

* ``full``: teacher-forced log-probs over the whole vocabulary; the support is every token.
* ``topk``: teacher-forced top-k plus the actual token's log-prob (e.g. vLLM ``prompt_logprobs``).
  The support at a position is the set of tokens every model reported there, plus the actual
  token (whose log-prob every model reports). Full records are reduced to top-k exactly as a
  top-k backend would have returned them.
* ``next_token``: top-k log-probs of the first generated token after a chat prompt (any chat
  API with ``top_logprobs``); one position per prompt, aligned by token string.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from harness.backends.base import GenerateRequest, GenerateResult, Request, Result, ScoreRequest, ScoreResult

T = TypeVar("T", ScoreResult, GenerateResult)

MODES = ("full", "topk", "next_token")


def request_mode(request: Request) -> str:
    """The data mode a request asked for (known without loading its answer)."""
    if isinstance(request, ScoreRequest):
        return request.mode
    if isinstance(request, GenerateRequest):
        return "next_token"
    raise TypeError(f"a {request.kind} request carries no log-probs")


def _topk_of(result: ScoreResult, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(P, k) ids and log-probs, reduced from full log-probs if needed (same as a top-k backend)."""
    if result.full is not None:
        ids = np.argpartition(-result.full, k - 1, axis=-1)[:, :k]
        return ids, np.take_along_axis(result.full, ids, -1)
    if result.topk_ids is None or result.topk_logprobs is None:
        raise ValueError("record has neither full nor top-k log-probs")
    if result.topk_ids.shape[1] < k:
        raise ValueError(f"record has top-{result.topk_ids.shape[1]} log-probs; top-{k} requested")
    return result.topk_ids[:, :k], result.topk_logprobs[:, :k]


def _full_of(result: ScoreResult) -> np.ndarray:
    if result.full is None:
        raise ValueError("record has top-k log-probs only; full mode needs the whole vocabulary")
    return result.full


def align_full(results: list[ScoreResult]) -> tuple[np.ndarray, np.ndarray]:
    lp = np.stack([_full_of(r) for r in results], axis=-1).astype(np.float64)
    return lp, np.ones(lp.shape[:2], dtype=bool)


def align_topk(results: list[ScoreResult], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Support per position = tokens in every model's top-k, plus the actual next token."""
    tops = [_topk_of(r, k) for r in results]
    actual = results[0].token_ids[1:]
    n_pos = len(actual)
    width = k + 1
    lp = np.zeros((n_pos, width, len(results)))
    mask = np.zeros((n_pos, width), dtype=bool)
    for p in range(n_pos):
        common = set(tops[0][0][p].tolist())
        for ids, _ in tops[1:]:
            common &= set(ids[p].tolist())
        support = sorted(common | {int(actual[p])})
        for m, ((ids, vals), r) in enumerate(zip(tops, results)):
            row = dict(zip(ids[p].tolist(), vals[p].tolist()))
            row[int(actual[p])] = float(r.token_logprobs[p])
            lp[p, : len(support), m] = [row[t] for t in support]
        mask[p, : len(support)] = True
    return lp, mask


def align_next_token(results: list[GenerateResult], k: int) -> tuple[np.ndarray, np.ndarray]:
    """One position: the tokens (by string) that every model lists in its first-token top-k."""
    rows = [dict(r.first_token_topk[0][:k]) if r.first_token_topk else {} for r in results]
    common = sorted(set.intersection(*(set(r) for r in rows))) if rows else []
    lp = np.zeros((1, max(len(common), 1), len(results)))
    mask = np.zeros((1, max(len(common), 1)), dtype=bool)
    for m, row in enumerate(rows):
        lp[0, : len(common), m] = [row[t] for t in common]
    mask[0, : len(common)] = True
    return lp, mask


def align(results: Sequence[Result], mode: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Aligned (P, K, M) log-probs and the (P, K) support mask of one text across models."""
    if mode == "next_token":
        return align_next_token([as_kind(r, GenerateResult) for r in results], k)
    scored = [as_kind(r, ScoreResult) for r in results]
    return align_full(scored) if mode == "full" else align_topk(scored, k)


def as_kind(result: Result, kind: type[T]) -> T:
    if not isinstance(result, kind):
        raise TypeError(f"expected a {kind.__name__} record, got {type(result).__name__}")
    return result
