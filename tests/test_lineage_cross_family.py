"""Issue 26: a model of another family, with a tokenizer of its own, placed against two parents of
the SmolLM2 family in next-token mode (the only logit mode two vocabularies can share: answers'
first tokens compared by string).

Two suspects of other families. The first is the tiny zoo's parent_a: a real model with its own
BPE vocabulary (1,024 entries against SmolLM2's 49,152), trained from its own initialisation.
Before the lineage signal, nearness on natural text alone could call such a model "derived from
one parent" (seen on an unseen family: CV gain 57.7%, p_adj 5e-9, nearest-parent distance 0.88).
Now next-token data carry no lineage signal, so the logit probe draws no lineage word short of a
merge or a copy, and the case lets the tokenizer's verdict stand: independent or distilled, no
claim of shared weights.

The second is a real model of another organisation: Google's Gemma 3 270M (its own 262,144-entry
vocabulary, 5% of it in SmolLM2's), served by a real llama.cpp server, as the issue met it.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.cli import main
from probes.logit.case import logit_case
from probes.logit.result import LogitResult
from tests.conftest import case_block

INHERITED = {"merge", "merge_trained", "derived", "sibling", "copy"}


def _no_lineage_claim(tmp_path: Path, suspect: str, smol_zoo: Path) -> str:
    """Run the suspect (a YAML model entry named other_family) against nex_mini and smollm2 in
    next-token mode with the tokenizer probe; assert no lineage claim; return the conclusion."""
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        f"""name: cross-family
models:
  - {suspect}
  - {{name: nex_mini, role: parent, path: {smol_zoo}/nex_mini}}
  - {{name: smollm2, role: parent, path: {smol_zoo}/smollm2}}
probes:
  - {{kind: logit_interpolation, params: {{mode: next_token, max_texts: 24}}}}
  - {{kind: tokenizer, params: {{max_strings: 40}}}}
stats: {{bootstrap: 300, seed: 3}}
output_dir: {tmp_path}/results
cache_dir: {tmp_path}/cache
"""
    )
    assert main(["run", str(suite), "--run-id", "r"]) in (0, 5)
    run = tmp_path / "results" / "r"
    ev = {p["instance"]: p for p in json.loads((run / "evidence.json").read_text())["probes"]}
    logit = ev["logit_interpolation"]
    assert logit["mode"] == "next_token"
    r = LogitResult.model_validate(logit["per_model"]["other_family"])
    assert r.verdict not in ("derived_from_one_parent", "sibling", "related"), r.reasons
    assert r.lineage_signal == "absent" and r.n_task_free == 0
    assert not logit_case("logit", r, ["nex_mini", "smollm2"], 0.95).supported() & INHERITED
    # The tokenizer rules out every weight lineage, and the case claims none.
    tok = ev["tokenizer"]["per_model"]["other_family"]
    assert all(m["k"] < m["n"] for m in tok["vs_models"] if m["candidate"] in ("model:nex_mini", "model:smollm2"))
    report = (run / "report.md").read_text()
    block = case_block(report, "other_family")
    conclusion = block.split("**Conclusion: ", 1)[1].split(".**", 1)[0]
    # No logit verdict, and a tokenizer unlike either parent's: what the tokenizer leaves stands.
    assert conclusion.startswith("not a merge, copy or fine-tune of the parents: independent, or distilled"), conclusion
    assert "alone rules out every explanation that shares the parents' weights" in block
    print(f"\nlogit: {r.verdict}; conclusion: {conclusion}")
    return conclusion


def test_a_model_of_another_family_gets_no_lineage_claim(tmp_path: Path, zoo: Path, smol_zoo: Path):
    _no_lineage_claim(tmp_path, f"{{name: other_family, role: suspect, path: {zoo}/parent_a}}", smol_zoo)


def test_a_real_model_of_another_organisation_served_by_llama_cpp(tmp_path: Path, gemma3_server: dict, smol_zoo: Path):
    """Gemma 3 270M through llama.cpp's OpenAI API: on main before the lineage signal the issue saw
    "derived from one parent (smollm2)" (CV gain 57.7%, p_adj 5.2e-09) and the case "conflicting
    evidence"."""
    suspect = (
        f"{{name: other_family, role: suspect, backend: openai, path: {gemma3_server['model']}, "
        f'options: {{base_url: "{gemma3_server["base_url"]}", concurrency: 2}}}}'
    )
    _no_lineage_claim(tmp_path, suspect, smol_zoo)
