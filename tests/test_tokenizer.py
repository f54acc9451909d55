"""Tokenizer probe: white-box fingerprints on the tiny zoo, black-box identification of every
real tokenizer in the library (through the hf backend), and clear errors on bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness import tokenizers as lib
from harness.backends.base import Capabilities, Capability, CountRequest, ModelRef
from harness.errors import InputError
from harness.suite import ModelSpec, ProbeSpec
from probes.shared.tokenizer_files import ALL_PARTS, compare, fingerprint
from probes.tokenizer.probe import TokenizerProbe
from probes.tokenizer.verdict import identify, match_table

REPO = Path(__file__).resolve().parent.parent
MERGES = ("linear_0.6", "linear_0.25", "slerp_0.6", "ties", "dare_ties", "task_arithmetic", "linear3", "merge_ft")


@pytest.fixture(scope="module")
def library() -> dict[str, Path]:
    try:
        return lib.library()
    except InputError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="module")
def strings() -> list[str]:
    return [it.text for it in TokenizerProbe(ProbeSpec(kind="tokenizer")).strings()]


def test_zoo_merges_identical_to_parents_on_every_part(zoo: Path):
    parents = {p: fingerprint(zoo / p) for p in ("parent_a", "parent_b")}
    for m in MERGES:
        fp = fingerprint(zoo / m)
        for p, pf in parents.items():
            c = compare(fp, pf)
            assert c["identical_parts"] == list(ALL_PARTS), (m, p, c["differing_parts"])
            assert c["vocab_jaccard"] == 1.0 and c["first_differing_merge_rank"] is None


def test_homegrown_tokenizer_differs_and_names_the_parts(zoo: Path):
    c = compare(fingerprint(zoo / "homegrown_tokenizer"), fingerprint(zoo / "parent_a"))
    assert not c["all_identical"]
    # Trained on other text with another size and template: these parts must differ...
    for part in ("vocab", "merges", "chat_template"):
        assert part in c["differing_parts"]
    # ...while the pipeline components built by the same code are the same.
    for part in ("model_type", "pre_tokenizer", "decoder", "normalizer"):
        assert part in c["identical_parts"]
    assert c["vocab_sizes"] == [1000, 1024]
    assert 0.3 < c["vocab_jaccard"] < 1.0
    assert c["first_differing_merge_rank"] is not None
    assert "### Assistant" in c["chat_template_diff"] and "<|assistant|>" in c["chat_template_diff"]


def test_qwen2_and_qwen35_share_the_vocabulary_but_not_the_pre_tokenizer(library):
    c = compare(fingerprint(library["qwen2"]), fingerprint(library["qwen35"]))
    assert "vocab" in c["identical_parts"] and "merges" in c["identical_parts"]
    assert "pre_tokenizer" in c["differing_parts"]  # qwen35's regex adds \p{M} to letter runs


def _carrier(tok_dir: Path, out: Path) -> Path:
    """A tiny random Llama carrying a library tokenizer, so counts go through the hf backend."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tok_dir)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    for f in tok_dir.iterdir():
        if f.is_file():
            shutil.copy(f, out / f.name)
    return out


def test_every_library_tokenizer_identified_through_the_hf_backend(library, strings, tmp_path, capsys):
    """Confusion table: each real tokenizer, counted through the hf backend, must come out best or
    inside an exact-tie set; the only tie allowed is the pair no string separates."""
    from harness.backends.hf import HFBackend

    assert len(strings) >= 200
    cand = {n: np.array(lib.count_tokens(p, strings)) for n, p in library.items()}
    rows = []
    for name, tok_dir in library.items():
        model_dir = _carrier(tok_dir, tmp_path / name)
        with HFBackend(ModelRef(name=name, path=str(model_dir))) as be:
            counts = np.array([r.n_tokens for r in be.count([CountRequest(text=t) for t in strings])])
        table = match_table(cand, counts)
        result = identify(table)
        rows.append((name, result["ties"], table[0]["k"], table[1]["candidate"], table[1]["k"]))
        assert name in result["ties"], (name, table[:3])
        assert table[0]["k"] == len(strings), f"{name}: hf backend counts differ from its own tokenizer.json"
    with capsys.disabled():
        print(f"\nconfusion ({len(strings)} strings): tokenizer -> tie set, next best")
        for name, ties, k, runner, k2 in rows:
            print(f"  {name:<16} ties={ties} ({k}/{len(strings)}), next {runner} {k2}/{len(strings)}")
    tie_sets = {tuple(r[1]) for r in rows if len(r[1]) > 1}
    assert tie_sets <= set(), f"unexpected tie sets: {tie_sets}"


def test_tokenizer_probe_on_the_tiny_zoo(zoo, tmp_path, monkeypatch):
    from harness.cli import main

    monkeypatch.setenv("PARENTAGE_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("PARENTAGE_CACHE", str(tmp_path / "cache"))
    assert main(["run", str(REPO / "configs" / "tokenizer-tiny.yaml"), "--run-id", "t"]) == 0
    run = tmp_path / "results" / "t"
    ev = json.loads((run / "evidence.json").read_text())["probes"][0]
    s = ev["per_model"]["suspect"]
    n = s["n_strings"]
    assert n >= 200 and s["method"] == "tokenizer"
    vs = {r["candidate"]: r["k"] for r in s["vs_models"]}
    assert vs["model:parent_a"] == vs["model:parent_b"] == n  # a merge tokenises exactly like its parents
    by_cand = {r["candidate"]: r["k"] for r in s["matches"]}
    assert by_cand["homegrown"] < n and max(by_cand[c] for c in lib.library()) < n
    wb = {r["other"]: r for r in ev["tables"]["white_box"]}
    assert wb["parent_a"]["all_identical"] and wb["parent_b"]["all_identical"]
    report = (run / "report.md").read_text()
    assert "White-box comparison" in report and (run / "figures" / "tokenizer_matches.png").exists()
    # Issue 14: the headline said "closest: homegrown (226/284)" while the suspect matches both parents.
    assert ev["summary"].startswith(f"suspect: It tokenises exactly as parent_a and parent_b (parent_a {n}/{n}")
    assert "Among the reference tokenizers: closest:" in ev["summary"]


def test_missing_capability_is_a_recorded_skip_not_a_zero():
    probe = TokenizerProbe(ProbeSpec(kind="tokenizer", params={"library": False}))
    spec = ModelSpec(name="api", role="suspect", backend="openai", path="m", options={"base_url": "http://x/v1"})
    out = probe.plan(None, spec, Capabilities(supported=[Capability.GENERATE]))
    assert out.reason.startswith("capability missing") and "api" in out.reason


def test_bad_tokenizer_inputs(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        fingerprint(tmp_path / "nowhere")
    bad = tmp_path / "corrupt.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 64)
    with pytest.raises(InputError, match=r"corrupt\.gguf: cannot read a tokenizer"):
        fingerprint(bad)
    junk = tmp_path / "tokenizer.json"
    junk.write_text("{not json")
    with pytest.raises(InputError, match=r"tokenizer\.json: not a tokenizers JSON file"):
        fingerprint(junk)
