"""What a reader needs to reproduce a run: package versions, git hash, platform."""

from __future__ import annotations

import filecmp
import hashlib
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")
SAMPLED_BLOCKS = 64  # blocks of 64 KiB compared per file before a byte-for-byte comparison

PACKAGES = (
    "parentage",
    "torch",
    "transformers",
    "tokenizers",
    "datasets",
    "numpy",
    "scipy",
    "pydantic",
    "httpx",
    "safetensors",
    "mergekit",
    "vllm",
)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state(directory: Path | None = None) -> dict[str, str | bool | None]:
    """Commit of the parentage checkout (if it is one) and whether it had uncommitted changes."""
    directory = directory or Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(dirty) if dirty is not None else None}


def environment() -> dict[str, object]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "git": git_state(),
        "argv": sys.argv,
    }


def sha256_file(path: Path) -> str:
    """Content hash of a (possibly multi-GB) file, read in 4 MiB chunks. A file of a Hub cache
    snapshot stored as an LFS blob is named by its sha256 (``blobs/<sha256>``): that name is the
    hash, so a 397B model pinned by Hub id is not read in full on every run."""
    target = path.resolve()
    if target.parent.name == "blobs" and re.fullmatch(r"[0-9a-f]{64}", target.name):
        return target.name
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def sampled_digest(path: Path) -> str:
    """sha256 of a file's size and of 64 KiB blocks at ``SAMPLED_BLOCKS`` evenly spread offsets.

    A content signature that costs 4 MiB of reading whatever the file's size: two different
    trainings of one architecture differ in nearly every block, while hashing a 397B checkpoint
    in full would read it all on every run."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        for i in range(SAMPLED_BLOCKS):
            f.seek(size * i // SAMPLED_BLOCKS)
            h.update(f.read(1 << 16))
    return h.hexdigest()


def content_signature(path: Path) -> dict[str, str]:
    """{file name: sampled digest} for a model file or every file of a model directory (weights,
    config, tokenizer, chat template; files under 4 MiB are covered in full). Part of the cache key
    of a server launched on local files, so a model rebuilt at the same path is never answered
    from the previous model's cache."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    return {p.name: sampled_digest(p) for p in files}


def weight_files(path: Path) -> list[Path]:
    """The weight files of a model path: the file itself, or a directory's weight files by name."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def same_weight_files(a: Path, b: Path) -> bool:
    """True when two model paths hold byte-identical weight files (same names, sizes and bytes).

    Cheap where it matters: different models of one architecture have the same file sizes, so
    64 blocks spread over each file are compared first (a different model differs in nearly all
    of them); only identical-looking files are compared byte for byte, which stops at the first
    difference. A copy of a model is thus found before any model is loaded, at the price of one
    read of it; weights re-sharded differently are left to the analysis's noise-floor check.
    """
    fa, fb = weight_files(a), weight_files(b)
    if not fa or len(fa) != len(fb) or any(x.stat().st_size != y.stat().st_size for x, y in zip(fa, fb)):
        return False
    if a.is_dir() and [p.name for p in fa] != [p.name for p in fb]:  # two single files may be named anything
        return False
    if any(sampled_digest(x) != sampled_digest(y) for x, y in zip(fa, fb)):
        return False
    return all(filecmp.cmp(x, y, shallow=False) for x, y in zip(fa, fb))
