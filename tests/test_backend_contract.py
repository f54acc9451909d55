"""Contract tests parametrised over every registered backend: the options schema refuses unknown
keys, ``fingerprint()`` has a stable key, every declared capability is backed by an implemented
method, and a batch of n requests gives n results of the right type, in order.

Each backend is loaded for real: ``hf`` on a tiny-zoo model, ``openai`` and ``vllm`` (attached by
URL) on a local OpenAI-compatible server, ``fake`` as it is."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from harness.backends import BACKENDS, backend_class, make_backend
from harness.backends.base import (
    Backend,
    BackendOptions,
    Capability,
    CountRequest,
    CountResult,
    GenerateRequest,
    GenerateResult,
    ModelRef,
    ScoreRequest,
    ScoreResult,
)
from tests.fault_server import MODEL, FaultServer

# Which method serves each capability; a capability declared without its method is a lie.
METHOD_FOR = {
    Capability.FULL_LOGPROBS: "score",
    Capability.TOPK_LOGPROBS: "score",
    Capability.GENERATE: "generate",
    Capability.NEXT_TOKEN_TOPK: "generate",
    Capability.TOKEN_COUNTS: "count",
}


@pytest.fixture(scope="module")
def api_server():
    s = FaultServer().start()
    yield s
    s.stop()


def spec_for(name: str, request: pytest.FixtureRequest, server: FaultServer) -> ModelRef:
    if name == "hf":
        zoo = request.getfixturevalue("zoo")
        return ModelRef(name="m", path=str(zoo / "parent_a"))
    if name == "openai":
        options = {"base_url": server.base_url, "probe_capabilities": False}
        return ModelRef(name="m", path=MODEL, options=options)
    if name == "vllm":
        options = {"url": server.base_url, "served_model_name": MODEL, "probe_capabilities": False}
        return ModelRef(name="m", path=MODEL, options=options)
    if name == "fake":
        return ModelRef(name="m", options={"seed": 3})
    raise AssertionError(f"backend '{name}' has no contract fixture: add one here")


@pytest.mark.parametrize("name", list(BACKENDS))
def test_metadata_and_options_schema(name):
    cls = backend_class(name)
    assert issubclass(cls, Backend) and cls.name == name and cls.description
    assert issubclass(cls.Options, BackendOptions)
    with pytest.raises(ValidationError, match="no_such_option"):
        cls.Options.model_validate({"no_such_option": 1})
    assert cls.local_path in ("always", "if_exists", "never")


@pytest.mark.parametrize("name", list(BACKENDS))
def test_loaded_backend_keeps_its_contract(name, request, api_server):
    b = make_backend(name, spec_for(name, request, api_server))
    b.load()
    try:
        fp1, fp2 = b.fingerprint(), b.fingerprint()
        assert isinstance(fp1["key"], str) and len(fp1["key"]) >= 16 and fp1["key"] == fp2["key"]
        assert fp1["backend"] == name
        caps = b.capabilities()
        for cap in caps.supported:
            if cap in METHOD_FOR:
                method = METHOD_FOR[cap]
                assert getattr(type(b), method) is not getattr(Backend, method), f"{cap} declared, {method} missing"
        batches = []
        if caps.has(Capability.GENERATE):
            msgs = [[{"role": "user", "content": f"question {i}"}] for i in range(3)]
            batches.append(
                ([GenerateRequest(messages=m, max_new_tokens=4, seed=i) for i, m in enumerate(msgs)], GenerateResult)
            )
        if caps.has(Capability.TOPK_LOGPROBS):
            texts = ["one two three four", "five six seven", "eight nine ten eleven twelve"]
            batches.append(([ScoreRequest(text=t, mode="topk", top_k=4) for t in texts], ScoreResult))
        if caps.has(Capability.TOKEN_COUNTS):
            batches.append(([CountRequest(text=t) for t in ("a", "bb b", "ccc cc c")], CountResult))
        assert batches, f"backend '{name}' declares nothing it can be asked"
        for requests, kind in batches:
            results = b.execute(requests)
            assert len(results) == len(requests) and all(isinstance(r, kind) for r in results)
            if kind is ScoreResult:  # in request order: each result scores its own text
                assert [len(r.token_logprobs) for r in results] == [len(r.token_ids) - 1 for r in results]
                assert all(np.all(r.topk_logprobs[:, 0] >= r.token_logprobs - 1e-5) for r in results)
    finally:
        b.close()


def test_the_fake_backend_is_a_known_lineage_model():
    """Deterministic; same seed = same model; ``mix`` interpolates logits exactly."""

    def scores(options):
        b = make_backend("fake", ModelRef(name="f", options=options))
        b.load()
        return b.score([ScoreRequest(text="hello there, fake world", mode="full")])[0]

    a, a2, m = scores({"seed": 1}), scores({"seed": 1}), scores({"seed": 1, "mix": {"seed": 2, "weight": 0.25}})
    b = scores({"seed": 2})
    np.testing.assert_array_equal(a.full, a2.full)
    assert not np.allclose(a.full, b.full)
    np.testing.assert_allclose(np.exp(a.full).sum(axis=1), 1.0, rtol=1e-5)

    def centred(x):  # log-probs minus their per-position mean: the logits up to a constant
        return x - x.mean(axis=1, keepdims=True)

    np.testing.assert_allclose(centred(m.full), 0.75 * centred(a.full) + 0.25 * centred(b.full), atol=1e-4)
