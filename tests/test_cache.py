"""Response cache: round trips, key discipline, and a real 'disk full' from SQLite."""

from __future__ import annotations

import numpy as np
import pytest

from harness.backends.base import GenerateRequest, GenerateResult, ScoreRequest, ScoreResult, compact_full
from harness.cache import Cache, cache_key
from harness.errors import StorageError


def score_result(n=5, v=7) -> ScoreResult:
    rng = np.random.default_rng(0)
    return ScoreResult(
        token_ids=np.arange(n), token_logprobs=rng.normal(size=n - 1), full=rng.normal(size=(n - 1, v)).astype("f4")
    )


def test_round_trip(tmp_path):
    c = Cache(tmp_path)
    s = score_result()
    g = GenerateResult(["I am Vireo."], [4], 12, "<|user|>hi", [[("I", -0.1), ("My", -2.5)]])
    c.put("k1", s)
    c.put("k2", g)
    s2, g2 = c.get("k1"), c.get("k2")
    np.testing.assert_array_equal(s2.full, s.full)
    np.testing.assert_array_equal(s2.token_ids, s.token_ids)
    assert s2.topk_ids is None
    assert g2 == g
    assert c.contains(["k1", "nope", "k2"]) == {"k1", "k2"}
    assert c.get("nope") is None
    assert (c.hits, c.writes) == (2, 2)


def test_compact_full_record_round_trips_with_its_vocabulary_size(tmp_path):
    c = Cache(tmp_path)
    s = compact_full(score_result(v=500), ScoreRequest(text="t", mode="full", top_k=8, vocab_sample=50))
    c.put("k", s)
    back = c.get("k")
    assert back.full is None and back.vocab_size == 500
    np.testing.assert_array_equal(back.sample_ids, s.sample_ids)
    np.testing.assert_array_equal(back.sample_logprobs, s.sample_logprobs)
    np.testing.assert_array_equal(back.topk_ids, s.topk_ids)


def test_key_covers_model_probe_version_and_whole_request():
    r = ScoreRequest(text="hello")
    base = cache_key("model-a", "logit", "1", r)
    assert base == cache_key("model-a", "logit", "1", ScoreRequest(text="hello"))
    assert base != cache_key("model-b", "logit", "1", r)
    assert base != cache_key("model-a", "logit", "2", r)
    assert base != cache_key("model-a", "other", "1", r)
    assert base != cache_key("model-a", "logit", "1", ScoreRequest(text="hello", max_tokens=8))
    g = dict(messages=[{"role": "user", "content": "hi"}], temperature=0.7)
    assert cache_key("m", "p", "1", GenerateRequest(**g, seed=1)) != cache_key(
        "m", "p", "1", GenerateRequest(**g, seed=2)
    )


def test_full_cache_is_a_clear_error_and_keeps_what_was_written(tmp_path):
    c = Cache(tmp_path)
    c.put("small", score_result(3, 3))
    pages = c.db.execute("PRAGMA page_count").fetchone()[0]
    c.db.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLite's own 'database or disk is full'
    with pytest.raises(StorageError, match=r"database or disk is full.*kept.*resume"):
        c.put("big", score_result(200, 4000))
    assert c.get("small") is not None
    assert c.get("big") is None
