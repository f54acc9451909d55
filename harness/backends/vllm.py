"""``vllm`` backend: launch ``vllm serve MODEL`` (or attach to a running server) and talk to it
through the ``openai`` backend's client.

Big models outgrow one GPU; vLLM's own tensor, pipeline and Ray parallelism handle that, so
this backend only builds the ``vllm serve`` command line from the suite's engine arguments,
waits for ``/health``, streams the server log to the run directory, reports the log's tail if
the server crashes, and shuts it down cleanly (also on Ctrl-C: the server runs in its own
process group and ``close()`` is called from the runner's ``finally``). Nothing of vLLM is
imported here: the ``vllm`` executable comes with the ``[vllm]`` extra on a GPU machine.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field

from harness.backends.openai import OpenAIBackend, OpenAIOptions
from harness.config import ModelSpec
from harness.errors import BackendError

MISSING = (
    "the `vllm` executable was not found: install the extra on a GPU machine (pip install 'parentage[vllm]'), "
    "set options.executable, or attach to a running server with options.url"
)


class VLLMOptions(OpenAIOptions):
    base_url: str | None = Field(None, description="Not used: see `url` (attach) or the launched server.")
    url: str | None = Field(None, description="Attach to a running vLLM server (its /v1 root) instead of launching.")
    executable: str = Field("vllm", description="The vllm command (tests point it at a stand-in script).")
    host: str = "127.0.0.1"
    port: int | None = Field(None, ge=1, le=65535, description="Default: a free port.")
    served_model_name: str | None = Field(None, description="Default: the suite's model name.")
    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    distributed_executor_backend: Literal["mp", "ray"] | None = None
    max_model_len: int | None = Field(None, ge=16)
    max_logprobs: int = Field(20, ge=-1, description="-1: full vocabulary, where the vLLM version supports it.")
    dtype: str = "auto"
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    trust_remote_code: bool = False
    extra_args: list[str] = Field(default_factory=list, description="Passed to `vllm serve` verbatim.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment for the server process.")
    startup_timeout_s: float = Field(1800.0, gt=0, description="Wait this long for /health (big models load slowly).")
    log_dir: str | None = Field(None, description="Where the server log goes; the runner sets the run directory.")


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def serve_command(spec: ModelSpec, opts: VLLMOptions, port: int) -> list[str]:
    """The exact ``vllm serve`` command line for a model (tested against the shipped configs)."""
    cmd = [opts.executable, "serve", spec.path or ""]
    cmd += ["--host", opts.host, "--port", str(port), "--served-model-name", opts.served_model_name or spec.name]
    cmd += ["--tensor-parallel-size", str(opts.tensor_parallel_size)]
    cmd += ["--pipeline-parallel-size", str(opts.pipeline_parallel_size)]
    if opts.distributed_executor_backend:
        cmd += ["--distributed-executor-backend", opts.distributed_executor_backend]
    if opts.max_model_len:
        cmd += ["--max-model-len", str(opts.max_model_len)]
    cmd += ["--max-logprobs", str(opts.max_logprobs), "--dtype", opts.dtype]
    cmd += ["--gpu-memory-utilization", str(opts.gpu_memory_utilization)]
    if opts.trust_remote_code:
        cmd.append("--trust-remote-code")
    return cmd + list(opts.extra_args)


class VLLMBackend(OpenAIBackend):
    name: ClassVar[str] = "vllm"
    description: ClassVar[str] = "vLLM on GPU: launches `vllm serve` (tensor/pipeline/Ray parallel) or attaches by URL"
    Options = VLLMOptions  # type: ignore[assignment]
    options: VLLMOptions  # type: ignore[assignment]

    @classmethod
    def check_spec(cls, spec: ModelSpec) -> None:
        opts = VLLMOptions.model_validate(spec.options)
        if not spec.path and not opts.url:
            raise ValueError("the vllm backend needs `path` (a model id or directory to serve) or options.url")

    def __init__(self, spec: ModelSpec):
        opts = VLLMOptions.model_validate(spec.options)
        launched = opts.url is None
        # The openai client talks to the launched server under the served name.
        if launched:
            spec = spec.model_copy(update={"options": spec.options | {"model": opts.served_model_name or spec.name}})
        super().__init__(spec)
        self.launched = launched
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.command: list[str] = []
        if opts.url:
            self.base_url = opts.url.rstrip("/")

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> None:
        if self.launched:
            self._launch()
        super().load()

    def _launch(self) -> None:
        o = self.options
        if shutil.which(o.executable) is None:
            raise BackendError(f"model '{self.spec.name}': {MISSING}")
        port = o.port or _free_port(o.host)
        self.command = serve_command(self.spec, o, port)
        self.base_url = f"http://{o.host}:{port}/v1"
        if o.log_dir:
            log_dir = Path(o.log_dir)
        elif self.run_dir is not None:
            log_dir = self.run_dir / "servers"
        else:
            log_dir = Path(tempfile.mkdtemp(prefix="parentage-vllm-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"vllm-{self.spec.name}.log"
        with self.log_path.open("ab") as log:
            log.write(("$ " + " ".join(self.command) + "\n").encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=os.environ | o.env,
                start_new_session=True,  # Ctrl-C reaches us, not the server; close() stops it
            )
        self._wait_healthy(f"http://{o.host}:{port}/health")

    def _wait_healthy(self, url: str) -> None:
        deadline = time.monotonic() + self.options.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BackendError(self._crash_message("exited during start-up"))
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.close()
        raise BackendError(
            f"model '{self.spec.name}': vLLM server not healthy after {self.options.startup_timeout_s:.0f}s; "
            f"log: {self.log_path}\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _crash_message(self, what: str) -> str:
        code = self.proc.returncode if self.proc is not None else None
        return (
            f"model '{self.spec.name}': the vLLM server {what} (exit code {code}); log: {self.log_path}\n"
            f"--- last lines ---\n{self._log_tail()}"
        )

    def _run_partial(self, path: str, bodies: list[dict]) -> tuple[dict[int, dict], BackendError | None]:
        done, cause = super()._run_partial(path, bodies)
        if cause is not None and self.proc is not None and self.proc.poll() is not None:
            cause = BackendError(self._crash_message("died mid-run"))
        return done, cause

    def close(self) -> None:
        """SIGTERM to the server's process group, SIGKILL after 30 s. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        except ProcessLookupError:
            pass

    def fingerprint(self) -> dict[str, Any]:
        fp = super().fingerprint()
        fp |= {
            "backend": self.name,
            "launched": self.launched,
            "command": self.command,
            "server_log": str(self.log_path),
        }
        if self.launched:  # the port changes between runs; the served model and engine arguments do not
            engine = " ".join(serve_command(self.spec, self.options, port=0)[1:])
            fp["key"] = hashlib.sha256(f"{engine}\n{fp['server_model']}".encode()).hexdigest()
        return fp
