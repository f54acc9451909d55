"""The vllm backend without a server: the exact `vllm serve` command lines the shipped configs
produce, and how a launcher is found (or why none is). The backend against a real vLLM is in
tests/test_vllm_real.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.backends import vllm_server
from harness.backends.base import ModelRef
from harness.backends.vllm import VLLMBackend, VLLMOptions, serve_command
from harness.backends.vllm_server import API_SERVER_MODULE, ENV_VAR, resolve_launcher
from harness.config import load_suite
from harness.errors import BackendError, InputError
from tests.conftest import INTERRUPTED, default_sigint

REPO = Path(__file__).resolve().parent.parent

ENGINE = [
    "--tensor-parallel-size", "8", "--pipeline-parallel-size", "1", "--distributed-executor-backend", "mp",
    "--max-model-len", "8192", "--max-logprobs", "20", "--dtype", "bfloat16", "--gpu-memory-utilization", "0.92",
    "--enable-prefix-caching",
]  # fmt: skip


def online_without_cache(monkeypatch, tmp_path) -> None:
    """As on a GPU node before `parentage fetch`: the Hub reachable (not here: nothing is sent while
    validating), its cache empty. Hub ids then stay ids until `run` downloads them."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))


def test_rio_config_produces_these_vllm_serve_commands(monkeypatch, tmp_path):
    for var in ("RIO_MODEL", "NEX_MODEL", "QWEN35_MODEL", "CONTROL1_MODEL", "CONTROL2_MODEL"):
        monkeypatch.delenv(var, raising=False)
    online_without_cache(monkeypatch, tmp_path)
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


def test_rio_config_model_ids_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RIO_MODEL", "/models/rio")
    online_without_cache(monkeypatch, tmp_path)
    suite = load_suite(REPO / "configs" / "rio-397b.yaml")
    assert (
        serve_command(suite.model("rio"), VLLMOptions.model_validate(suite.model("rio").options), 1)[2] == "/models/rio"
    )


def test_launcher_resolution_order(monkeypatch, tmp_path):
    exe = tmp_path / "vllm"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_launcher(None, None) == ([str(exe), "serve"], "PATH")
    monkeypatch.setenv(ENV_VAR, sys.executable)
    assert resolve_launcher(None, None) == ([sys.executable, "-m", API_SERVER_MODULE, "--model"], f"${ENV_VAR}")
    py = resolve_launcher(None, sys.executable)
    assert py == ([sys.executable, "-m", API_SERVER_MODULE, "--model"], "options.python")
    assert resolve_launcher([str(exe), "serve"], sys.executable) == ([str(exe), "serve"], "options.command")
    # Last, the checkout's own environment (issue 30: the CLI run from a shell after `make test`).
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    venv = tmp_path / ".venv-vllm" / "bin" / "python"
    venv.parent.mkdir(parents=True)
    venv.write_text("#!/bin/sh\n")
    monkeypatch.setattr(vllm_server, "CHECKOUT_VLLM", venv)
    assert resolve_launcher(None, None) == (
        [str(venv), "-m", API_SERVER_MODULE, "--model"],
        "the checkout's .venv-vllm",
    )


def test_no_launcher_names_every_way_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(vllm_server, "CHECKOUT_VLLM", tmp_path / "no-venv" / "python")
    with pytest.raises(BackendError) as e:
        resolve_launcher(None, None)
    msg = str(e.value)
    for hint in (
        "options.python",
        "options.command",
        "$PARENTAGE_VLLM",
        "pip install 'parentage[vllm]'",
        "options.url",
    ):
        assert hint in msg
    with pytest.raises(BackendError, match=r"options\.python: '/nonexistent/python' is not an executable"):
        resolve_launcher(None, "/nonexistent/python")
    # A backend that cannot launch fails at load with the same message, before anything else.
    b = VLLMBackend(ModelRef(name="m", path="some/model", options={}))
    with pytest.raises(BackendError, match=r"pip install 'parentage\[vllm\]'"):
        b.load()


def test_a_python_without_vllm_fails_at_start_with_its_own_words(tmp_path):
    # This test environment's own Python has no vLLM (it lives in .venv-vllm).
    options = {"python": sys.executable, "log_dir": str(tmp_path), "startup_timeout_s": 60}
    b = VLLMBackend(ModelRef(name="m", path="some/model", options=options))
    with pytest.raises(BackendError) as e:
        b.load()
    assert "exited during start-up" in str(e.value) and "No module named 'vllm'" in str(e.value)


def test_validate_refuses_a_suite_that_cannot_launch_vllm(monkeypatch, tmp_path):
    """Also for a model named by a Hub id not downloaded yet: the launcher is checked before any download."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(vllm_server, "CHECKOUT_VLLM", tmp_path / "no-venv" / "python")
    online_without_cache(monkeypatch, tmp_path)
    suite = tmp_path / "s.yaml"
    model = "  - {name: m, role: suspect, backend: vllm, path: some/model}"
    suite.write_text(f"name: s\nmodels:\n{model}\nprobes:\n  - {{kind: identity}}\n")
    with pytest.raises(InputError) as e:
        load_suite(suite)
    assert "s.yaml:3: models[0].path: no vLLM launcher found" in str(e.value)


def test_ctrl_c_while_a_server_starts_leaves_nothing_running(tmp_path):
    """A launcher that never becomes healthy (a real process standing in for a slow vLLM start):
    Ctrl-C during the wait ends the run with 130 and takes the server's process group with it.
    Before the fix the server, started in its own session, outlived the run."""
    import os
    import signal
    import subprocess
    import time

    never_healthy = tmp_path / "never_healthy.py"
    never_healthy.write_text("import time\ntime.sleep(600)\n")
    (tmp_path / "model").mkdir()
    suite = tmp_path / "s.yaml"
    suite.write_text(
        f"""name: s
models:
  - name: m
    role: suspect
    backend: vllm
    path: {tmp_path / "model"}
    options: {{command: [{sys.executable}, {never_healthy}], startup_timeout_s: 600}}
probes:
  - {{kind: tokenizer, params: {{library: false}}}}
output_dir: {tmp_path}/results
cache_dir: {tmp_path}/cache
"""
    )
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "harness.cli", "run", str(suite), "--run-id", "r"]
    proc = subprocess.Popen(
        cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=default_sigint
    )
    log = tmp_path / "results" / "r" / "servers" / "vllm-m.log"
    deadline = time.monotonic() + 120
    while "# pid " not in (log.read_text() if log.exists() else ""):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0].decode()[-2000:]
        time.sleep(0.1)
    pid = int(log.read_text().split("# pid ")[1].split()[0])
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode in INTERRUPTED, out[-2000:]
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


def test_only_a_launched_server_is_announced_as_slow_to_load(zoo):
    """Issue 30: the console said "a launched server can take minutes" while an in-process model
    loaded. Only a vLLM backend that starts its own server is a launched one."""
    from harness.backends import make_backend

    assert VLLMBackend(ModelRef(name="m", path="some/model", options={})).launched
    assert not VLLMBackend(ModelRef(name="m", path="some/model", options={"url": "http://127.0.0.1:1/v1"})).launched
    assert not make_backend("hf", ModelRef(name="p", path=str(zoo / "parent_a"), options={})).launched
