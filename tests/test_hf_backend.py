"""The hf backend against bare transformers on real models (tiny zoo and SmolLM2 from its GGUF)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.backends.base import GenerateRequest, ModelRef, ScoreRequest
from harness.backends.hf import HFBackend

TEXTS = [
    "The lighthouse keeper climbed the stairs.",
    "def f(x):\n    return x * 2",
    "O sol nasceu devagar sobre o rio.",
    "今天早上下了一场大雨。",
    "12 × 13 = 156",
]


def backend(path, **options) -> HFBackend:
    b = HFBackend(ModelRef(name="m", path=str(path), options=options))
    b.load()
    return b


@pytest.fixture(scope="module")
def parent_a(zoo):
    b = backend(zoo / "parent_a", batch_size=3)
    yield b
    b.close()


def test_full_logprobs_match_a_bare_forward_pass(zoo, parent_a):
    tok = AutoTokenizer.from_pretrained(zoo / "parent_a")
    model = AutoModelForCausalLM.from_pretrained(zoo / "parent_a", dtype=torch.float32).eval()
    results = parent_a.score([ScoreRequest(text=t) for t in TEXTS])
    for text, res in zip(TEXTS, results):
        ids = tok(text, return_tensors="pt").input_ids
        with torch.no_grad():
            ref = torch.log_softmax(model(ids).logits[0, :-1], -1).numpy()
        assert res.token_ids.tolist() == ids[0].tolist()
        assert res.full.shape == ref.shape
        np.testing.assert_allclose(res.full, ref, atol=2e-5)
        # the actual-token log-prob is looked up by token id
        np.testing.assert_allclose(res.token_logprobs, ref[np.arange(len(ref)), ids[0, 1:].numpy()], atol=2e-5)


def test_batching_and_padding_do_not_change_scores(zoo, parent_a):
    single = backend(zoo / "parent_a", batch_size=1)
    try:
        one = single.score([ScoreRequest(text=t) for t in TEXTS])
    finally:
        single.close()
    batched = parent_a.score([ScoreRequest(text=t) for t in TEXTS])  # batch 3, mixed lengths, padded
    for a, b in zip(one, batched):
        np.testing.assert_allclose(a.full, b.full, atol=2e-5)


def test_topk_mode_and_truncation(parent_a):
    full = parent_a.score([ScoreRequest(text=TEXTS[0])])[0]
    top = parent_a.score([ScoreRequest(text=TEXTS[0], mode="topk", top_k=5)])[0]
    expect = np.sort(full.full, axis=-1)[:, ::-1][:, :5]
    np.testing.assert_allclose(top.topk_logprobs, expect, atol=1e-6)
    assert top.full is None
    np.testing.assert_array_equal(np.take_along_axis(full.full, top.topk_ids, -1), top.topk_logprobs)
    short = parent_a.score([ScoreRequest(text=TEXTS[0], max_tokens=4)])[0]
    assert short.token_ids.shape == (4,) and short.full.shape[0] == 3
    np.testing.assert_allclose(short.full, full.full[:3], atol=2e-5)


def test_generation_is_seeded(parent_a):
    msgs = [{"role": "user", "content": "Who are you?"}]
    greedy = [GenerateRequest(messages=msgs, max_new_tokens=12)] * 2
    g1, g2 = parent_a.generate(greedy)
    assert g1.texts == g2.texts
    s = dict(messages=msgs, max_new_tokens=20, temperature=1.0, n=4)
    a1, a2, b = parent_a.generate(
        [GenerateRequest(**s, seed=1), GenerateRequest(**s, seed=1), GenerateRequest(**s, seed=2)]
    )
    assert a1.texts == a2.texts and len(a1.texts) == 4
    assert a1.texts != b.texts
    assert a1.rendered_prompt.startswith("<|bos|><|user|>\nWho are you?<|end|>\n<|assistant|>\n")
    top = parent_a.generate([GenerateRequest(messages=msgs, max_new_tokens=1, top_logprobs=5)])[0]
    lps = [lp for _, lp in top.first_token_topk[0]]
    assert len(lps) == 5 and lps == sorted(lps, reverse=True) and lps[0] <= 0


def test_sampled_answers_are_scored_as_the_tokens_sampled(zoo, parent_a):
    """An answer's sampled ids (kept by generate) are scored as they are when they decode to its
    text, even where re-encoding the text gives other tokens; ids that do not decode to the text
    (another vocabulary) are ignored and the text is tokenised."""
    msgs = [{"role": "user", "content": "Tell me a story."}]
    gen = parent_a.generate([GenerateRequest(messages=msgs, max_new_tokens=24, temperature=1.0, n=8, seed=3)])[0]
    assert gen.token_ids is not None and [len(x) for x in gen.token_ids] == gen.completion_tokens
    tok = parent_a.tokenizer
    prompt = tok(parent_a.render_chat(msgs), add_special_tokens=False)["input_ids"]
    changed = 0
    for text, ids in zip(gen.texts, gen.token_ids):
        assert tok.decode(ids, skip_special_tokens=True) == text
        retokenised = tok(text, add_special_tokens=False)["input_ids"]
        changed += retokenised != ids
        exact, plain = parent_a.score(
            [ScoreRequest(text=text, prompt=msgs, reply_ids=ids), ScoreRequest(text=text, prompt=msgs)]
        )
        assert exact.token_ids.tolist() == [prompt[-1], *ids]
        assert plain.token_ids.tolist() == [prompt[-1], *retokenised]
    assert changed > 0  # the tiny zoo's byte-level tokenizer: sampled byte fragments re-encode otherwise
    wrong = [(i + 7) % 1000 for i in gen.token_ids[0]]
    res = parent_a.score([ScoreRequest(text=gen.texts[0], prompt=msgs, reply_ids=wrong)])[0]
    assert res.token_ids.tolist()[1:] == tok(gen.texts[0], add_special_tokens=False)["input_ids"]


def test_fingerprint_identifies_weights_and_template(zoo, parent_a):
    fp = parent_a.fingerprint()
    assert (
        fp["weights_sha256"]["model.safetensors"]
        == hashlib.sha256((zoo / "parent_a" / "model.safetensors").read_bytes()).hexdigest()
    )
    assert fp["chat_template_sha256"] == hashlib.sha256(parent_a.tokenizer.chat_template.encode()).hexdigest()
    assert fp["dtype"] == "float32" and fp["backend"] == "hf"
    other = backend(zoo / "parent_b")
    try:
        assert other.fingerprint()["key"] != fp["key"]
        assert other.fingerprint()["chat_template_sha256"] == fp["chat_template_sha256"]
    finally:
        other.close()


def test_gguf_model_loads_and_reports_its_template(smollm2_gguf):
    b = backend(smollm2_gguf)  # path: file.gguf
    try:
        fp = b.fingerprint()
        assert fp["gguf_file"] == smollm2_gguf.name and fp["vocab_size"] == 49152
        prompt = b.render_chat([{"role": "user", "content": "Who are you?"}])
        # SmolLM2's template injects a default system message when none is given
        assert "You are a helpful AI assistant named SmolLM, trained by Hugging Face" in prompt
        res = b.score([ScoreRequest(text="The capital of France is Paris", mode="topk", top_k=3)])[0]
        paris_pos = len(res.token_ids) - 2  # prediction for the last token
        top_tok = b.tokenizer.decode([int(res.topk_ids[paris_pos, 0])])
        assert top_tok.strip() == "Paris"
    finally:
        b.close()
