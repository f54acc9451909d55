"""The openai backend against a real llama.cpp server (llama-cpp-python[server]) serving the
real SmolLM2-135M-Instruct on 127.0.0.1: capability probing (including llama.cpp's echo
log-probs shifted by one position), chat top-logprobs, usage counts, and the identity and
tokenizer probes through the API."""

from __future__ import annotations

import json

import numpy as np

from harness import tokenizers as lib
from harness.backends.base import Capability, CountRequest, GenerateRequest, ModelRef
from harness.backends.openai import OpenAIBackend
from probes.tokenizer.verdict import identify, match_table
from tests.conftest import write_suite


def backend(server, **opts) -> OpenAIBackend:
    options = {"base_url": server["base_url"], "concurrency": 2} | opts
    b = OpenAIBackend(ModelRef(name="smollm2", path=server["model"], options=options))
    b.load()
    return b


def test_capability_probe_catches_the_shifted_echo(llama_server):
    b = backend(llama_server)
    p = b.endpoint.probed
    assert p["chat"] and p["usage"] and p["tokenize"] == "/extras/tokenize"
    assert p["chat_top_logprobs"] >= 5
    # llama.cpp reports at echo position m the distribution of position m+1. The check compares
    # the server with itself (its own generation after m and m+1 tokens), not with what the
    # model should predict, so it holds for any model.
    echo = p["echo"]
    assert echo["ok"] is False and echo["reason"].startswith("shifted by one position")
    rows = echo["consistency"]
    assert sum(r["shifted_max_abs_diff"] is not None and r["shifted_max_abs_diff"] < 1e-3 for r in rows) >= 2
    assert all(r["aligned_max_abs_diff"] is None or r["aligned_max_abs_diff"] > 0.5 for r in rows)
    # It has no prompt_logprobs (the field is ignored), so teacher-forced scoring stays off.
    assert p["prompt_logprobs"]["ok"] is False and "no prompt_logprobs" in p["prompt_logprobs"]["reason"]
    caps = b.capabilities()
    assert not caps.has(Capability.TOPK_LOGPROBS) and not caps.has(Capability.FULL_LOGPROBS)
    assert caps.has(Capability.NEXT_TOKEN_TOPK) and caps.has(Capability.TOKEN_COUNTS)
    fp = b.fingerprint()
    assert fp["server_model"]["id"] == "smollm2" and fp["server"] == "uvicorn"


def test_chat_top_logprobs_and_seeded_samples(llama_server):
    b = backend(llama_server)
    req = GenerateRequest(
        messages=[{"role": "user", "content": "Say hello."}], n=2, temperature=0.8, seed=3, top_logprobs=5
    )
    a = b.generate([req])[0]
    assert len(a.texts) == 2 and a.prompt_tokens > 0
    top = a.first_token_topk[0]
    assert len(top) == 5 and all(lp <= 0 for _, lp in top)
    assert [lp for _, lp in top] == sorted((lp for _, lp in top), reverse=True)
    # Whether the server honours a seed is measured, not assumed (llama-cpp-python does not
    # reliably: sampler state survives between requests), and recorded with the capabilities.
    assert isinstance(b.endpoint.probed["seed_honoured"], bool)


def test_sampling_extra_reaches_the_sampler(llama_server):
    """``sampling_extra`` fields go into sampled chat requests and llama.cpp's sampler obeys them:
    with top_k 1 every draw at temperature 1 is the greedy answer, whatever the seed, while
    without it the draws differ. (How the text probe asks llama.cpp for untruncated samples:
    top_k 0, min_p 0, repeat_penalty 1.)"""
    msgs = [{"role": "user", "content": "Write one sentence about rivers."}]
    greedy = backend(llama_server).generate([GenerateRequest(messages=msgs, max_new_tokens=16)])[0].texts[0]
    sampled = GenerateRequest(messages=msgs, max_new_tokens=16, temperature=1.0, n=4, seed=11)
    free = backend(llama_server).generate([sampled])[0].texts
    top1 = backend(llama_server, sampling_extra={"top_k": 1}).generate([sampled])[0].texts
    assert top1 == [greedy] * 4
    assert len(set(free)) > 1
    untruncated = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}
    assert len(backend(llama_server, sampling_extra=untruncated).generate([sampled])[0].texts) == 4


def test_usage_counts_identify_the_smollm2_tokenizer(llama_server, capsys):
    """Black-box: token counts from usage.prompt_tokens alone pick SmolLM2's tokenizer."""
    from harness.suite import ProbeSpec
    from probes.tokenizer.probe import TokenizerProbe

    strings = [it.text for it in TokenizerProbe(ProbeSpec(kind="tokenizer")).strings()]
    b = backend(llama_server, count_method="usage")
    counts = np.array([r.n_tokens for r in b.count([CountRequest(text=t) for t in strings])])
    cands = {n: np.array(lib.count_tokens(p, strings)) for n, p in lib.library().items()}
    table = match_table(cands, counts)
    result = identify(table)
    with capsys.disabled():
        print(
            f"\nusage counts vs library ({len(strings)} strings): "
            + ", ".join(f"{r['candidate']} {r['k']}" for r in table[:4])
        )
    assert result["ties"] == ["smollm2"]
    assert table[0]["k"] >= 0.9 * len(strings)  # template boundary effects may move a few strings
    assert table[0]["k"] - table[1]["k"] >= 30


def test_identity_and_tokenizer_probes_through_the_api(llama_server, tmp_path, monkeypatch):
    from harness.cli import main

    monkeypatch.setenv("PARENTAGE_CACHE", str(tmp_path / "cache"))
    suite = write_suite(
        tmp_path,
        f"""
name: api-smollm2
models:
  - name: smollm2
    role: suspect
    backend: openai
    path: {llama_server["model"]}
    options: {{base_url: "{llama_server["base_url"]}", concurrency: 2}}
probes:
  - kind: identity
    params:
      labels: {{smollm: [SmolLM, Hugging Face]}}
      conditions: [none]
      languages: [en]
      max_questions: 4
      samples: 2
      max_new_tokens: 24
  - kind: tokenizer
    params: {{library: [smollm2, gpt-2, llama-bpe, qwen2], max_strings: 60}}
output_dir: {tmp_path}/results
""",
    )
    assert main(["run", str(suite), "--run-id", "r"]) == 0
    run = tmp_path / "results" / "r"
    ev = {p["probe"]: p for p in json.loads((run / "evidence.json").read_text())["probes"]}
    assert ev["identity"]["per_model"]["smollm2 | none"]["n"] == 8
    tok = ev["tokenizer"]["per_model"]["smollm2"]
    assert tok["method"] == "tokenize" and tok["ties"] == ["smollm2"]
    events = [json.loads(x) for x in (run / "run.jsonl").read_text().splitlines()]
    done = next(e for e in events if e["event"] == "model_done")
    assert done["usage"]["prompt_tokens"] > 0 and done["usage"]["completion_tokens"] > 0
