"""Probe registry. Adding a probe: one folder in this package (see ARCHITECTURE.md), plus one line here.

Entries are import strings so that listing or validating does not import every probe's
dependencies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotation only: importing probes.base here would load the harness core
    from probes.base import Probe

PROBES: dict[str, str] = {
    "logit_interpolation": "probes.logit.probe:LogitInterpolationProbe",
    "identity": "probes.identity.probe:IdentityProbe",
    "tokenizer": "probes.tokenizer.probe:TokenizerProbe",
    "weights": "probes.weights.probe:WeightsProbe",
    "text_interpolation": "probes.text.probe:TextInterpolationProbe",
    "rebuild": "probes.rebuild.probe:RebuildProbe",
}


def probe_class(kind: str) -> type[Probe]:
    """Import and return the probe class registered as ``kind``."""
    module, _, attr = PROBES[kind].partition(":")
    return getattr(importlib.import_module(module), attr)
