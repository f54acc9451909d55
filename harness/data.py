"""Probe data: the texts or questions a probe asks about, loaded through `datasets`.

Probes ship their default data under ``probes/<probe>/data/``; a suite can override it with inline
lists, a local JSONL/JSON/CSV/parquet file, or (for users who are online) a hub dataset.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import InputError

if TYPE_CHECKING:  # the schema type only: harness.config itself calls into this module
    from harness.suite import DataSource

FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class Item:
    """One unit of probe data. ``id`` is the clustering unit for bootstrap resampling."""

    id: str
    text: str
    group: str = ""


def _from_dataset(ds, text_field: str, id_field: str | None, where: str, group_field: str = "group") -> list[Item]:
    if text_field not in ds.column_names:
        raise InputError(f"{where}: no column '{text_field}' (columns: {', '.join(ds.column_names)})")
    if id_field is not None and id_field not in ds.column_names:
        raise InputError(f"{where}: no column '{id_field}' (columns: {', '.join(ds.column_names)})")
    ids = ds[id_field] if id_field else [f"{i:05d}" for i in range(len(ds))]
    groups = ds[group_field] if group_field in ds.column_names else [""] * len(ds)
    items = [Item(str(i), str(t), str(g or "")) for i, t, g in zip(ids, ds[text_field], groups)]
    if len({it.id for it in items}) != len(items):
        raise InputError(f"{where}: ids in column '{id_field}' are not unique")
    return items


def check_data_file(path: Path, text_field: str = "text") -> None:
    """Fast checks that name the line: run at validation, before any model is loaded, because
    `datasets` reports a malformed JSONL line without its number and only at run time."""
    suffix = path.suffix.lower()
    if suffix not in FILE_BUILDERS:
        raise InputError(f"{path}: unsupported data file type '{path.suffix}' (use {', '.join(FILE_BUILDERS)})")
    if suffix == ".jsonl":
        rows = 0
        with path.open(encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(f"{path}:{n}: not valid JSON ({e.msg}, column {e.colno})") from None
                if not isinstance(row, dict):
                    raise InputError(f"{path}:{n}: each line must be a JSON object")
                if text_field not in row:
                    raise InputError(f"{path}:{n}: no '{text_field}' field (fields: {', '.join(row) or 'none'})")
                rows += 1
        if rows == 0:
            raise InputError(f"{path}: empty data file")
    elif suffix == ".csv":
        with path.open(encoding="utf-8", errors="replace", newline="") as f:
            header = next(csv.reader(f), None)
        if not header:
            raise InputError(f"{path}: empty data file")
        if text_field not in header:
            raise InputError(f"{path}:1: no column '{text_field}' (columns: {', '.join(header)})")


def load_file(
    path: Path, text_field: str = "text", id_field: str | None = "id", group_field: str = "group"
) -> list[Item]:
    """Read a local table with `datasets` (JSONL, JSON, CSV or parquet)."""
    from datasets import load_dataset

    check_data_file(path, text_field)
    builder = FILE_BUILDERS[path.suffix.lower()]
    try:
        ds = load_dataset(builder, data_files=str(path), split="train")
    except Exception as e:  # datasets wraps parse errors in several types
        raise InputError(f"{path}: cannot read data file: {type(e).__name__}: {e}") from e
    if id_field is not None and id_field not in ds.column_names:
        id_field = None
    return _from_dataset(ds, text_field, id_field, str(path), group_field)


def balanced_head(items: list[Item], n: int | None) -> list[Item]:
    """The first ``n`` items taken round-robin across groups, so a small subset still mixes prose,
    code, languages... in the proportions of the whole (and stays a prefix when ``n`` grows).
    ``n=None`` returns every item in that interleaved order."""
    groups: dict[str, list[Item]] = {}
    for it in items:
        groups.setdefault(it.group, []).append(it)
    order: list[Item] = []
    for i in range(max((len(g) for g in groups.values()), default=0)):
        order += [g[i] for g in groups.values() if i < len(g)]
    return order[:n]


def load_items(source: DataSource | None, default: Path) -> list[Item]:
    """Items from the suite's data source, or the probe's shipped default file."""
    if source is None:
        items = load_file(default)
    elif source.inline is not None:
        items = [Item(f"{i:05d}", t) for i, t in enumerate(source.inline)]
    elif source.file is not None:
        items = load_file(Path(source.file), source.field, source.id_field)
    else:
        from datasets import load_dataset

        try:
            ds = load_dataset(source.hub, split=source.split)
        except Exception as e:
            raise InputError(f"data.hub '{source.hub}': cannot load: {type(e).__name__}: {e}") from e
        items = _from_dataset(ds, source.field, source.id_field, f"hub:{source.hub}")
    if source is not None and source.limit:
        items = items[: source.limit]
    if not items:
        raise InputError(f"probe data is empty ({source or default})")
    return items
