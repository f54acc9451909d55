"""Stand-in for the ``vllm`` executable in tests: ``vllm serve MODEL --host H --port P ...``
translated into a real llama.cpp server (llama-cpp-python) serving a GGUF, plus vLLM's
``/health`` route. The vllm backend's lifecycle (spawn, health wait, log capture, crash
detection, teardown, Ctrl-C) is thus exercised against a real process and a real HTTP server.
Engine arguments llama.cpp has no use for (tensor/pipeline parallel, ...) are printed to the
log, like vLLM's own argument dump, and otherwise ignored.
"""

from __future__ import annotations

import argparse
import sys


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["serve"])
    p.add_argument("model")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--served-model-name")
    p.add_argument("--max-model-len", type=int, default=2048)
    args, engine = p.parse_known_args()
    print(f"fake vllm: serving {args.model} as {args.served_model_name}; engine args {engine}", flush=True)

    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    server = ServerSettings(host=args.host, port=args.port)
    model = ModelSettings(
        model=args.model, model_alias=args.served_model_name, n_ctx=args.max_model_len, n_threads=2, verbose=False
    )
    app = create_app(server_settings=server, model_settings=[model])  # raises (exit 1) on a bad model file

    @app.get("/health")
    def health() -> dict:
        return {}

    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    sys.exit(main())
