"""``vllm`` backend: a vLLM server process (:mod:`harness.backends.vllm_server`) plus the
OpenAI client (:class:`harness.backends.openai.OpenAIEndpoint`) that talks to it.

It launches the vLLM OpenAI server for one model on a free port with the suite's engine
arguments (tensor, pipeline and Ray parallelism are vLLM's own), waits for ``/health``, writes
the server log to ``RUN_DIR/servers/``, quotes the log's tail when the server crashes at start
or mid-run, and stops it on ``close()`` (the runner calls it in a ``finally``, so Ctrl-C too);
or it attaches to a running server with ``url``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import Field

from harness.backends.base import ModelRef
from harness.backends.openai import ApiBackend, ApiOptions, OpenAIEndpoint, check_key_env
from harness.backends.vllm_server import VLLMServer, free_port, resolve_launcher
from harness.errors import BackendError, PartialBatch
from harness.provenance import content_signature

T = TypeVar("T")


class VLLMOptions(ApiOptions):
    url: str | None = Field(None, description="Attach to a running vLLM server (its /v1 root) instead of launching.")
    python: str | None = Field(None, description="A Python interpreter with vLLM installed (default: $PARENTAGE_VLLM).")
    command: list[str] | None = Field(
        None, description="The launcher; the model and engine arguments are appended (e.g. [vllm, serve])."
    )
    host: str = Field("127.0.0.1", description="Address a launched server listens on.")
    port: int | None = Field(None, ge=1, le=65535, description="Default: a free port.")
    served_model_name: str | None = Field(
        None,
        description="The name the model is served under. Default: the suite's model name when launched, "
        "`path` when attached.",
    )
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM's --tensor-parallel-size: GPUs one layer spans.")
    pipeline_parallel_size: int = Field(1, ge=1, description="vLLM's --pipeline-parallel-size: stages of layers.")
    distributed_executor_backend: Literal["mp", "ray"] | None = Field(
        None, description="vLLM's --distributed-executor-backend: 'ray' to span machines (a Ray cluster)."
    )
    max_model_len: int | None = Field(None, ge=16, description="vLLM's --max-model-len (default: the model's).")
    max_logprobs: int = Field(20, ge=-1, description="-1: full vocabulary, where the vLLM version supports it.")
    dtype: str = Field("auto", description="vLLM's --dtype.")
    gpu_memory_utilization: float | None = Field(
        0.9, gt=0, le=1, description="Fraction of GPU memory for vLLM; null omits the flag (CPU builds)."
    )
    trust_remote_code: bool = Field(False, description="Run the repository's own Python code (trusted sources only).")
    extra_args: list[str] = Field(default_factory=list, description="Passed to the server verbatim.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment for the server process.")
    startup_timeout_s: float = Field(1800.0, gt=0, description="Wait this long for /health (big models load slowly).")
    log_dir: str | None = Field(None, description="Where the server log goes; the runner sets the run directory.")
    sampling_extra: dict[str, Any] = Field(
        default_factory=lambda: {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0},
        description="Fields added to every sampled chat request. vLLM takes sampling defaults from the model's "
        "generation_config.json (Qwen3's: top_k 20) wherever a request leaves them out; these defaults sample "
        "from the model's whole distribution. Part of the cache key.",
    )


def engine_args(spec: ModelRef, opts: VLLMOptions, port: int) -> list[str]:
    """Everything after the model: the same for every launcher."""
    args = ["--host", opts.host, "--port", str(port), "--served-model-name", opts.served_model_name or spec.name]
    args += ["--tensor-parallel-size", str(opts.tensor_parallel_size)]
    args += ["--pipeline-parallel-size", str(opts.pipeline_parallel_size)]
    if opts.distributed_executor_backend:
        args += ["--distributed-executor-backend", opts.distributed_executor_backend]
    if opts.max_model_len:
        args += ["--max-model-len", str(opts.max_model_len)]
    args += ["--max-logprobs", str(opts.max_logprobs), "--dtype", opts.dtype]
    if opts.gpu_memory_utilization is not None:
        args += ["--gpu-memory-utilization", str(opts.gpu_memory_utilization)]
    if opts.trust_remote_code:
        args.append("--trust-remote-code")
    return args + list(opts.extra_args)


def serve_command(spec: ModelRef, opts: VLLMOptions, port: int, launcher: list[str] | None = None) -> list[str]:
    """The exact command line for a model (tested against the shipped configs)."""
    return [*(launcher or ["vllm", "serve"]), spec.path or "", *engine_args(spec, opts, port)]


class VLLMBackend(ApiBackend):
    name: ClassVar[str] = "vllm"
    description: ClassVar[str] = "vLLM: launches its OpenAI server (tensor/pipeline/Ray parallel) or attaches by URL"
    Options = VLLMOptions
    options: VLLMOptions
    local_path: ClassVar[Literal["always", "if_exists", "never"]] = "if_exists"  # a directory or a hub id

    @classmethod
    def check_spec(cls, spec: ModelRef) -> None:
        opts = VLLMOptions.model_validate(spec.options)
        if not spec.path and not opts.url:
            raise ValueError("the vllm backend needs `path` (a model id or directory to serve) or options.url")
        check_key_env(opts)
        if opts.url is None:  # pre-flight: a suite that must launch vLLM fails now, not after other models ran
            try:
                resolve_launcher(opts.command, opts.python)
            except BackendError as e:
                raise ValueError(str(e)) from e

    def __init__(self, spec: ModelRef):
        super().__init__(spec)
        self.server: VLLMServer | None = None
        self.launcher_source: str | None = None

    @property
    def launched(self) -> bool:
        return self.options.url is None

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> None:
        """Launch (or attach), connect and discover. On failure nothing is left running: the
        runner does not call ``close()`` for a model that never loaded."""
        o = self.options
        alive = None
        try:
            if self.launched:
                server = self._launch()
                base_url, model = server.base_url, o.served_model_name or self.spec.name
                alive = lambda: not server.died()  # noqa: E731 (fail at once, not after retries, when it dies)
            else:
                base_url, model = o.url or "", o.served_model_name or self.spec.path or self.spec.name
            self.api = OpenAIEndpoint(self.spec.name, base_url, model, o, alive=alive)
            self.api.connect()
        except BackendError as e:
            error = self._translate(e)
            self.close()
            raise error from e
        except BaseException:  # Ctrl-C or SIGTERM while the server starts: it must not outlive the run
            self.close()
            raise

    def _launch(self) -> VLLMServer:
        o = self.options
        launcher, self.launcher_source = resolve_launcher(o.command, o.python)
        port = o.port or free_port(o.host)
        if o.log_dir:
            log_dir = Path(o.log_dir)
        elif self.run_dir is not None:
            log_dir = self.run_dir / "servers"
        else:
            log_dir = Path(tempfile.mkdtemp(prefix="parentage-vllm-"))
        command = serve_command(self.spec, o, port, launcher)
        server = VLLMServer(self.spec.name, command, o.host, port, log_dir / f"vllm-{self.spec.name}.log", o.env)
        self.server = server
        server.start(o.startup_timeout_s)
        return server

    def close(self) -> None:
        super().close()
        if self.server is not None:
            self.server.stop()

    def _translate(self, e: BackendError) -> BackendError:
        """A failure after the server died is the server's death, told with its log."""
        if self.server is not None and self.server.died():
            return BackendError(self.server.crash_message("died mid-run"))
        return e

    def _call(self, fn: Callable[[list[Any]], list[T]], requests: list[Any]) -> list[T]:
        try:
            return fn(requests)
        except PartialBatch as e:
            raise PartialBatch(e.done, self._translate(e.cause)) from e
        except BackendError as e:
            raise self._translate(e) from e

    def fingerprint(self) -> dict[str, Any]:
        fp = {"backend": self.name, **self.endpoint.fingerprint(), "launched": self.launched}
        if self.server is not None:
            fp |= {
                "command": self.server.command,
                "launcher": self.launcher_source,
                "server_log": str(self.server.log_path),
            }
            # The port changes between runs; the served model, its files and the engine arguments
            # do not. The files' content is in the key: a model rebuilt at the same path must not
            # be answered from the cache of the one before.
            local = Path(self.spec.path) if self.spec.path and Path(self.spec.path).exists() else None
            fp["files_signature"] = content_signature(local) if local else None
            engine = " ".join([self.spec.path or "", *engine_args(self.spec, self.options, port=0)])
            files = json.dumps(fp["files_signature"], sort_keys=True)
            fp["key"] = hashlib.sha256(f"{engine}\n{self.endpoint.served_identity()}\n{files}".encode()).hexdigest()
        return fp
