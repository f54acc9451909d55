"""The run directory: ``results/<run-id>/``.

* ``run.jsonl``: append-only typed events (``harness/events.py``: run_start with the resolved
  config and provenance, model fingerprints, per-probe collection counts, analysis results,
  run_end). Every line is flushed and fsynced, so a killed run leaves a readable log.
* ``raw/<model>.jsonl``: one line per answered request (probe, cache key, bookkeeping, summary).
  Bulk arrays (log-prob matrices) live in the response cache named in run_start.
* ``evidence.json``, ``report.md``, ``figures/``: written by ``analyze`` and ``report``.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from harness.errors import InputError, StorageError
from harness.events import EVENT_ADAPTER, RUN_LOG_VERSION, Event, EventBase, Repaired, RunStart

E = TypeVar("E", bound=EventBase)
# Where a line cut by a kill is kept, next to the file it was cut from.
TORN_SUFFIX = ".torn"
# A run id is a plain folder name, so a run directory is never outside output_dir.
RUN_ID = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*")


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return True


def repair_tail(path: Path) -> int:
    """If ``path`` does not end with a newline (a write was cut), move the fragment after the
    last newline to ``path.torn`` and truncate; a fragment that is whole JSON only lacks its
    newline and gets it. Returns the number of bytes moved aside (0: nothing lost)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with path.open("rb+") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        cut, block = size, 1 << 16
        while cut > 0:  # find the last newline, reading backwards
            start = max(0, cut - block)
            f.seek(start)
            i = f.read(cut - start).rfind(b"\n")
            if i >= 0:
                cut = start + i + 1
                break
            cut = start
        f.seek(cut)
        fragment = f.read()
        if _is_json(fragment):  # cut exactly before its newline: the line is whole, complete it
            f.seek(size)
            f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())
            return 0
        with open(str(path) + TORN_SUFFIX, "ab") as t:
            t.write(fragment + b"\n")
            t.flush()
            os.fsync(t.fileno())
        f.truncate(cut)
        f.flush()
        os.fsync(f.fileno())
    return len(fragment)


class RunStore:
    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.log_path = self.dir / "run.jsonl"
        self.raw_dir = self.dir / "raw"

    @classmethod
    def create(cls, output_dir: Path, suite_name: str, run_id: str | None = None) -> RunStore:
        run_id = run_id or f"{suite_name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if not RUN_ID.fullmatch(run_id):
            raise InputError(
                f"--run-id {run_id!r}: use letters, digits, '_', '-' and '.', not starting with '.' "
                "(a run directory is always inside output_dir)"
            )
        store = cls(Path(output_dir) / run_id)
        try:
            store.raw_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"cannot create run directory {store.dir}: {e}") from e
        return store

    @classmethod
    def open(cls, directory: Path) -> RunStore:
        store = cls(Path(directory))
        if not store.log_path.exists():
            raise InputError(f"{directory}: not a run directory (no run.jsonl)")
        return store

    @property
    def run_id(self) -> str:
        return self.dir.name

    def _append(self, path: Path, obj: dict[str, Any]) -> None:
        """Append one JSON line, always starting on a fresh line: a tail cut by a kill is first
        moved aside (``PATH.torn``) and a ``repaired`` event is logged, so the next line is never
        glued onto half a line."""
        line = json.dumps(obj, ensure_ascii=False, default=str) + "\n"
        try:
            torn = repair_tail(path)
            with path.open("a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise StorageError(f"cannot append to {path}: {e}") from e
        if torn:
            self.event(Repaired(file=str(path), torn_bytes=torn, kept_in=str(path) + TORN_SUFFIX))

    def event(self, event: Event) -> None:
        self._append(self.log_path, event.model_dump(mode="json"))

    def append_raw(self, model: str, record: dict[str, Any]) -> None:
        self._append(self.raw_dir / f"{model}.jsonl", record)

    def all_events(self) -> list[Event]:
        """Every event, typed; a truncated last line (killed mid-write) is ignored, not fatal. A line
        that is not an event of this log version is an error naming the file, line and field."""
        out: list[Event] = []
        lines = self.log_path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines, 1):
            try:
                raw = json.loads(line)
            except json.JSONDecodeError:
                if i == len(lines):
                    continue
                raise InputError(f"{self.log_path}:{i}: corrupt event line") from None
            try:
                ev = EVENT_ADAPTER.validate_python(raw)
            except ValidationError as e:
                err = e.errors()[0]
                where = ".".join(str(x) for x in err["loc"])
                raise InputError(f"{self.log_path}:{i}: {where}: {err['msg']}") from None
            if isinstance(ev, RunStart) and ev.log_version != RUN_LOG_VERSION:
                raise InputError(
                    f"{self.log_path}:{i}: log_version {ev.log_version}: this parentage reads run logs of version "
                    f"{RUN_LOG_VERSION}; use the parentage version that wrote this run"
                )
            out.append(ev)
        return out

    def events(self, kind: type[E]) -> list[E]:
        """The events of one type, in order."""
        return [e for e in self.all_events() if isinstance(e, kind)]

    def start_event(self) -> RunStart:
        starts = self.events(RunStart)
        if not starts:
            raise InputError(f"{self.log_path}: no run_start event")
        return starts[-1]

    def raw_records(self, model: str) -> list[dict[str, Any]]:
        """Raw records of a model, de-duplicated by (probe instance, key) across resumed runs."""
        path = self.raw_dir / f"{model}.jsonl"
        if not path.exists():
            return []
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill; its answer is still in the cache and is re-logged on resume
            seen[(rec["probe"], rec["key"])] = rec
        return list(seen.values())

    def write_json(self, name: str, obj: Any) -> Path:
        path = self.dir / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
        tmp.replace(path)
        return path
