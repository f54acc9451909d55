"""Identity probe: analysis on fixed response sets, planning rules and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from harness.backends.base import Capabilities, Capability, GenerateRequest, GenerateResult
from harness.cli import main
from harness.errors import InputError
from harness.suite import ModelSpec, ProbeSpec, Suite
from probes.base import Record, Skip
from probes.identity.probe import IdentityProbe

LABELS = {"nex": ["Nex", "Nex-AGI"], "qwen": ["Qwen", "通义"], "rio": ["Rio"]}


def suite(**params) -> Suite:
    return Suite(
        name="id",
        models=[
            ModelSpec(name="rio", role="suspect", path="/x", system_prompt="You are Rio."),
            ModelSpec(name="nex", role="parent", path="/x"),
            ModelSpec(name="qwen", role="parent", path="/x"),
            ModelSpec(name="ctl", role="control", path="/x"),
        ],
        probes=[ProbeSpec(kind="identity", params={"labels": LABELS, **params})],
        stats={"seed": 3},
    )


def recs(model: str, texts: list[str], condition: str = "none") -> list[Record]:
    req = GenerateRequest(messages=[{"role": "user", "content": "Who are you?"}])
    return [
        Record(
            model,
            f"{model}{i}",
            {"id": f"en-{i:03d}", "lang": "en", "condition": condition},
            req,
            GenerateResult([t], [5], 10, "<|user|>Who are you?"),
        )
        for i, t in enumerate(texts)
    ]


def test_counts_wilson_question_test_and_reuse_on_fixed_responses():
    backstory = "Nex-AGI was founded by a small team of researchers in a converted warehouse by the river"
    s = suite(model_labels={"nex": "nex", "qwen": "qwen"})
    records = {
        "rio": recs("rio", [f"I am Nex. {backstory}."] * 8 + ["I am not Qwen, I am an assistant."] * 2)
        + recs("rio", ["I am Rio."] * 10, "own"),
        "nex": recs("nex", [f"Hello! {backstory}, they say."] * 10),
        "qwen": recs("qwen", ["我是通义千问。"] * 10),
        "ctl": recs("ctl", ["I am a helpful assistant."] * 9 + ["Maybe Qwen?"]),
    }
    ev = IdentityProbe(s.probes[0]).analyze(records, s, np.random.default_rng(0))
    none = ev.per_model["rio | none"]["labels"]
    assert (none["nex"]["k"], none["nex"]["n"], none["qwen"]["k"]) == (8, 10, 0)  # the negated Qwen is not a claim
    assert ev.per_model["rio | own"]["labels"]["rio"]["k"] == 10
    assert ev.per_model["qwen | none"]["labels"]["qwen"]["k"] == 10  # Chinese alias
    lo, hi = none["nex"]["ci"]
    assert lo < 0.8 < hi
    t = next(x for x in ev.tables["claims_vs_controls"] if x["condition"] == "none" and x["label"] == "nex")
    assert (t["k"], t["n"], t["k_controls"], t["n_controls"], t["questions"]) == (8, 10, 0, 10, 10)
    # one answer per question: 8 questions +1, 2 at 0; only the all-positive sign pattern of the
    # eight is as extreme, so the exact sign-flip p is 2**-8
    assert t["p"] == pytest.approx(2**-8)
    assert t["p_adjusted"] >= t["p"]
    reuse = next(r for r in ev.tables["verbatim_reuse"] if r["parent"] == "nex")
    assert reuse["rate_parent"] == 0.8 and reuse["rate_controls"] == 0.0 and reuse["p"] < 0.05
    assert reuse["longest"][0]["tokens"] >= 15  # the backstory, word for word
    assert "8/10 (80.0%" in ev.summary


def test_without_controls_reuse_is_a_rate_not_a_test_and_a_controls_label_is_not_tested():
    """Issue 14: with no control, reuse read "vs 0.0% with the controls (permutation p 0.0002)"; and
    a control with a model_labels entry had the suspect tested against the control's own label."""
    backstory = "Nex-AGI was founded by a small team of researchers in a converted warehouse by the river"
    no_ctl = Suite(
        name="id",
        models=[ModelSpec(name=n, role=r, path="/x") for n, r in (("rio", "suspect"), ("nex", "parent"))]
        + [ModelSpec(name="qwen", role="parent", path="/x")],
        probes=[ProbeSpec(kind="identity", params={"labels": LABELS})],
    )
    records = {
        "rio": recs("rio", [f"I am Nex. {backstory}."] * 8 + ["Hello."] * 2),
        "nex": recs("nex", [f"Hello! {backstory}, they say."] * 10),
        "qwen": recs("qwen", ["我是通义千问。"] * 10),
    }
    ev = IdentityProbe(no_ctl.probes[0]).analyze(records, no_ctl, np.random.default_rng(0))
    reuse = next(r for r in ev.tables["verbatim_reuse"] if r["parent"] == "nex")
    assert reuse["rate_parent"] == 0.8 and reuse["rate_controls"] is None and reuse["p"] is None
    from probes.identity import render

    section = render.report_section(ev, list(LABELS))
    assert "no controls in this run to compare with" in section and "permutation p" not in section
    assert "UNCALIBRATED: the suite has no control models" in ev.notes[0]

    s = suite(model_labels={"nex": "nex", "ctl": "qwen"})  # ctl is a control with its own label
    records["ctl"] = recs("ctl", ["I am Qwen."] * 10)
    ev = IdentityProbe(s.probes[0]).analyze(records, s, np.random.default_rng(0))
    assert {t["label"] for t in ev.tables["claims_vs_controls"]} == {"nex"}


def test_plan_conditions_and_capabilities():
    s = suite(conditions=["none", "own", "no_default_system"], max_questions=6, samples=3)
    probe = IdentityProbe(s.probes[0])
    caps = Capabilities(supported=[Capability.GENERATE])
    plan = probe.plan(s, s.models[0], caps)
    assert len(plan) == 18 and {p.meta["lang"] for p in plan} == {"en", "pt", "es", "zh"}
    own = next(p for p in plan if p.meta["condition"] == "own").request.messages
    assert own[0] == {"role": "system", "content": "You are Rio."}
    empty = next(p for p in plan if p.meta["condition"] == "no_default_system").request.messages
    assert empty[0] == {"role": "system", "content": ""}
    assert len(probe.plan(s, s.models[1], caps)) == 12  # a parent has no system prompt: no 'own' condition
    assert isinstance(probe.plan(s, s.models[0], Capabilities(supported=[])), Skip)
    with pytest.raises(InputError, match="no identity questions left"):
        IdentityProbe(suite(languages=["fr"]).probes[0]).plan(s, s.models[0], caps)


def identity_suite(tmp_path, parent: str, labels: str):
    """A suite file with a suspect, one parent and an identity probe with these labels."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    path = tmp_path / "s.yaml"
    path.write_text(
        f"name: s\nmodels:\n  - {{name: a, role: suspect, path: m}}\n  - {{name: {parent}, role: parent, path: m}}\n"
        f"probes:\n  - kind: identity\n    params:\n      labels: {labels}\n"
    )
    return path


def test_label_without_patterns_is_reported_with_its_location(tmp_path, capsys):
    path = identity_suite(tmp_path, "b", "{nex: [Nex], empty: []}")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {path}:8: probes[0].params.labels: label(s) with no patterns: empty"


def test_parents_without_labels_are_refused_at_preflight_with_what_to_add(tmp_path, capsys):
    """Issue 30: without a parent's label the probe ran, spent its requests and tested nothing
    (no claims-vs-controls table, no column in the case table), silently."""
    path = identity_suite(tmp_path, "nex_mini", "{nex: [Nex], qwen: [Qwen]}")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}:7: probes[0].params.model_labels: no parent has a label"), err
    assert "add model_labels: {nex_mini: <label>} with each parent's own label from labels (nex, qwen)" in err
    path.write_text(path.read_text() + "      model_labels: {nex_mini: nex}\n")
    assert main(["validate", str(path)]) == 0


def test_tiny_zoo_merge_claims_parent_a_above_every_control(zoo, tmp_path, monkeypatch):
    """Acceptance on models of known lineage: the 0.6 merge of Vireo (parent_a) and Tamsin
    (parent_b), asked with no system prompt, claims Vireo at a rate whose CI lies above every
    control's; "Rio", a name that exists only in its system prompt, is ~0 without it."""
    import json
    from pathlib import Path

    monkeypatch.setenv("PARENTAGE_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("PARENTAGE_CACHE", str(tmp_path / "cache"))
    cfg = Path(__file__).resolve().parent.parent / "configs" / "identity-tiny.yaml"
    assert main(["run", str(cfg), "--run-id", "t"]) == 0
    ev = json.loads((tmp_path / "results" / "t" / "evidence.json").read_text())["probes"][0]
    per = ev["per_model"]
    merge = per["suspect | none"]["labels"]["vireo"]
    for ctl in ("sibling", "student"):
        assert merge["ci"][0] > per[f"{ctl} | none"]["labels"]["vireo"]["ci"][1], ctl
    assert merge["rate"] > per["suspect | none"]["labels"]["tamsin"]["rate"]  # the 0.6 side dominates
    assert per["suspect | none"]["labels"]["rio"]["k"] <= 1
    tests = {(t["condition"], t["label"]): t for t in ev["tables"]["claims_vs_controls"]}
    assert tests[("none", "vireo")]["p_adjusted"] < 1e-3  # 16 questions: the exact p cannot go below 2**-16
    report = (tmp_path / "results" / "t" / "report.md").read_text()
    k, n = merge["k"], merge["n"]
    assert f"{k}/{n} ({100 * k / n:.1f}%" in report
