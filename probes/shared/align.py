"""Turn raw records into aligned log-prob arrays for one text: (P positions, K support, M models).

Alignment is always by token id (or, for chat APIs that return strings, by token string),
never by the order of a returned dict. Three data modes, richest first:

* ``full``: teacher-forced log-probs over the whole vocabulary; the support is every token. In
  compact storage (the default at real vocabulary sizes) the head is exact and a uniform sample
  of the vocabulary, weighted by V / n, stands for the rest (:func:`align_compact`).
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


def align_full(results: list[ScoreResult]) -> tuple[np.ndarray, np.ndarray]:
    """The whole vocabulary (weight 1 everywhere), or its compact estimate when the records are
    compact (:func:`align_compact`)."""
    fulls = [r.full for r in results if r.full is not None]
    if len(fulls) == len(results):
        lp = np.stack(fulls, axis=-1).astype(np.float64)
        return lp, np.ones(lp.shape[:2])
    if all(r.sample_ids is not None for r in results):
        return align_compact(results)
    raise ValueError(
        "full mode needs every model's whole vocabulary or every model's compact sample; "
        "some records have top-k log-probs only, or mix the two storages"
    )


def align_compact(results: list[ScoreResult]) -> tuple[np.ndarray, np.ndarray]:
    """Compact full records as a weighted support whose sums estimate full-vocabulary sums.

    The head at a position (tokens in every model's stored top-k, plus the actual token) is
    taken exactly, weight 1. Every other token of the vocabulary is in the text's uniform sample
    of n with probability n / V, independently of the head, so it enters with weight V / n
    (Horvitz-Thompson): the weighted sum over the support is an unbiased estimate of the sum over
    the whole vocabulary, for every statistic ``interpolation.text_stats`` computes.
    """
    first = results[0]
    samples = [r.sample_logprobs for r in results if r.sample_logprobs is not None]
    if first.sample_ids is None or len(samples) != len(results):
        raise ValueError("a compact full-mode record lacks its vocabulary sample")
    sample = first.sample_ids
    for r in results[1:]:
        if r.vocab_size != first.vocab_size or r.sample_ids is None or not np.array_equal(r.sample_ids, sample):
            raise ValueError(
                f"models' vocabularies differ in size ({first.vocab_size} vs {r.vocab_size}): "
                "full-mode log-probs cannot be compared token by token"
            )
    head_k = min(int(r.topk_ids.shape[1]) for r in results if r.topk_ids is not None)
    lp_head, w_head, head_ids = _common_support(results, head_k)
    lp_sample = np.stack(samples, axis=-1).astype(np.float64)
    in_head = (sample[None, :, None] == np.where(w_head > 0, head_ids, -1)[:, None, :]).any(axis=-1)
    w_sample = np.where(in_head, 0.0, first.vocab_size / len(sample))
    return np.concatenate([lp_head, lp_sample], axis=1), np.concatenate([w_head, w_sample], axis=1)


def align_topk(results: list[ScoreResult], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Support per position = tokens in every model's top-k, plus the actual next token."""
    lp, weight, _ = _common_support(results, k)
    return lp, weight


def align_topk_conditional(results: list[ScoreResult], k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k records for a likelihood: the support at a position is the tokens in every model's
    top-k, and only positions whose actual token lies in it are kept (``keep``, (P,) bools).

    Why not add the actual token as :func:`align_topk` does: the support would then depend on
    the outcome, and the likelihood of a token outside the head would be inflated. A support fixed
    by the prefix alone, with the token's probability conditional on landing in it, is an exact
    conditional likelihood; what is lost is the positions it drops (the text probe reports their share)."""
    lp, weight, _ = _common_support(results, k)
    actual = results[0].token_ids[1:]
    tops = [_topk_of(r, k)[0] for r in results]
    keep = np.all([(t == actual[:, None]).any(axis=1) for t in tops], axis=0) if len(actual) else np.zeros(0, bool)
    # The actual token is in every top-k where kept, so the support needs no extra entry for it.
    return lp[keep], weight[keep], keep


def _common_support(results: list[ScoreResult], k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P, k+1, M) log-probs, (P, k+1) weights (1 on the support, 0 padding) and the token ids
    of the tokens in every model's top-k plus the actual next token."""
    tops = [_topk_of(r, k) for r in results]
    actual = results[0].token_ids[1:]
    n_pos = len(actual)
    width = k + 1
    lp = np.zeros((n_pos, width, len(results)))
    weight = np.zeros((n_pos, width))
    ids_out = np.full((n_pos, width), -1, dtype=np.int64)
    for p in range(n_pos):
        common = set(tops[0][0][p].tolist())
        for ids, _ in tops[1:]:
            common &= set(ids[p].tolist())
        support = sorted(common | {int(actual[p])})
        for m, ((ids, vals), r) in enumerate(zip(tops, results)):
            row = dict(zip(ids[p].tolist(), vals[p].tolist()))
            row[int(actual[p])] = float(r.token_logprobs[p])
            lp[p, : len(support), m] = [row[t] for t in support]
        weight[p, : len(support)] = 1.0
        ids_out[p, : len(support)] = support
    return lp, weight, ids_out


def align_next_token(results: list[GenerateResult], k: int) -> tuple[np.ndarray, np.ndarray]:
    """One position: the tokens (by string) that every model lists in its first-token top-k."""
    rows = [dict(r.first_token_topk[0][:k]) if r.first_token_topk else {} for r in results]
    common = sorted(set.intersection(*(set(r) for r in rows))) if rows else []
    lp = np.zeros((1, max(len(common), 1), len(results)))
    weight = np.zeros((1, max(len(common), 1)))
    for m, row in enumerate(rows):
        lp[0, : len(common), m] = [row[t] for t in common]
    weight[0, : len(common)] = 1.0
    return lp, weight


def align(results: Sequence[Result], mode: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Aligned (P, K, M) log-probs and the (P, K) support weights of one text across models: 0
    outside the support (padding), 1 for a token taken exactly, V / n for a sampled token in
    compact full mode. Every statistic is a weighted sum over the support."""
    if mode == "next_token":
        return align_next_token([as_kind(r, GenerateResult) for r in results], k)
    scored = [as_kind(r, ScoreResult) for r in results]
    return align_full(scored) if mode == "full" else align_topk(scored, k)


def as_kind(result: Result, kind: type[T]) -> T:
    if not isinstance(result, kind):
        raise TypeError(f"expected a {kind.__name__} record, got {type(result).__name__}")
    return result
