"""What a reader needs to reproduce a run: package versions, git hash, platform."""

from __future__ import annotations

import filecmp
import hashlib
import platform
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
    """Content hash of a (possibly multi-GB) file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


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
    for x, y in zip(fa, fb):
        size = x.stat().st_size
        with x.open("rb") as f, y.open("rb") as g:
            for i in range(SAMPLED_BLOCKS):
                offset = size * i // SAMPLED_BLOCKS
                f.seek(offset)
                g.seek(offset)
                if f.read(1 << 16) != g.read(1 << 16):
                    return False
    return all(filecmp.cmp(x, y, shallow=False) for x, y in zip(fa, fb))
