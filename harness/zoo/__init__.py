"""The calibration zoo: model families of known lineage, built on the CPU."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def reusable_manifest(out: Path, config: dict[str, Any], fmt: int, log: Callable[[str], None]) -> dict | None:
    """The manifest of a complete zoo already built at ``out`` with the same config and format
    (builds are deterministic, so it is reused), else None."""
    manifest_path = Path(out) / "zoo.json"
    if not manifest_path.exists():
        return None
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("config") == config and manifest.get("format") == fmt:
        log(f"zoo already built at {out} (use --force to rebuild)")
        return manifest
    return None
