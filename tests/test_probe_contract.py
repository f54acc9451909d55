"""Contract tests parametrised over every registered probe (the garak pattern)."""

from __future__ import annotations

import pytest

from harness.backends.base import Capabilities, Capability
from harness.config import ModelSpec, ProbeSpec, Suite
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
    p1 = probe.plan(suite, suite.models[0], everything)
    p2 = probe.plan(suite, suite.models[0], everything)
    assert isinstance(p1, list) and p1 and all(isinstance(p, Planned) for p in p1)
    assert [p.request.canonical() for p in p1] == [p.request.canonical() for p in p2]
    assert probe.plan(suite, suite.models[0], Capabilities(supported=[])).__class__ is Skip
