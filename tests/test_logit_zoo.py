"""Acceptance of the logit-interpolation verdicts on the tiny zoo, whose lineage is known.

The truth (merge weights, what each member is) comes from zoo.json, written when the zoo was
built, never from the code under test. Seeds 1 and 2 are independent rebuilds of the family.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from harness.cli import main

REPO = Path(__file__).resolve().parent.parent
CALIBRATION = REPO / "configs" / "zoo-calibration.yaml"
MERGES = ["linear_0.25", "linear_0.5", "linear_0.6", "linear_0.75"]
NONLINEAR = ["slerp_0.6", "ties", "dare_ties", "task_arithmetic"]
CONTROLS = ["sibling", "a_ft", "b_ft", "independent", "student", "student_a", "impostor"]
# What claims shared weights short of a merge (issue 26): never for a model of its own initialisation.
SHARED = {"copy", "interpolation", "interpolation_plus_training", "derived_from_one_parent", "sibling", "related"}


def zoo_for_seed(seed: int) -> Path:
    base = Path(os.environ.get("PARENTAGE_ZOO", REPO / ".cache" / "zoo" / "tiny"))
    p = base if seed == 0 else base.with_name(f"{base.name}-seed{seed}")
    if not (p / "zoo.json").exists():
        pytest.fail(f"tiny zoo for seed {seed} not found at {p}: run `make test-data` first")
    return p


def run_suite(
    tmp: Path, zoo: Path, probes: list[dict] | None, models: list[dict] | None = None, base: Path = CALIBRATION
) -> dict:
    """``base`` (its probes and models replaced when given) on ``zoo``, into ``tmp``: evidence by instance."""
    suite = yaml.safe_load(base.read_text())
    if probes is not None:
        suite["probes"] = probes
    if models is not None:
        suite["models"] = models
    for m in suite["models"]:
        m["path"] = str(zoo / Path(m["path"]).name)
    suite["output_dir"] = str(tmp / "results")
    suite["cache_dir"] = str(tmp / "cache")
    path = tmp / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    assert main(["run", str(path), "--run-id", "r"]) == 0
    ev = json.loads((tmp / "results" / "r" / "evidence.json").read_text())
    return {p["instance"]: p for p in ev["probes"]}


@pytest.fixture(scope="module")
def seed0(tmp_path_factory) -> dict:
    zoo = zoo_for_seed(0)
    probes = [
        {"kind": "logit_interpolation", "id": "full64", "params": {"max_texts": 64}},
        {"kind": "logit_interpolation", "id": "top20", "params": {"mode": "topk", "top_k": 20}},
    ]
    return {"evidence": run_suite(tmp_path_factory.mktemp("seed0"), zoo, probes), "zoo": zoo}


def truth(zoo: Path) -> dict:
    return json.loads((zoo / "zoo.json").read_text())["members"]


@pytest.mark.parametrize("instance", ["full64", "top20"])
def test_linear_merges_recovered(seed0, instance):
    ev = seed0["evidence"][instance]
    assert ev["mode"] == ("full" if instance == "full64" else "topk")
    members = truth(seed0["zoo"])
    for m in MERGES:
        s = ev["per_model"][m]
        true_a = members[m]["parents"]["parent_a"]
        assert s["verdict"] == "interpolation", (m, s["reasons"])
        if instance == "full64":
            assert abs(s["a_hat"]["value"] - true_a) <= 0.05, (m, s["a_hat"], true_a)
            assert s["cv_p_adjusted"] < 1e-6 and s["p_weights_inside_adjusted"] < 1e-6
        assert 0 < s["a_hat"]["lo"] and s["a_hat"]["hi"] < 1


@pytest.mark.parametrize("instance", ["full64", "top20"])
def test_nonlinear_merges_are_interpolations(seed0, instance):
    ev = seed0["evidence"][instance]
    for m in NONLINEAR:
        assert ev["per_model"][m]["verdict"] == "interpolation", (m, ev["per_model"][m]["reasons"])


@pytest.mark.parametrize("instance", ["full64", "top20"])
def test_merge_then_trained_and_copy(seed0, instance):
    ev = seed0["evidence"][instance]
    s = ev["per_model"]["merge_ft"]
    assert s["verdict"] == "interpolation_plus_training", s["reasons"]
    true_a = truth(seed0["zoo"])["merge_ft"]["parents"]["parent_a"]
    assert abs(s["a_hat"]["value"] - true_a) <= 0.1
    c = ev["per_model"]["copy_a_bf16"]
    assert c["verdict"] == "copy" and c["parent"] == "parent_a"


@pytest.mark.parametrize("instance", ["full64", "top20"])
def test_controls_seed0(seed0, instance):
    per = seed0["evidence"][instance]["per_model"]
    for c in CONTROLS:
        assert per[c]["verdict"] not in ("interpolation", "interpolation_plus_training"), (c, per[c]["reasons"])
    for ft, parent in (("a_ft", "parent_a"), ("b_ft", "parent_b")):
        # Issue 26: in every teacher-forced mode, top-k included (the lineage signal reads the actual
        # token's log-prob, which top-k data carry exactly): a fine-tune reads "derived from" its parent.
        assert (per[ft]["verdict"], per[ft]["parent"]) == ("derived_from_one_parent", parent), per[ft]["reasons"]
        assert per[ft]["lineage_signal"] == "inherited", per[ft]


def own_initialisations(zoo: Path) -> list[str]:
    """Members with no weight from the family (zoo.json: no ``from``, or an independent origin)."""
    return [m for m, t in truth(zoo).items() if t["kind"] == "unrelated" and t.get("from") in (None, "independent")]


def assert_lineage_claims(per: dict, zoo: Path) -> None:
    """Issue 26: no model of its own initialisation is called related, derived, a sibling, a copy
    or a merge (the student distilled from the merge was "related" in top-20 mode); the sibling
    of the parents is never attributed to one parent; the controls' lineage words are what the
    task-free inputs allow."""
    own = own_initialisations(zoo)
    assert {"independent", "student", "student_a", "impostor"} <= set(own)
    for m in own:
        assert per[m]["verdict"] not in SHARED, (m, per[m]["reasons"])
    assert per["sibling"]["verdict"] in ("sibling", "related", "inconclusive"), per["sibling"]["reasons"]
    assert per["sibling"]["parent"] is None


@pytest.mark.parametrize("instance", ["full64", "top20"])
def test_lineage_claims_seed0(seed0, instance):
    per = seed0["evidence"][instance]["per_model"]
    assert_lineage_claims(per, seed0["zoo"])
    # Every own initialisation is seen as one, in top-20 data too (issue 26: the students sat at the
    # parents' own distance on the top-k head, and were "inconclusive"; the actual tokens'
    # log-probs put them 3.8 to 6.0 parents' distances away).
    for m in own_initialisations(seed0["zoo"]):
        assert per[m]["verdict"] == "unrelated" and per[m]["lineage_signal"] == "own", (m, per[m]["reasons"])


@pytest.mark.parametrize("seed", [1, 2])
def test_controls_other_seeds(tmp_path, seed):
    zoo = zoo_for_seed(seed)
    ev = run_suite(tmp_path, zoo, [{"kind": "logit_interpolation", "params": {"max_texts": 64}}])
    per = ev["logit_interpolation"]["per_model"]
    for c in CONTROLS:
        assert per[c]["verdict"] not in ("interpolation", "interpolation_plus_training"), (c, per[c]["reasons"])
    assert (per["a_ft"]["verdict"], per["a_ft"]["parent"]) == ("derived_from_one_parent", "parent_a")
    assert (per["b_ft"]["verdict"], per["b_ft"]["parent"]) == ("derived_from_one_parent", "parent_b")
    assert_lineage_claims(per, zoo)
    for m in MERGES:
        assert per[m]["verdict"] == "interpolation", (m, per[m]["reasons"])


def test_three_parent_merge(tmp_path):
    zoo = zoo_for_seed(0)
    models = [
        {"name": n, "role": r, "path": n}
        for n, r in [
            ("parent_a", "parent"),
            ("parent_b", "parent"),
            ("parent_c", "parent"),
            ("linear3", "suspect"),
            ("sibling", "control"),
            ("independent", "control"),
        ]
    ]
    ev = run_suite(tmp_path, zoo, [{"kind": "logit_interpolation", "params": {"max_texts": 64}}], models)
    s = ev["logit_interpolation"]["per_model"]["linear3"]
    expect = truth(zoo)["linear3"]["parents"]
    for p, w in expect.items():
        assert abs(s["weights"][p]["value"] - w) <= 0.1, (p, s["weights"][p], w)
    assert s["verdict"] == "interpolation", s["reasons"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_superfluous_known_parent_is_not_supported_and_the_verdict_rests_on_the_others(tmp_path, seed):
    """Issue 16, item 4: listing parent_c as a third known parent of the 0.6 merge of parent_a and
    parent_b used to make the verdict inconclusive (its weight's CI touches 0). It is now reported
    as not supported and the verdict is computed on the true two; the controls stay non-merges."""
    zoo = zoo_for_seed(seed)
    models = [
        {"name": n, "role": r, "path": n}
        for n, r in [
            ("parent_a", "parent"),
            ("parent_b", "parent"),
            ("parent_c", "parent"),
            ("linear_0.6", "suspect"),
            ("sibling", "control"),
            ("independent", "control"),
            ("student", "control"),
        ]
    ]
    ev = run_suite(tmp_path, zoo, [{"kind": "logit_interpolation", "params": {"max_texts": 64}}], models)
    per = ev["logit_interpolation"]["per_model"]
    s = per["linear_0.6"]
    assert s["verdict"] == "interpolation", s["reasons"]
    assert s["parents"] == ["parent_a", "parent_b"] and list(s["unsupported"]) == ["parent_c"]
    assert s["unsupported"]["parent_c"]["lo"] <= 0.05
    assert abs(s["a_hat"]["value"] - truth(zoo)["linear_0.6"]["parents"]["parent_a"]) < 0.05
    assert s["reasons"][0].startswith("not supported by the evidence: parent_c")
    for c in ("sibling", "independent", "student"):
        assert per[c]["verdict"] not in ("interpolation", "interpolation_plus_training"), (c, per[c]["reasons"])
    report = (tmp_path / "results" / "r" / "report.md").read_text()
    assert "Not supported by the evidence (no weight): parent_c" in report
    print(f"\nseed {seed}: " + "; ".join(f"{m} {r['verdict']} on {r['parents'] or 'all'}" for m, r in per.items()))


def test_next_token_mode_reads_lineage_on_the_task_free_inputs(tmp_path):
    """Issue 26: next-token mode (chat answers' first tokens) has a lineage signal where the backend
    can also score a prompt: the task-free inputs are scored teacher-forced, as in top-k mode.

    * A student distilled from parent_a into its own initialisation is "unrelated" there too (it
      was "inconclusive": no task-free inputs in next-token mode).
    * A fine-tune of either parent is "derived from" that parent: one position per prompt cannot
      rule out a merge the merge rule missed, but the task-free inputs, every position counted,
      single the parent out and put the model off the parents' line (before: "inconclusive" for
      both, from next-token data on every seed).
    * No merge reads as a fine-tune, the task-arithmetic merge included (7a + 5b over the base, off
      the line by 0.70 on those inputs, but parent_a not singled out there)."""
    zoo = zoo_for_seed(0)
    roles = [("parent_a", "parent"), ("parent_b", "parent"), ("student_a", "suspect"), ("a_ft", "suspect")]
    roles += [(m, "suspect") for m in ("b_ft", "linear_0.75", "dare_ties", "task_arithmetic")]
    models = [{"name": n, "role": r, "path": n} for n, r in roles]
    params = {"mode": "next_token", "top_k": 20, "max_texts": 24}
    ev = run_suite(tmp_path, zoo, [{"kind": "logit_interpolation", "params": params}], models)
    per = ev["logit_interpolation"]["per_model"]
    assert ev["logit_interpolation"]["mode"] == "next_token"
    student = per["student_a"]
    assert (student["verdict"], student["lineage_signal"], student["n_task_free"]) == ("unrelated", "own", 24), student
    for ft, parent in (("a_ft", "parent_a"), ("b_ft", "parent_b")):
        assert (per[ft]["verdict"], per[ft]["parent"]) == ("derived_from_one_parent", parent), per[ft]["reasons"]
        assert any("task-free inputs (scored teacher-forced)" in x for x in per[ft]["reasons"]), per[ft]["reasons"]
    for m in ("linear_0.75", "dare_ties", "task_arithmetic"):
        assert per[m]["verdict"] not in ("derived_from_one_parent", "sibling", "related", "unrelated"), per[m]
