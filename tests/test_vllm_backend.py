"""The vllm backend's lifecycle against a real process and a real HTTP server: its executable
is pointed at tests/fake_vllm.py, which turns `vllm serve` arguments into a llama.cpp server
serving SmolLM2. Also: the exact `vllm serve` command lines the shipped configs produce."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.backends.base import GenerateRequest
from harness.backends.vllm import VLLMBackend, VLLMOptions, serve_command
from harness.config import ModelSpec, load_suite
from harness.errors import BackendError
from tests.conftest import write_suite

REPO = Path(__file__).resolve().parent.parent

ENGINE = [
    "--tensor-parallel-size", "8", "--pipeline-parallel-size", "1", "--distributed-executor-backend", "mp",
    "--max-model-len", "8192", "--max-logprobs", "20", "--dtype", "bfloat16", "--gpu-memory-utilization", "0.92",
    "--enable-prefix-caching",
]  # fmt: skip


def test_rio_config_produces_these_vllm_serve_commands(monkeypatch):
    for var in ("RIO_MODEL", "NEX_MODEL", "QWEN35_MODEL", "CONTROL1_MODEL", "CONTROL2_MODEL"):
        monkeypatch.delenv(var, raising=False)
    suite = load_suite(REPO / "configs" / "rio-397b.yaml")
    got = {m.name: serve_command(m, VLLMOptions.model_validate(m.options), 8000) for m in suite.models}
    expected = {
        "rio": "Rio-3.5-Open-397B",
        "nex_n2_pro": "nex-agi/Nex-N2-Pro",
        "qwen35": "Qwen/Qwen3.5-397B-A17B",
        "qwen3_235b": "Qwen/Qwen3-235B-A22B-Instruct-2507",
        "glm45_air": "zai-org/GLM-4.5-Air",
    }
    for name, model in expected.items():
        head = ["vllm", "serve", model, "--host", "127.0.0.1", "--port", "8000", "--served-model-name", name]
        assert got[name] == head + ENGINE, name


def test_rio_config_model_ids_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("RIO_MODEL", "/models/rio")
    suite = load_suite(REPO / "configs" / "rio-397b.yaml")
    assert (
        serve_command(suite.model("rio"), VLLMOptions.model_validate(suite.model("rio").options), 1)[2] == "/models/rio"
    )


@pytest.fixture(scope="module")
def fake_vllm(tmp_path_factory) -> str:
    """An executable `vllm` stand-in (a shell wrapper, so it runs under this venv's Python)."""
    exe = tmp_path_factory.mktemp("bin") / "vllm"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{REPO / "tests" / "fake_vllm.py"}" "$@"\n')
    exe.chmod(0o755)
    return str(exe)


def spec(path: str, exe: str, log_dir: Path, **opts) -> ModelSpec:
    options = {"executable": exe, "max_model_len": 2048, "tensor_parallel_size": 2, "log_dir": str(log_dir)}
    options |= {"startup_timeout_s": 120, "concurrency": 2, "max_attempts": 2, "backoff_s": 0.05} | opts
    return ModelSpec(name="smol", role="suspect", backend="vllm", path=path, options=options)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_launch_health_wait_log_and_teardown(smollm2_gguf, fake_vllm, tmp_path):
    b = VLLMBackend(spec(str(smollm2_gguf), fake_vllm, tmp_path))
    b.load()
    try:
        port = int(b.command[b.command.index("--port") + 1])
        assert port_open(port)
        res = b.generate([GenerateRequest(messages=[{"role": "user", "content": "Hi"}], max_new_tokens=4)])[0]
        assert res.texts[0]
        fp = b.fingerprint()
        assert fp["backend"] == "vllm" and fp["launched"] and fp["server_model"]["id"] == "smol"
        log = (tmp_path / "vllm-smol.log").read_text()
        assert log.startswith(f"$ {fake_vllm} serve {smollm2_gguf} --host 127.0.0.1 --port {port}")
        assert "--tensor-parallel-size', '2'" in log  # the engine args reached the server
        pid = b.proc.pid
    finally:
        b.close()
    assert not port_open(port)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_crash_at_start_reports_the_log_tail(fake_vllm, tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 100)
    b = VLLMBackend(spec(str(bad), fake_vllm, tmp_path))
    with pytest.raises(BackendError) as e:
        b.load()
    msg = str(e.value)
    assert "exited during start-up" in msg and "--- last lines ---" in msg
    assert "broken.gguf" in msg  # the server's own complaint about the file is quoted


def test_crash_mid_run_is_detected(smollm2_gguf, fake_vllm, tmp_path):
    b = VLLMBackend(spec(str(smollm2_gguf), fake_vllm, tmp_path))
    b.load()
    try:
        os.killpg(b.proc.pid, signal.SIGKILL)
        b.proc.wait(10)
        with pytest.raises(BackendError, match="died mid-run"):
            b.generate([GenerateRequest(messages=[{"role": "user", "content": "Hi"}], max_new_tokens=4)])
    finally:
        b.close()


def test_missing_executable_says_how_to_install(tmp_path):
    b = VLLMBackend(spec("some/model", "/nonexistent/vllm", tmp_path))
    with pytest.raises(BackendError, match=r"pip install 'parentage\[vllm\]'"):
        b.load()


def test_attach_to_a_running_server(llama_server, tmp_path):
    s = ModelSpec(
        name="smol", role="suspect", backend="vllm", path="smollm2", options={"url": llama_server["base_url"]}
    )
    b = VLLMBackend(s)
    b.load()
    assert not b.launched and b.proc is None
    assert b.generate([GenerateRequest(messages=[{"role": "user", "content": "Hi"}], max_new_tokens=3)])[0].texts
    b.close()


def test_ctrl_c_stops_the_server(smollm2_gguf, fake_vllm, tmp_path):
    suite = write_suite(
        tmp_path,
        f"""
name: ctrlc
models:
  - name: smol
    role: suspect
    backend: vllm
    path: {smollm2_gguf}
    options: {{executable: "{fake_vllm}", max_model_len: 2048, concurrency: 1}}
probes:
  - kind: identity
    params: {{labels: {{s: [SmolLM]}}, conditions: [none], max_questions: 60, samples: 1, max_new_tokens: 48}}
output_dir: {tmp_path}/results
cache_dir: {tmp_path}/cache
""",
    )
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(suite), "--run-id", "r"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    raw = tmp_path / "results" / "r" / "raw" / "smol.jsonl"
    deadline = time.monotonic() + 180
    while not raw.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert raw.exists(), proc.communicate()[0].decode()[-2000:]
    log = (tmp_path / "results" / "r" / "servers" / "vllm-smol.log").read_text()
    port = int(log.split("--port ")[1].split()[0])
    assert port_open(port)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 130, out[-2000:]
    assert "--resume" in out
    assert not port_open(port)  # the server went down with the run
