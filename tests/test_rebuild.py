"""The rebuild probe on the tiny zoo: merges of the parents built with real mergekit, served in
process, searched by golden section, and tested for equality against each subject. The truth
(each member's recipe) comes from zoo.json, written when the zoo was built."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.errors import InputError
from probes.rebuild.search import GOLDEN, golden_points, point, quadratic_minimum
from tests.conftest import case_block, run_isolated, write_suite


def test_golden_section_replay_brackets_the_minimum_and_resumes():
    """Fed the distances it asked for, the replay narrows onto the minimum of a known curve, and
    asks for exactly the points a run killed half-way had not measured yet."""
    truth = 0.3
    measured: dict[float, float] = {}
    order = []
    while True:
        _, nxt = golden_points(measured, 8)
        if nxt is None:
            break
        order.append(nxt)
        measured[nxt] = (nxt - truth) ** 2 + 1
    assert len(order) == 8 and len(set(order)) == 8
    assert order[:2] == [point(1 - GOLDEN), point(GOLDEN)]
    best = min(measured, key=measured.__getitem__)
    assert abs(best - truth) < GOLDEN**7  # within the last bracket
    xs = np.array([0.0, 1.0, *measured])
    ys = np.array([(x - truth) ** 2 + 1 for x in xs])
    a, c = quadratic_minimum(xs, ys)
    assert a == pytest.approx(truth, abs=1e-9) and c == pytest.approx(1.0)
    half = {k: measured[k] for k in order[:4]}  # resumed after four points
    assert golden_points(half, 8)[1] == order[4]


@pytest.fixture(scope="module")
def rebuild_run(tmp_path_factory, zoo: Path) -> dict:
    root = tmp_path_factory.mktemp("rebuild")
    suite = write_suite(
        root,
        f"""name: rebuild-tiny
models:
  - {{name: parent_a, role: parent, path: "{zoo}/parent_a"}}
  - {{name: parent_b, role: parent, path: "{zoo}/parent_b"}}
  - {{name: linear_0.6, role: suspect, path: "{zoo}/linear_0.6"}}
  - {{name: slerp_0.6, role: suspect, path: "{zoo}/slerp_0.6"}}
  - {{name: merge_ft, role: suspect, path: "{zoo}/merge_ft"}}
  - {{name: student, role: control, path: "{zoo}/student"}}
  - {{name: a_ft, role: control, path: "{zoo}/a_ft"}}
probes:
  - kind: rebuild
    params: {{max_texts: 16}}
""",
    )
    run_dir = run_isolated(root, suite, "rb")
    evidence = json.loads((run_dir / "evidence.json").read_text())
    ev = next(p for p in evidence["probes"] if p["probe"] == "rebuild")
    events = [json.loads(line) for line in (run_dir / "run.jsonl").read_text().splitlines()]
    return {"root": root, "dir": run_dir, "per_model": ev["per_model"], "events": events, "suite": suite}


def _best(r: dict) -> dict:
    return next(f for f in r["fits"] if f["family"] == r["best"])


@pytest.mark.parametrize("member,family", [("linear_0.6", "linear"), ("slerp_0.6", "slerp")])
def test_a_plain_merge_is_rebuilt_at_its_weight(rebuild_run, manifest, member, family):
    """Linear and slerp merges: rebuilt by their own family, indistinguishable, the weight-space
    a within 0.01 of the recipe's, with a CI that covers it."""
    r = rebuild_run["per_model"][member]
    true_a = manifest["members"][member]["parents"]["parent_a"]
    f = _best(r)
    assert r["verdict"] == "rebuilt" and r["best"] == family, r
    assert abs(f["a"]["value"] - true_a) < 0.01
    assert f["a"]["lo"] <= true_a <= f["a"]["hi"]
    assert f["p_equal"] > 0.05


def test_a_slerp_merge_is_not_rebuilt_by_a_linear_merge(rebuild_run):
    """The linear family comes near a slerp merge but stays beyond the tolerance: the search goes on
    to slerp, which rebuilds it."""
    fits = {f["family"]: f for f in rebuild_run["per_model"]["slerp_0.6"]["fits"]}
    assert fits["linear"]["p_equal"] <= 0.05
    assert fits["linear"]["distance"]["lo"] > fits["linear"]["tolerance"]
    assert fits["slerp"]["distance"]["value"] < fits["linear"]["distance"]["value"]


def test_a_merge_trained_further_differs_from_every_rebuild(rebuild_run):
    r = rebuild_run["per_model"]["merge_ft"]
    assert r["verdict"] == "near", r
    for f in r["fits"]:
        assert f["p_equal"] <= 0.05 and f["distance"]["lo"] > f["tolerance"]


@pytest.mark.parametrize("control", ["student", "a_ft"])
def test_no_control_is_rebuilt(rebuild_run, control):
    """A model of its own initialisation (student) and a fine-tune of parent_a are reproduced by no
    merge; the fine-tune's nearest 'merge' is parent_a itself."""
    r = rebuild_run["per_model"][control]
    assert r["verdict"] == "differs", r
    if control == "a_ft":
        assert _best(r)["a"]["hi"] >= 1


def test_rebuilds_are_logged_shared_and_deleted(rebuild_run):
    """Every merge built is in the run log with its recipe and size; points the subjects share are
    built once; none is left in the cache after scoring (keep_rebuilds is off)."""
    built = [e for e in rebuild_run["events"] if e["event"] == "model_built"]
    names = [e["model"]["name"] for e in built]
    assert len(names) == len(set(names)) and len(built) >= 8
    assert all(e["bytes"] > 0 and e["recipe"]["merge_method"] in ("linear", "slerp") for e in built)
    assert not any((rebuild_run["root"] / "cache" / "rebuilds").glob("rebuild-*"))
    per_subject = {m: r["rebuilds"] for m, r in rebuild_run["per_model"].items()}
    assert sum(per_subject.values()) > len(built)  # shared points counted for each subject


def test_the_report_gives_the_recipe_the_curve_and_the_case(rebuild_run):
    report = (rebuild_run["dir"] / "report.md").read_text()
    assert "merge_method: linear" in report and "merge_method: slerp" in report
    assert list((rebuild_run["dir"] / "figures").glob("rebuild_curves.png"))
    block = case_block(report, "linear_0.6")
    conclusion = "**Conclusion: a merge of the parents, reproduced by merging parent_a 0.600 + parent_b 0.400 (linear)"
    assert conclusion + " with mergekit.**" in block
    assert "Rebuilt: merging parent_a 0.600" in block
    built = sum(e["event"] == "model_built" for e in rebuild_run["events"])
    assert f"Models built by probes (merges of the parents, mergekit): {built}, " in report
    assert "a merge of the parents" not in case_block(report, "merge_ft").split("**Conclusion:")[1].split("**")[0]


def test_families_that_need_a_base_are_named_as_not_tried(rebuild_run):
    """Without params.base, task_arithmetic, ties and dare_ties are not tried; a subject no family
    rebuilt says so, in the evidence and the report."""
    r = rebuild_run["per_model"]["merge_ft"]
    assert {f["family"] for f in r["fits"]} == {"linear", "slerp"}
    assert [u.split(":")[0] for u in r["untried"]] == ["task_arithmetic", "ties@0.5", "dare_ties@0.5"]
    report = (rebuild_run["dir"] / "report.md").read_text()
    assert "Families not tried for the subjects no family rebuilt: dare_ties@0.5: needs the parents' base" in report


@pytest.fixture(scope="module")
def based_run(tmp_path_factory, zoo: Path) -> dict:
    """The families that merge task vectors on the parents' base: task arithmetic (two free
    weights) and ties at the zoo's density."""
    root = tmp_path_factory.mktemp("rebuild-based")
    suite = write_suite(
        root,
        f"""name: rebuild-based
models:
  - {{name: parent_a, role: parent, path: "{zoo}/parent_a"}}
  - {{name: parent_b, role: parent, path: "{zoo}/parent_b"}}
  - {{name: task_arithmetic, role: suspect, path: "{zoo}/task_arithmetic"}}
  - {{name: ties, role: suspect, path: "{zoo}/ties"}}
  - {{name: student, role: control, path: "{zoo}/student"}}
probes:
  - kind: rebuild
    params: {{max_texts: 16, base: "{zoo}/base", families: [task_arithmetic, ties], densities: [0.8]}}
""",
    )
    run_dir = run_isolated(root, suite, "rb")
    evidence = json.loads((run_dir / "evidence.json").read_text())
    ev = next(p for p in evidence["probes"] if p["probe"] == "rebuild")
    return {"dir": run_dir, "per_model": ev["per_model"]}


def test_task_arithmetic_is_rebuilt_with_both_weights(based_run, manifest):
    """Both task vectors' weights, found together by Gauss-Newton from the frame, within 0.01 of
    the recipe's (0.7 and 0.5 in zoo.json), with CIs that cover them."""
    r = based_run["per_model"]["task_arithmetic"]
    truth = manifest["members"]["task_arithmetic"]["parents"]
    f = _best(r)
    assert r["verdict"] == "rebuilt" and r["best"] == "task_arithmetic", r
    for w, parent in zip(f["weights"], ("parent_a", "parent_b")):
        assert abs(w["value"] - truth[parent]) < 0.01
        assert w["lo"] <= truth[parent] <= w["hi"]
    assert f["p_equal"] > 0.05
    assert 5 <= r["rebuilds"] <= 3 + 4  # the frame and 2 to 4 steps (the twin is not a point of the search)


def test_ties_is_rebuilt_at_its_kink(based_run, manifest):
    """A ties merge's distance has a kink at its weight; the V through the best points finds it,
    where task arithmetic (no trimming, no sign election) only comes near."""
    r = based_run["per_model"]["ties"]
    fits = {f["family"]: f for f in r["fits"]}
    truth = manifest["members"]["ties"]["parents"]["parent_a"]
    assert r["verdict"] == "rebuilt" and r["best"] == "ties@0.8", r
    assert abs(fits["ties@0.8"]["a"]["value"] - truth) < 0.01
    assert fits["ties@0.8"]["a"]["lo"] <= truth <= fits["ties@0.8"]["a"]["hi"]
    assert fits["task_arithmetic"]["p_equal"] <= 0.05
    block = case_block((based_run["dir"] / "report.md").read_text(), "ties")
    assert "reproduced by merging parent_a 0.600 + parent_b 0.400 (ties, density 0.8, on the base)" in block


def test_no_control_is_rebuilt_by_a_based_family(based_run):
    assert based_run["per_model"]["student"]["verdict"] == "differs"


def test_three_parents_are_rebuilt_by_a_linear_merge_of_all_three(tmp_path, zoo, manifest):
    """linear3 (0.5 / 0.3 / 0.2 in zoo.json): two free weights found by Gauss-Newton from equal
    weights, the third completing the sum; the two-parent families are named as not tried."""
    suite = write_suite(
        tmp_path,
        f"""name: rebuild-three
models:
  - {{name: parent_a, role: parent, path: "{zoo}/parent_a"}}
  - {{name: parent_b, role: parent, path: "{zoo}/parent_b"}}
  - {{name: parent_c, role: parent, path: "{zoo}/parent_c"}}
  - {{name: linear3, role: suspect, path: "{zoo}/linear3"}}
probes:
  - kind: rebuild
    params: {{max_texts: 12, families: [linear, slerp]}}
""",
    )
    run_dir = run_isolated(tmp_path, suite, "rb")
    evidence = json.loads((run_dir / "evidence.json").read_text())
    r = next(p for p in evidence["probes"] if p["probe"] == "rebuild")["per_model"]["linear3"]
    truth = manifest["members"]["linear3"]["parents"]
    f = _best(r)
    assert r["verdict"] == "rebuilt" and r["best"] == "linear", r
    for w, parent in zip(f["weights"], ("parent_a", "parent_b", "parent_c"), strict=True):
        assert abs(w["value"] - truth[parent]) < 0.01 and w["lo"] <= truth[parent] <= w["hi"]
    assert r["untried"] == [] and r["rebuilds"] <= 3 + 4  # the frame and the steps
    block = case_block((run_dir / "report.md").read_text(), "linear3")
    assert "reproduced by merging parent_a 0.500 + parent_b 0.300 + parent_c 0.200 (linear) with mergekit" in block


def test_estimate_counts_the_rebuilds(rebuild_run, capsys):
    assert main(["run", str(rebuild_run["suite"]), "--estimate"]) == 0
    err = capsys.readouterr()
    text = err.out + err.err
    assert "builds at most 18 merges per subject with mergekit" in " ".join(text.split())


def test_parents_without_weights_are_refused_before_anything_runs(tmp_path, zoo):
    suite = write_suite(
        tmp_path,
        f"""name: rb-bad
models:
  - {{name: parent_a, role: parent, path: "{zoo}/parent_a"}}
  - {{name: parent_b, role: parent, backend: openai, path: some-api-model, options: {{base_url: "http://127.0.0.1:9/v1"}}}}
  - {{name: s, role: suspect, path: "{zoo}/linear_0.6"}}
probes:
  - kind: rebuild
""",
    )
    from harness.config import load_suite

    with pytest.raises(InputError) as e:
        load_suite(suite)
    assert "parent 'parent_b' has no local weights folder" in str(e.value)
    assert "suite.yaml:" in str(e.value)


def test_role_rebuild_is_not_for_suite_files(tmp_path, zoo):
    suite = write_suite(
        tmp_path,
        f"""name: rb-role
models:
  - {{name: s, role: suspect, path: "{zoo}/linear_0.6"}}
  - {{name: r, role: rebuild, path: "{zoo}/linear_0.6"}}
probes:
  - kind: rebuild
""",
    )
    from harness.config import load_suite

    refused = r"models\[1\]\.role: Input should be 'suspect', 'parent', 'control' or 'candidate'"
    with pytest.raises(InputError, match=refused):
        load_suite(suite)
