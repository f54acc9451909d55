"""Models named by Hub id (``path: org/name``, ``revision:`` optional), resolved to a local
snapshot and pinned to the commit it resolved to.

Every user names models by Hub id, and a report must say what was tested: a commit hash, not
"main". Resolution is ``huggingface_hub``'s own (``snapshot_download``: the ``models--org--name``
cache, ``refs/<branch>``, ``snapshots/<commit>``), so a model fetched by any Hugging Face tool is
found, ``HF_HOME`` / ``HF_HUB_CACHE`` are honoured, and ``HF_HUB_OFFLINE=1`` resolves from the
cache alone. Only the files a probe reads are fetched (:data:`PATTERNS`): configuration,
safetensors weights and their index, tokenizer files; not pickles, GGUF, ONNX or other formats
a repository may also hold.

After resolution a Hub model is a local directory like any other: backends and probes read
``ModelSpec.path`` (the snapshot) and never see the id; the pin (:class:`HubPin`) is in the
resolved suite, so it is in the run record, the report's model table, and (through the files'
content hashes) the cache keys.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import InputError

PREFIX = "hf://"
# org/name: what the Hub accepts as a model id (one slash; letters, digits, '-', '_', '.').
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
COMMIT = re.compile(r"[0-9a-f]{40}")

Need = Literal["model", "tokenizer"]
# What each use reads. A model is loaded by a backend (config, weights, tokenizer, chat template,
# generation defaults) or read by the weights probe (safetensors and the index).
TOKENIZER_PATTERNS = [
    "tokenizer*",
    "special_tokens_map.json",
    "vocab.*",
    "merges.txt",
    "*.model",
    "*.tiktoken",
    "chat_template*",
    "config.json",
]
PATTERNS: dict[str, list[str]] = {
    "model": ["*.json", "*.safetensors", "*.jinja", *(p for p in TOKENIZER_PATTERNS if not p.endswith(".json"))],
    "tokenizer": TOKENIZER_PATTERNS,
}


class HubPin(BaseModel):
    """What a Hub id resolved to: recorded in the resolved suite and shown in the report."""

    model_config = ConfigDict(extra="forbid")
    repo_id: str
    revision: str = Field(description="The revision asked for (a branch, tag or commit; 'main' by default).")
    commit: str | None = Field(description="The commit it resolved to; None until fetched (validate online).")
    files: Need = "model"


def repo_id(value: str, base: Path) -> str | None:
    """The Hub id ``value`` names, or None for a local path. ``hf://org/name`` always names one;
    ``org/name`` does when nothing of that name exists on disk (next to the suite or here)."""
    if value.startswith(PREFIX):
        rid = value.removeprefix(PREFIX).strip("/")
        return rid if REPO_ID.fullmatch(rid) else None
    if REPO_ID.fullmatch(value) and not (base / value).exists() and not Path(value).exists():
        return value
    return None


def offline() -> bool:
    """``HF_HUB_OFFLINE``, read at call time (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _cache_dir() -> str | None:
    return os.environ.get("HF_HUB_CACHE") or None


def fetch_command(pin: HubPin) -> str:
    patterns = " ".join(f"--include '{p}'" for p in PATTERNS[pin.files])
    return f"hf download {pin.repo_id} --revision {pin.revision} {patterns}"


def cached(pin: HubPin) -> Path | None:
    """The local snapshot of ``pin`` if the Hub cache holds it (no network), else None."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(
            pin.repo_id,
            revision=pin.revision,
            cache_dir=_cache_dir(),
            local_files_only=True,
            allow_patterns=PATTERNS[pin.files],
        )
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        return None
    return Path(folder)


def fetch(pin: HubPin) -> Path:
    """Download what ``pin`` needs (huggingface_hub's progress bars on the console) and return the
    snapshot. Offline, the cache alone is used."""
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            pin.repo_id,
            revision=pin.revision,
            cache_dir=_cache_dir(),
            local_files_only=offline(),
            allow_patterns=PATTERNS[pin.files],
        )
    except Exception as e:  # huggingface_hub raises many types (not found, gated, network): one line, the id named
        raise InputError(f"{pin.repo_id} @ {pin.revision}: cannot fetch from the Hub: {type(e).__name__}: {e}") from e
    return Path(folder)


def bytes_to_download(pin: HubPin) -> int | None:
    """Bytes ``fetch`` would download (huggingface_hub's dry run); 0 when cached, None when that
    cannot be known (offline and not cached)."""
    if cached(pin) is not None:
        return 0
    if offline():
        return None
    from huggingface_hub import snapshot_download

    files = snapshot_download(
        pin.repo_id, revision=pin.revision, cache_dir=_cache_dir(), allow_patterns=PATTERNS[pin.files], dry_run=True
    )
    return sum(f.file_size or 0 for f in files if not isinstance(f, str) and f.will_download)


def missing_message(value: str, pin: HubPin, base: Path) -> str:
    """Pre-flight: a model that is neither on disk nor in the Hub cache, with the way to fetch it."""
    return (
        f"'{value}' is neither a local path (no {base / value.removeprefix(PREFIX)}) nor a Hub model in the local "
        f"cache at revision '{pin.revision}' (HF_HUB_OFFLINE=1); where the network is reachable, fetch it with "
        f"`parentage fetch SUITE` or `{fetch_command(pin)}`"
    )


def check_snapshot(folder: Path, need: Need) -> str | None:
    """Why a resolved snapshot cannot serve ``need`` (None: it can): a cache filled by another
    tool with other patterns may lack the weights or the tokenizer."""
    names = {p.name for p in folder.iterdir()}
    if need == "model":
        if "config.json" not in names:
            return f"the Hub snapshot {folder} has no config.json"
        if not any(n.endswith(".safetensors") for n in names):
            return f"the Hub snapshot {folder} has no .safetensors weights (other formats are not fetched)"
    elif not any(n.startswith("tokenizer") or n.endswith((".model", ".tiktoken")) for n in names):
        return f"the Hub snapshot {folder} has no tokenizer files"
    return None
