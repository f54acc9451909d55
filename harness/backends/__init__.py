"""Backend registry. Entries are import strings so heavy libraries (torch, vllm) load only when chosen.

Adding a backend: write one module with a :class:`~harness.backends.base.Backend` subclass and
add one line here.
"""

from __future__ import annotations

import importlib

from harness.backends.base import Backend, ModelRef

BACKENDS: dict[str, str] = {
    "hf": "harness.backends.hf:HFBackend",
    "openai": "harness.backends.openai:OpenAIBackend",
    "vllm": "harness.backends.vllm:VLLMBackend",
    "fake": "harness.backends.fake:FakeBackend",
}


def backend_class(name: str) -> type[Backend]:
    """Import and return the backend class registered as ``name``."""
    module, _, attr = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def make_backend(kind: str, model: ModelRef) -> Backend:
    """A backend of the registered ``kind`` for ``model`` (not loaded yet)."""
    return backend_class(kind)(model)
