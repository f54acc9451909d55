"""Contract tests parametrised over every registered probe (the garak pattern): metadata, a
layout every probe shares, pure plans in every stage, and a case, a Result and a render."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
from pydantic import BaseModel

from harness.backends.base import Capabilities, Capability, ModelRef
from harness.backends.fake import FakeBackend
from harness.suite import ModelSpec, ProbeSpec, Suite
from probes import PROBES, probe_class
from probes.base import Planned, Probe, Record, Skip

PROBES_DIR = Path(__file__).resolve().parent.parent / "probes"


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


def _suite(kind: str, **params) -> Suite:
    cls = probe_class(kind)
    return Suite(
        name="c",
        models=[
            ModelSpec(name="s", role="suspect", path="/x"),
            ModelSpec(name="p", role="parent", path="/y"),
            ModelSpec(name="q", role="parent", path="/z"),
            ModelSpec(name="k", role="candidate", path="/w"),
        ],
        probes=[ProbeSpec(kind=kind, params=cls.example | params)],
    )


@pytest.mark.parametrize("kind", list(PROBES))
def test_every_probe_has_the_same_layout(kind):
    """probe.py (planning and the interface), analysis.py (the chain, one object with a ``run``),
    render.py, case.py, result.py; verdict.py, and a ``case`` of its own, where results carry a
    verdict. A newcomer who knows one probe's folder knows them all."""
    cls = probe_class(kind)
    folder = PROBES_DIR / cls.__module__.split(".")[1]
    files = {p.name for p in folder.glob("*.py")}
    assert {"probe.py", "analysis.py", "render.py", "case.py", "result.py"} <= files, sorted(files)
    analysis = importlib.import_module(f"{cls.__module__.rsplit('.', 1)[0]}.analysis")
    chains = [c for _, c in inspect.getmembers(analysis, inspect.isclass) if c.__module__ == analysis.__name__]
    assert any(callable(getattr(c, "run", None)) for c in chains), "analysis.py holds the chain: a class with run()"
    assert cls.Result is not None and issubclass(cls.Result, BaseModel)
    render = importlib.import_module(f"{cls.__module__.rsplit('.', 1)[0]}.render")
    assert callable(getattr(render, "report_section", None))
    assert cls.report_section is not Probe.report_section and cls.figures is not Probe.figures
    assert cls.case is not Probe.case
    if "verdict" in cls.Result.model_fields:
        assert "verdict.py" in files


@pytest.mark.parametrize("kind", list(PROBES))
def test_every_stage_plan_is_pure(kind):
    """Stage one and stage two plans (a staged probe's, and a screening pool's) are pure: the same
    requests twice, given the same stage-one answers (here a fake backend's)."""
    params = {"screen_texts": 4, "max_texts": 8} if kind == "logit_interpolation" else {}
    suite = _suite(kind, **params)
    probe = probe_class(kind)(suite.probes[0])
    caps = Capabilities(supported=list(Capability), max_top_k=20)
    staged = [m for m in suite.models if probe.staged(suite, m)]
    if kind in ("logit_interpolation", "text_interpolation"):
        assert staged, "the screening (logit) and the parents' scoring (text) are staged"
    records: dict[str, list[Record]] = {}
    for m in suite.models:
        one = probe.stage_one_plan(suite, m, caps) if m in staged else probe.plan(suite, m, caps)
        again = probe.stage_one_plan(suite, m, caps) if m in staged else probe.plan(suite, m, caps)
        assert not isinstance(one, Skip) and not isinstance(again, Skip)
        assert [p.request.canonical() for p in one] == [p.request.canonical() for p in again]
        fake = FakeBackend(ModelRef(m.name, None, {}))
        fake.load()
        answers = fake.execute([p.request for p in one]) if one else []
        records[m.name] = [Record(m.name, str(i), p.meta, p.request, a) for i, (p, a) in enumerate(zip(one, answers))]
    for m in staged:
        two = probe.stage_two_plan(suite, m, caps, records)
        again = probe.stage_two_plan(suite, m, caps, records)
        assert not isinstance(two, Skip) and not isinstance(again, Skip)
        assert [p.request.canonical() for p in two] == [p.request.canonical() for p in again]
        firsts = probe.stage_one_plan(suite, m, caps)
        assert not isinstance(firsts, Skip)
        assert {p.request.canonical() for p in firsts} <= {p.request.canonical() for p in two}, (
            "stage two holds stage one (answered from the cache)"
        )


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
