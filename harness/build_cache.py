"""A content-addressed store of what a clean clone rebuilds identically every time.

The calibration zoos and the prepared assets take most of a cold ``make test``'s set-up (the
zoos alone about twenty minutes on two cores), and a second clone on the same machine would
build exactly the same files again. So each build is kept once, outside the clone, under
``$PARENTAGE_BUILD_CACHE`` (default ``~/.cache/parentage-builds``; ``off`` disables it), in a
folder named by a key over everything the build depends on: the builder's source code, its
configuration and the versions of the libraries that compute it. A changed builder, seed or
torch gives another key, so a stale build is never reused.

Every entry has a manifest of its files' SHA-256; a restore checks each file against it first,
and an entry that fails the check is deleted and built again. Files are hard-linked where the
store and the clone share a file system (no copy, no extra disk), copied otherwise. A fresh
machine builds everything with the same commands as before and fills the store as it goes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from harness.provenance import sha256_file

MANIFEST = "BUILD_MANIFEST.json"
# Text files in which a build writes its own location (mergekit recipes and model cards name
# the parents by absolute path): rewritten to the new location when restored.
TEXT_SUFFIXES = (".md", ".yml", ".yaml")


def root() -> Path | None:
    """The store, or None when ``PARENTAGE_BUILD_CACHE`` is ``off`` (or empty)."""
    value = os.environ.get("PARENTAGE_BUILD_CACHE", str(Path.home() / ".cache" / "parentage-builds"))
    return None if value.strip().lower() in ("", "off", "0", "none") else Path(value).expanduser()


def versions(*packages: str) -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for p in packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "absent"
    return out


def key(sources: list[Path], inputs: dict) -> str:
    """SHA-256 (24 hex digits) over the bytes of every source file (folders: every file in them,
    by relative path) and the JSON of ``inputs`` (configuration, versions, input hashes)."""
    h = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode())
    for src in sources:
        files = (
            sorted(p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts) if src.is_dir() else [src]
        )
        for f in files:
            h.update(str(f.relative_to(src.parent)).encode())
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:24]


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed: copy
        shutil.copy2(src, dst)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def entry(kind: str, k: str) -> Path | None:
    r = root()
    return None if r is None else r / f"{kind}-{k}"


def restore(kind: str, k: str, dest: Path, log: Callable[[str], None] = print) -> bool:
    """Put the stored build ``kind``/``k`` at ``dest`` (which must not exist yet) after checking
    every file's hash; False when there is none, or it failed the check (then it is removed)."""
    src = entry(kind, k)
    if src is None or not (src / MANIFEST).is_file() or dest.exists():
        return False
    manifest = json.loads((src / MANIFEST).read_text(encoding="utf-8"))
    bad = [
        rel
        for rel, digest in manifest["files"].items()
        if not (src / rel).is_file() or sha256_file(src / rel) != digest
    ]
    if bad or len(manifest["files"]) != len(_files(src)):
        log(f"build cache: {src} fails its manifest ({len(bad)} file(s) differ); removed, building again")
        shutil.rmtree(src, ignore_errors=True)
        return False
    tmp = dest.with_name(dest.name + ".restoring")
    shutil.rmtree(tmp, ignore_errors=True)
    old, new = manifest["root"], str(dest.resolve())
    for rel in manifest["files"]:
        if rel.endswith(TEXT_SUFFIXES):
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text((src / rel).read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
        else:
            _link_or_copy(src / rel, tmp / rel)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, dest)
    log(f"build cache: {kind} restored from {src} (every file's SHA-256 checked)")
    return True


def store(kind: str, k: str, src: Path, log: Callable[[str], None] = print) -> None:
    """Keep the build at ``src`` as ``kind``/``k`` (nothing to do when it is kept already). The
    entry appears whole or not at all: written to a temporary folder, then renamed."""
    dest = entry(kind, k)
    if dest is None or (dest / MANIFEST).is_file():
        return
    try:
        tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        files = {}
        for f in _files(src):
            rel = str(f.relative_to(src))
            _link_or_copy(f, tmp / rel)
            files[rel] = sha256_file(f)
        (tmp / MANIFEST).write_text(
            json.dumps({"root": str(src.resolve()), "files": files}, indent=1), encoding="utf-8"
        )
        try:
            os.replace(tmp, dest)
        except OSError:  # another clone stored the same build meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
        log(f"build cache: {kind} kept at {dest}")
    except OSError as e:  # a full or read-only store never fails the build itself
        log(f"build cache: could not keep {kind} ({e}); the build at {src} is unaffected")
