"""Probe registry. Adding a probe: one module in this package, plus one line here.

Entries are import strings so that listing or validating does not import every probe's
dependencies.
"""

from __future__ import annotations

import importlib

PROBES: dict[str, str] = {
    "logit_interpolation": "probes.logit_interpolation:LogitInterpolationProbe",
    "identity": "probes.identity:IdentityProbe",
    "tokenizer": "probes.tokenizer:TokenizerProbe",
}


def probe_class(kind: str):
    """Import and return the probe class registered as ``kind``."""
    module, _, attr = PROBES[kind].partition(":")
    return getattr(importlib.import_module(module), attr)
