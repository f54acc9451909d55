"""Logit-interpolation probe: exact answers on synthetic log-probs, then the tiny zoo's known lineage."""

from __future__ import annotations

import numpy as np
import pytest

from harness.backends.base import ScoreRequest, ScoreResult
from harness.suite import ModelSpec, ProbeSpec, Suite
from probes.base import Record
from probes.logit.probe import LogitInterpolationProbe


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def synthetic(models: dict[str, np.ndarray], roles: dict[str, str], n_texts=12):
    suite = Suite(
        name="syn",
        models=[ModelSpec(name=m, role=roles[m], path="/x") for m in models],
        probes=[ProbeSpec(kind="logit_interpolation")],
        stats={"bootstrap": 200, "seed": 1},
    )
    records = {
        m: [
            Record(
                m,
                f"{m}{t}",
                {"id": f"t{t}"},
                ScoreRequest(text=f"t{t}"),
                ScoreResult(token_ids=np.arange(9), token_logprobs=np.zeros(8), full=lp[t]),
            )
            for t in range(n_texts)
        ]
        for m, lp in models.items()
    }
    probe = LogitInterpolationProbe(suite.probes[0])
    return probe.analyze(records, suite, np.random.default_rng(0))


@pytest.mark.parametrize("a", [0.25, 0.6, 0.9])
def test_exact_geometric_interpolation_is_recovered(a):
    rng = np.random.default_rng(3)
    za, zb, zc = (rng.normal(0, 2, size=(12, 8, 50)) for _ in range(3))
    ev = synthetic(
        {
            "s": log_softmax(a * za + (1 - a) * zb),
            "pa": log_softmax(za),
            "pb": log_softmax(zb),
            "ctl": log_softmax(zc),
        },
        {"s": "suspect", "pa": "parent", "pb": "parent", "ctl": "control"},
    )
    est = ev.estimate("a_hat", "s")
    assert est.value == pytest.approx(a, abs=1e-6)
    assert est.ci_low == pytest.approx(a, abs=1e-6) and est.ci_high == pytest.approx(a, abs=1e-6)
    assert ev.estimate("unexplained_from[pb]", "s").value == pytest.approx(0, abs=1e-9)
    assert ev.estimate("residual", "s").value == pytest.approx(0, abs=1e-6)
    assert ev.estimate("unexplained_from[pb]", "ctl").value > 0.3
    assert ev.per_model["s"]["residual_below_all_controls"] is True
    assert ev.per_model["s"]["verdict"] == "interpolation"
    assert ev.calibrated is True


def test_without_controls_the_evidence_says_uncalibrated():
    rng = np.random.default_rng(4)
    za, zb = rng.normal(size=(2, 12, 8, 30))
    ev = synthetic(
        {"s": log_softmax(0.5 * za + 0.5 * zb), "pa": log_softmax(za), "pb": log_softmax(zb)},
        {"s": "suspect", "pa": "parent", "pb": "parent"},
    )
    assert ev.calibrated is False
    assert any("UNCALIBRATED" in n for n in ev.notes)


def test_different_tokenizers_are_refused_not_scored():
    rng = np.random.default_rng(5)
    za, zb = rng.normal(size=(2, 12, 8, 30))
    suite = Suite(
        name="syn",
        models=[
            ModelSpec(name="s", role="suspect", path="/x"),
            ModelSpec(name="pa", role="parent", path="/x"),
            ModelSpec(name="pb", role="parent", path="/x"),
        ],
        probes=[ProbeSpec(kind="logit_interpolation")],
    )
    recs = {}
    for m, z in (("s", za), ("pa", za), ("pb", zb)):
        ids = np.arange(9) + (1 if m == "s" else 0)
        recs[m] = [
            Record(
                m,
                f"{m}{t}",
                {"id": f"t{t}"},
                ScoreRequest(text="x"),
                ScoreResult(token_ids=ids, token_logprobs=np.zeros(8), full=log_softmax(z[t])),
            )
            for t in range(12)
        ]
    ev = LogitInterpolationProbe(suite.probes[0]).analyze(recs, suite, np.random.default_rng(0))
    assert ev.status == "skipped" and "tokenise" in ev.reason


def test_demo_recovers_the_merge_weight_and_separates_the_sibling(demo_run, manifest):
    """Acceptance on the tiny zoo: the truth comes from zoo.json, not from this code."""
    ev = next(p for p in demo_run["evidence"]["probes"] if p["probe"] == "logit_interpolation")
    est = {(e["name"], e["model"]): e for e in ev["estimates"]}
    true_a = manifest["members"]["linear_0.6"]["parents"]["parent_a"]
    a = est[("a_hat", "suspect")]
    assert abs(a["value"] - true_a) <= 0.1
    assert 0 < a["ci_low"] <= a["ci_high"] < 1
    u_merge = est[("unexplained_from[parent_b]", "suspect")]["value"]
    u_sibling = est[("unexplained_from[parent_b]", "sibling")]["value"]
    assert u_sibling >= 5 * u_merge, (u_sibling, u_merge)
    # the merge is closer to the parents' line than every control, with a calibrated p-value
    assert ev["per_model"]["suspect"]["residual_below_all_controls"] is True
    assert ev["per_model"]["suspect"]["p_residual_below_controls"] < 0.01
    assert ev["per_model"]["suspect"]["verdict"] == "interpolation"
    report = (demo_run["dir"] / "report.md").read_text()
    assert "a_hat = " in report and "figures/logit_interpolation_forest.png" in report
    assert (demo_run["dir"] / "figures" / "logit_interpolation_forest.png").stat().st_size > 10_000
