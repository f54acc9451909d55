"""Persistent response cache (SQLite): what makes an interrupted run resumable.

The key is a hash of (model fingerprint key, probe id, probe version, canonical request), so
a different model, a changed probe or a changed request never hits a stale entry, and a model
that moved on disk still does. Each answer is committed as soon as it arrives; a killed
process loses at most the batch in flight. Writes are SQLite transactions, hence atomic.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from harness.backends.base import RESULT_TYPES, Request, Result
from harness.errors import InputError, StorageError

# ------------------------------------------------ results <-> stored rows (JSON meta + npz arrays)


def result_to_payload(result: Result) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Split a result into JSON metadata (with its kind) and numpy arrays for the cache."""
    meta, arrays = result.to_payload()
    return {"type": result.kind, **meta}, arrays


def payload_to_result(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Result:
    fields = {k: v for k, v in meta.items() if k != "type"}
    return RESULT_TYPES[meta["type"]].from_payload(fields, arrays)


def encode_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)
    return buf.getvalue()


def decode_arrays(blob: bytes) -> dict[str, np.ndarray]:
    if not blob:
        return {}
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def default_cache_dir() -> Path:
    return Path(os.environ.get("PARENTAGE_CACHE", Path.home() / ".cache" / "parentage"))


def cache_key(model_key: str, probe_id: str, probe_version: str, request: Request) -> str:
    blob = json.dumps([model_key, probe_id, probe_version, request.canonical()], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class Cache:
    """Key -> (JSON metadata, numpy arrays). Counts hits and writes so runs can report them."""

    def __init__(self, directory: Path, create: bool = True):
        """``create=False`` (analysis) opens an existing cache only: a missing one is an error
        that says where it was looked for, never a new empty cache that reads as "no answers"."""
        self.path = Path(directory) / "responses.sqlite"
        if not create and not self.path.exists():
            raise InputError(
                f"response cache not found at {self.path}: the run's answers live there; if it moved, "
                "point at it with --cache DIR"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model_key TEXT, probe TEXT, "
                "meta TEXT NOT NULL, arrays BLOB, created TEXT DEFAULT CURRENT_TIMESTAMP)"
            )
            self.db.commit()
        except (OSError, sqlite3.Error) as e:
            raise StorageError(f"cannot open cache {self.path}: {e}") from e
        self.hits = 0
        self.writes = 0

    def get(self, key: str) -> Result | None:
        row = self.db.execute("SELECT meta, arrays FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        self.hits += 1
        return payload_to_result(json.loads(row[0]), decode_arrays(row[1]))

    def contains(self, keys: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT key FROM responses WHERE key IN ({','.join('?' * len(chunk))})"
            found.update(r[0] for r in self.db.execute(q, chunk))
        return found

    def put(self, key: str, result: Result, model_key: str = "", probe: str = "") -> None:
        meta, arrays = result_to_payload(result)
        try:
            with self.db:
                self.db.execute(
                    "INSERT OR REPLACE INTO responses (key, model_key, probe, meta, arrays) VALUES (?, ?, ?, ?, ?)",
                    (key, model_key, probe, json.dumps(meta, default=_json_default), encode_arrays(arrays)),
                )
        except sqlite3.OperationalError as e:
            raise StorageError(
                f"cannot write to cache {self.path}: {e}. Everything answered before this point is kept; "
                "free space (or set cache_dir / $PARENTAGE_CACHE) and run again to resume."
            ) from e
        self.writes += 1

    def close(self) -> None:
        self.db.close()


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
