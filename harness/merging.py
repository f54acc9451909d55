"""Merges built with mergekit, in process (the same code path as ``mergekit-yaml``).

The calibration zoos build their merges here, and the rebuild probe builds the merges a suspect
may be: one place that knows how mergekit is called, so a recipe in a report is exactly what ran.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from harness.errors import InputError


def mergekit_available() -> bool:
    """Whether mergekit can be imported (the ``rebuild`` extra: ``pip install 'parentage[rebuild]'``)."""
    try:
        import mergekit.merge  # noqa: F401
    except ImportError:
        return False
    return True


def recipe_key(recipe: dict[str, Any], inputs: dict[str, str]) -> str:
    """A merge's identity: its recipe and the content hashes of its input models (so a changed
    parent is a new merge, and a renamed folder is not)."""
    text = json.dumps({"recipe": recipe, "inputs": inputs}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_mergekit(recipe: dict[str, Any], out: Path, seed: int = 0) -> Path:
    """Write the merge ``recipe`` (a mergekit configuration as a dict) to ``out``, atomically: a
    half-written merge from a killed run is never mistaken for a finished one."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge
    from pydantic import ValidationError

    try:
        config = MergeConfiguration.model_validate(recipe)
    except ValidationError as e:
        raise InputError(f"mergekit recipe for {out.name}: {e}") from None
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    run_merge(config, str(tmp), MergeOptions(copy_tokenizer=True, random_seed=seed, quiet=True, write_model_card=True))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
