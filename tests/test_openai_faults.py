"""The openai backend against a real local HTTP server that misbehaves on purpose: 429 storms
with Retry-After, 500s, timeouts, truncated JSON, dropped connections, a wrong API key, a
server without usage counts, and a server killed mid-run then restarted (the run resumes
without re-sending anything that was answered)."""

from __future__ import annotations

import json
import time

import pytest

from harness.backends.base import CountRequest, GenerateRequest, ModelRef
from harness.backends.openai import OpenAIBackend
from harness.errors import BackendError, CapabilityMissing
from tests.conftest import write_suite
from tests.fault_server import MODEL, FaultServer, answer_text


@pytest.fixture()
def server():
    s = FaultServer().start()
    yield s
    s.stop()


def make(url: str, **opts) -> OpenAIBackend:
    options = {"base_url": url, "probe_capabilities": False, "backoff_s": 0.05, "timeout_s": 5} | opts
    b = OpenAIBackend(ModelRef(name="api", path=MODEL, options=options))
    b.load()
    return b


def ask(b: OpenAIBackend, text: str = "who are you?", n: int = 1):
    return b.generate([GenerateRequest(messages=[{"role": "user", "content": text}], n=n, seed=7)])[0]


@pytest.mark.parametrize("fault", ["429", "500", "truncated", "drop"])
def test_transient_faults_are_retried(server, fault):
    server.faults = [fault] * 3
    b = make(server.base_url)
    res = ask(b)
    assert res.texts == [answer_text({"messages": [{"role": "user", "content": "who are you?"}], "seed": 7})]
    assert b.usage()["retries"] == 3
    assert len(server.received) == 4


def test_retry_after_is_honoured(server):
    server.retry_after = 0.4
    server.faults = ["429", "429"]
    b = make(server.base_url, backoff_s=0.0)
    t0 = time.perf_counter()
    ask(b)
    assert time.perf_counter() - t0 >= 0.8  # two waits of Retry-After: 0.4, though backoff_s is 0


def test_timeout_is_retried(server):
    server.slow_s = 2.0
    server.faults = ["slow"]
    b = make(server.base_url, timeout_s=0.5)
    assert ask(b).texts[0].startswith("answer ")
    assert b.usage()["retries"] == 1


def test_attempts_are_bounded(server):
    server.default = "500"
    b = make(server.base_url, max_attempts=3)
    with pytest.raises(BackendError, match=r"failed after 3 attempts .*HTTP 500"):
        ask(b)
    assert len(server.received) == 3


def test_wrong_api_key_fails_at_once_without_leaking_it(monkeypatch):
    s = FaultServer(api_key="right-key").start()
    try:
        monkeypatch.setenv("PARENTAGE_TEST_KEY", "wrong-key-123")
        with pytest.raises(BackendError) as e:
            make(s.base_url, api_key_env="PARENTAGE_TEST_KEY")
        assert "401" in str(e.value) and "PARENTAGE_TEST_KEY" in str(e.value)
        assert "wrong-key-123" not in str(e.value)
        assert s.received == []  # failed at /models, before any completion was sent
        monkeypatch.setenv("PARENTAGE_TEST_KEY", "right-key")
        b = make(s.base_url, api_key_env="PARENTAGE_TEST_KEY")
        assert ask(b).texts
        assert "right-key" not in json.dumps(b.fingerprint())
    finally:
        s.stop()


def test_unset_key_variable_is_named(monkeypatch, server):
    monkeypatch.delenv("PARENTAGE_NO_SUCH_KEY", raising=False)
    with pytest.raises(BackendError, match="PARENTAGE_NO_SUCH_KEY"):
        make(server.base_url, api_key_env="PARENTAGE_NO_SUCH_KEY")


def test_no_usage_is_a_missing_capability_not_a_zero(server):
    server.default = "no_usage"
    b = make(server.base_url, count_method="usage")
    with pytest.raises(CapabilityMissing, match=r"no usage\.prompt_tokens"):
        b.count([CountRequest(text="hello")])


def test_usage_counts_subtract_the_template_baseline(server):
    b = make(server.base_url, count_method="usage")
    res = b.count([CountRequest(text="one two three"), CountRequest(text="")])
    assert [r.n_tokens for r in res] == [3, 0]  # the server counts words plus 10 for its "template"
    assert res[0].method == "usage"


def test_capability_probe_records_missing_usage_and_skips_the_tokenizer_probe(server, tmp_path, monkeypatch, capsys):
    from harness.cli import main

    server.default = "no_usage"
    monkeypatch.setenv("PARENTAGE_CACHE", str(tmp_path / "cache"))
    suite = write_suite(
        tmp_path,
        f"""
name: nousage
models:
  - {{name: api, role: suspect, backend: openai, path: {MODEL}, options: {{base_url: "{server.base_url}"}}}}
probes:
  - {{kind: tokenizer, params: {{library: false, max_strings: 5}}}}
output_dir: {tmp_path}/results
""",
    )
    # The run finishes, but with no verdict from its only probe: exit 5 and a loud line, never a quiet 0.
    assert main(["run", str(suite), "--run-id", "r"]) == 5
    assert "NO VERDICT from probe tokenizer" in " ".join(capsys.readouterr().err.split())
    events = [json.loads(x) for x in (tmp_path / "results" / "r" / "run.jsonl").read_text().splitlines()]
    loaded = next(e for e in events if e["event"] == "model_loaded")
    assert loaded["fingerprint"]["capabilities"]["usage"] is False
    skipped = next(e for e in events if e["event"] == "probe_skipped")
    assert skipped["reason"].startswith("capability missing")
    ev = json.loads((tmp_path / "results" / "r" / "evidence.json").read_text())["probes"][0]
    assert ev["status"] == "skipped" and "capability missing" in ev["reason"]


def test_server_killed_mid_run_then_resumed_sends_nothing_twice(tmp_path, monkeypatch):
    from harness.cli import main

    monkeypatch.setenv("PARENTAGE_CACHE", str(tmp_path / "cache"))
    first = FaultServer().start()
    port = first.port
    suite = write_suite(
        tmp_path,
        f"""
name: killed
models:
  - name: api
    role: suspect
    backend: openai
    path: {MODEL}
    options: {{base_url: "http://127.0.0.1:{port}/v1", concurrency: 2, max_attempts: 2, backoff_s: 0.05,
               probe_capabilities: false}}
probes:
  - kind: identity
    params: {{labels: {{x: [answer]}}, max_questions: 12, samples: 1, conditions: [none]}}
output_dir: {tmp_path}/results
""",
    )
    # The server dies after answering 5 requests: every later one is refused.
    first.faults = ["ok"] * 5
    first.default = "drop"
    code = main(["run", str(suite), "--run-id", "r"])
    assert code == 3
    answered_first = sum(first.answered.values())
    first.stop()
    assert answered_first == 5
    second = FaultServer(port=port).start()
    try:
        assert main(["run", str(suite), "--resume", str(tmp_path / "results" / "r")]) == 0
        # Exactly the 7 unanswered questions were sent again, none of the 5 answered ones.
        assert sum(second.answered.values()) == 12 - answered_first
        assert not set(second.answered) & set(first.answered)
    finally:
        second.stop()
    ev = json.loads((tmp_path / "results" / "r" / "evidence.json").read_text())["probes"][0]
    assert ev["per_model"]["api | none"]["n"] == 12
    # The failure is in the report's limitations as what it was (the model loaded, then its server
    # failed), not as "Model `None` failed to load".
    limitations = (tmp_path / "results" / "r" / "report.md").read_text().split("## Limitations")[1]
    assert "A backend failed mid-run: " in limitations and "`None`" not in limitations


def test_model_list_faults_are_retried_then_fail_cleanly(server, tmp_path, monkeypatch, capsys):
    from harness.cli import main

    server.models_faults = ["500", "garbage"]  # transient: retried, then the list arrives
    b = make(server.base_url)
    assert b.usage()["retries"] == 2 and b.fingerprint()["server_model"]["id"] == MODEL
    b.close()
    server.models_default = "500"  # a server that never lists its models: exit 3, one clean line
    monkeypatch.setenv("PARENTAGE_CACHE", str(tmp_path / "cache"))
    options = f'{{base_url: "{server.base_url}", max_attempts: 2, backoff_s: 0.01}}'
    suite = write_suite(
        tmp_path,
        f"""
name: nolist
models:
  - {{name: api, role: suspect, backend: openai, path: {MODEL}, options: {options}}}
probes:
  - {{kind: identity, params: {{labels: {{x: [answer]}}, max_questions: 2, samples: 1, conditions: [none]}}}}
output_dir: {tmp_path}/results
""",
    )
    assert main(["run", str(suite), "--run-id", "r"]) == 3
    err = " ".join(capsys.readouterr().err.split())
    assert "backend failed: model 'api':" in err and "/v1/models failed after 2 attempts" in err
    assert "HTTP 500" in err and "Traceback" not in err
