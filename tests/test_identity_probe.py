"""Identity probe: analysis on fixed response sets, planning rules and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from harness.backends.base import Capabilities, Capability, GenerateRequest, GenerateResult
from harness.cli import main
from harness.config import ModelSpec, ProbeSpec, Suite
from harness.errors import InputError
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


def test_counts_wilson_fisher_and_reuse_on_fixed_responses():
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
    t = next(x for x in ev.tables["fisher_vs_controls"] if x["condition"] == "none" and x["label"] == "nex")
    assert (t["k"], t["n"], t["k_controls"], t["n_controls"]) == (8, 10, 0, 10)
    assert t["p"] == pytest.approx(sps.fisher_exact([[8, 2], [0, 10]], alternative="greater").pvalue)
    assert t["p_adjusted"] >= t["p"]
    reuse = next(r for r in ev.tables["verbatim_reuse"] if r["parent"] == "nex")
    assert reuse["rate_parent"] == 0.8 and reuse["rate_controls"] == 0.0 and reuse["p"] < 0.05
    assert reuse["longest"][0]["tokens"] >= 15  # the backstory, word for word
    assert "8/10 (80.0%" in ev.summary


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


def test_label_without_patterns_is_reported_with_its_location(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\nmodels:\n  - {name: a, role: suspect, path: m}\n  - {name: b, role: parent, path: m}\n"
        "probes:\n  - kind: identity\n    params:\n      labels: {nex: [Nex], empty: []}\n"
    )
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {path}:8: probes[0].params.labels: label(s) with no patterns: empty"


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
    fisher = {(t["condition"], t["label"]): t for t in ev["tables"]["fisher_vs_controls"]}
    assert fisher[("none", "vireo")]["p_adjusted"] < 1e-6
    report = (tmp_path / "results" / "t" / "report.md").read_text()
    k, n = merge["k"], merge["n"]
    assert f"{k}/{n} ({100 * k / n:.1f}%" in report
