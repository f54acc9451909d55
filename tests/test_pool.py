"""Parents from a pool (issue 16) on the tiny zoo, every seed: no parent is given; the logit
probe selects, from eleven candidates (ten for a control), the subset each suspect is made of. Truths from zoo.json.
Each control is a candidate for the others and a subject itself: none may come out a merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.test_logit_zoo import run_suite, zoo_for_seed

REPO = Path(__file__).resolve().parent.parent
POOL = REPO / "configs" / "pool-tiny.yaml"


def run_pool(tmp: Path, zoo: Path, extra: tuple[str, ...] = ()) -> dict:
    suite = yaml.safe_load(POOL.read_text())
    models = suite["models"] + [{"name": n, "role": "candidate", "path": n} for n in extra]
    return run_suite(tmp, zoo, None, models, POOL)["logit_interpolation"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_pool_gives_each_merge_its_true_parents_and_no_control_any(tmp_path: Path, seed: int):
    zoo = zoo_for_seed(seed)
    truth = json.loads((zoo / "zoo.json").read_text())["members"]
    ev = run_pool(tmp_path, zoo)
    rows = {r["model"]: r for r in ev["tables"]["selection"]}
    per = ev["per_model"]
    assert all(len(r["pool"]) >= 10 for r in rows.values())
    for suspect in ("linear_0.6", "linear3"):
        parents = truth[suspect]["parents"]
        assert sorted(rows[suspect]["parents_found"]) == sorted(parents), rows[suspect]
        tol = 0.05 if len(parents) == 2 else 0.1
        for p, w in parents.items():
            assert abs(per[suspect]["weights"][p]["value"] - w) <= tol, (suspect, p, per[suspect]["weights"][p], w)
    controls = [m for m, r in rows.items() if m not in ("linear_0.6", "linear3")]
    assert len(controls) == 5
    for c in controls:  # 0 false discoveries: no parents found, never a merge verdict
        assert rows[c]["parents_found"] == [], (c, rows[c])
        assert per[c]["verdict"] not in ("interpolation", "interpolation_plus_training"), (c, per[c]["reasons"])
    print(
        f"\nseed {seed}: " + "; ".join(f"{m}: {r['parents_found'] or 'none'} ({r['verdict']})" for m, r in rows.items())
    )


def test_a_copy_of_a_parent_in_the_pool_is_reported_as_an_equivalent_choice(tmp_path: Path):
    """Ambiguity: with parent_a's re-rounded copy in the pool, {copy, parent_b} predicts the
    held-out texts as well as {parent_a, parent_b}; the report names the other set instead of
    picking one silently."""
    ev = run_pool(tmp_path, zoo_for_seed(0), extra=("copy_a_bf16",))
    row = next(r for r in ev["tables"]["selection"] if r["model"] == "linear_0.6")
    chosen = set(row["parents_found"])
    assert chosen in ({"parent_a", "parent_b"}, {"copy_a_bf16", "parent_b"}), row
    other = ({"parent_a", "copy_a_bf16"} - chosen).pop()
    assert any(set(e["set"]) == {other, "parent_b"} for e in row["near_equivalent"]), row["near_equivalent"]
    report = (tmp_path / "results" / "r" / "report.md").read_text()
    assert "near-equivalent sets" in report
    assert f"{other}, parent_b" in report or f"parent_b, {other}" in report
