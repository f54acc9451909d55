"""A Hugging Face Hub cache laid out on disk from local model directories, with no network.

The layout is the one ``huggingface_hub`` writes and reads (``models--org--name/blobs``,
``snapshots/<commit>/<file>`` as relative symlinks to the blobs, ``refs/<branch>`` holding the
commit), so the code under test resolves ids with huggingface_hub's own code. Blobs are named
as the Hub names them: LFS files (weights) by their sha256, other files by their git blob sha1.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf")


def _blob_name(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix in LFS_SUFFIXES:
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lay_out(cache: Path, repo_id: str, source: Path, revision: str = "main", skip: tuple[str, ...] = ()) -> str:
    """Put the files of ``source`` into ``cache`` as commit ``<hash>`` of ``repo_id``, with
    ``refs/<revision>`` pointing at it. Returns the commit (a sha1 of the files' blob names)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    files = sorted(p for p in source.iterdir() if p.is_file() and p.name not in skip)
    names = {p.name: _blob_name(p) for p in files}
    commit = hashlib.sha1("".join(f"{k}:{v}\n" for k, v in names.items()).encode()).hexdigest()
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for p in files:
        blob = repo / "blobs" / names[p.name]
        if not blob.exists():
            shutil.copyfile(p, blob)
        link = snapshot / p.name
        if not link.exists():
            link.symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return commit
