"""Contract tests parametrised over every registered probe (the garak pattern)."""

from __future__ import annotations

import pytest

from harness.backends.base import Capabilities, Capability
from harness.suite import ModelSpec, ProbeSpec, Suite
from probes import PROBES, probe_class
from probes.base import Planned, Probe, Skip


@pytest.mark.parametrize("kind", list(PROBES))
def test_probe_metadata(kind):
    cls = probe_class(kind)
    assert issubclass(cls, Probe)
    assert cls.kind == kind
    assert cls.version and cls.description and len(cls.description) < 120
    cls.Params.model_validate(cls.example)  # the documented minimal parameters are valid


@pytest.mark.parametrize("kind", list(PROBES))
def test_plan_is_pure_and_respects_capabilities(kind):
    cls = probe_class(kind)
    suite = Suite(
        name="c",
        models=[ModelSpec(name="s", role="suspect", path="/x"), ModelSpec(name="p", role="parent", path="/y")],
        probes=[ProbeSpec(kind=kind, params=cls.example)],
    )
    probe = cls(suite.probes[0])
    everything = Capabilities(supported=list(Capability), max_top_k=20)
    if not cls.needs_backend:  # reads files at analysis: it asks no model anything, and collect never loads one for it
        assert probe.plan(suite, suite.models[0], everything) == [] and not cls.requires
        return
    p1 = probe.plan(suite, suite.models[0], everything)
    p2 = probe.plan(suite, suite.models[0], everything)
    assert isinstance(p1, list) and p1 and all(isinstance(p, Planned) for p in p1)
    assert [p.request.canonical() for p in p1] == [p.request.canonical() for p in p2]
    assert probe.plan(suite, suite.models[0], Capabilities(supported=[])).__class__ is Skip


def test_requires_is_enforced_by_collect_and_listed(tmp_path, capsys):
    """A model offering none of a probe's required capabilities is skipped by collect, with the
    reason recorded once, and the other probes still run on it."""
    import json

    from harness.cli import main
    from tests.conftest import write_suite

    suite = write_suite(
        tmp_path,
        f"""name: req
models:
  - {{name: s, role: suspect, backend: fake, options: {{without: [generate]}}}}
probes:
  - {{kind: identity, params: {{labels: {{x: [X]}}}}}}
  - {{kind: tokenizer, params: {{library: false}}}}
output_dir: {tmp_path}/results
cache_dir: {tmp_path}/cache
""",
    )
    main(["run", str(suite), "--run-id", "r"])
    events = [json.loads(x) for x in (tmp_path / "results" / "r" / "run.jsonl").read_text().splitlines()]
    skipped = [e for e in events if e["event"] == "probe_skipped"]
    assert [(e["model"], e["probe"], e["reason"]) for e in skipped] == [
        ("s", "identity", "capability missing: backend 'fake' offers no generate")
    ]
    assert any(e["event"] == "probe_collected" and e["probe"] == "tokenizer" for e in events)
    capsys.readouterr()
    assert main(["list"]) == 0
    assert "needs one of: full_logprobs, topk_logprobs, next_token_topk" in capsys.readouterr().out


def test_probe_models_list_limits_where_a_probe_runs(tmp_path, capsys):
    """`models:` on a probe runs it on those models only; a model no probe asks for is never
    loaded; an unknown name is an error at its own line."""
    import json

    from harness.cli import main
    from tests.conftest import write_suite

    body = f"""name: sub
models:
  - {{name: s, role: suspect, backend: fake}}
  - {{name: p, role: parent, backend: fake}}
  - {{name: q, role: control, backend: fake}}
probes:
  - {{kind: tokenizer, params: {{library: false}}, models: [s, p]}}
  - {{kind: identity, id: who, params: {{labels: {{x: [X]}}, max_questions: 2, samples: 1}}, models: [s]}}
output_dir: {tmp_path}/results
cache_dir: {tmp_path}/cache
"""
    suite = write_suite(tmp_path, body)
    assert main(["run", str(suite), "--run-id", "r"]) == 0
    events = [json.loads(x) for x in (tmp_path / "results" / "r" / "run.jsonl").read_text().splitlines()]
    ran = {(e["probe"], e["model"]) for e in events if e["event"] == "probe_collected"}
    assert ran == {("tokenizer", "s"), ("tokenizer", "p"), ("who", "s")}
    assert [e["model"] for e in events if e["event"] == "model_loaded"] == ["s", "p"]
    assert not [e for e in events if e["event"] == "probe_skipped"]

    bad = write_suite(tmp_path, body.replace("models: [s, p]", "models: [s, ghost]"), "bad.yaml")
    capsys.readouterr()
    assert main(["validate", str(bad)]) == 2
    assert "bad.yaml:7: probes[0].models[1]: no model named 'ghost' in this suite" in capsys.readouterr().err
