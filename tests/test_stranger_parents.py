"""Parents that share no weights: the behavioural probes' unit is then no unit of kinship.

The logit probe reads lineage in units of the parents' own distance. With parents of separate
initialisations that distance is one between strangers, and any model trained on their kind of
data sits inside it. Measured on the tiny zoo with parent_a and the independent model given as
the parents: a student distilled from parent_a into its own initialisation read "interpolation"
(a merge of the parents), and parent_b (a sibling of parent_a) "derived from parent_a".

The weights, where public, show it without a unit: independently initialised weight matrices are
near-orthogonal (cosine about 0, within a few 1/sqrt(numel)), relatives' cosine is near 1. The
truth here comes from zoo.json (the independent model's and the student's own initialisations).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from harness.cli import main
from tests.conftest import case_block
from tests.test_logit_zoo import zoo_for_seed


def test_parents_of_separate_initialisations_set_the_behavioural_lineage_words_aside(tmp_path: Path):
    zoo = zoo_for_seed(0)
    members = json.loads((zoo / "zoo.json").read_text())["members"]
    assert members["independent"]["kind"] == "unrelated" and members["student_a"]["kind"] == "unrelated"
    roles = [("parent_a", "parent"), ("independent", "parent"), ("student_a", "suspect"), ("linear_0.6", "suspect")]
    suite = {
        "name": "strangers",
        "models": [{"name": n, "role": r, "path": str(zoo / n)} for n, r in roles],
        "probes": [
            {"kind": "logit_interpolation", "params": {"max_texts": 24}},
            {"kind": "weights"},
        ],
        "stats": {"seed": 7, "bootstrap": 300},
        "output_dir": str(tmp_path / "results"),
        "cache_dir": str(tmp_path / "cache"),
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    assert main(["run", str(path), "--run-id", "r"]) in (0, 5)
    run = tmp_path / "results" / "r"
    ev = {p["instance"]: p for p in json.loads((run / "evidence.json").read_text())["probes"]}

    # The premise, measured: the logit probe alone gives the student a lineage through the strangers' unit.
    student = ev["logit_interpolation"]["per_model"]["student_a"]
    assert student["verdict"] not in ("unrelated", "inconclusive"), student["reasons"]
    assert any(
        "unit of kinship only where the parents share weights" in x for x in ev["logit_interpolation"]["limitations"]
    )

    # The weights: the parents' matrices are near-orthogonal, far below the bound; relatives' near 1.
    w = ev["weights"]["per_model"]["student_a"]
    ((pair, cos),) = w["parents_cos"].items()
    assert set(pair.split(" ~ ")) == {"parent_a", "independent"}
    assert abs(cos) < w["kin_bound"] < 0.5, (cos, w["kin_bound"])
    assert any("share no weights" in x for x in ev["weights"]["limitations"])

    # The case: the logit probe's words are set aside, the conclusion rests on the weights.
    report = (run / "report.md").read_text()
    block = case_block(report, "student_a")
    assert "set aside" in block and "median cosine" in block, block
    conclusion = block.split("**Conclusion: ", 1)[1].split("**", 1)[0]
    assert "merge" not in conclusion.split(":")[0] or conclusion.startswith("not a merge"), conclusion
    assert "derived" not in conclusion, conclusion
