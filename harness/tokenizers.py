"""Load tokenizers from wherever users have them, and the shipped library of real ones.

A tokenizer can be a model directory, a ``tokenizer.json`` or a GGUF file. GGUF files are
converted once by transformers into a fast ``tokenizer.json`` and cached by content hash,
because loading a GGUF tokenizer directly takes 3-35 s each time.

The *library* is the set of real tokenizers prepared by ``parentage assets fetch``: the
vocab-only GGUF files that llama.cpp ships in its source tree (gpt-2, llama-bpe, qwen2, ...)
and SmolLM2's tokenizer. ``index.json`` records each one's source hash and whether
transformers could convert it, so a missing candidate is visible rather than silently absent.
"""

from __future__ import annotations

import json
import os
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness import assets
from harness.errors import InputError
from harness.provenance import sha256_file

SMOLLM2 = "smollm2"
LIBRARY_FORMAT = 2  # bump when the conversion changes: prepared entries of another format are redone


def library_dir() -> Path:
    return assets.assets_dir() / "tokenizers"


def _convert_gguf(gguf: Path, out: Path) -> None:
    """GGUF -> fast tokenizer files in ``out`` (written to a temporary folder, then renamed)."""
    from transformers import AutoTokenizer

    tmp = out.with_name(out.name + ".part")
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as e:  # transformers raises many types for unsupported or corrupt files
        raise InputError(f"{gguf}: cannot read a tokenizer from this GGUF file: {type(e).__name__}: {e}") from e
    tok.save_pretrained(tmp)
    if not (tmp / "tokenizer.json").exists():
        raise InputError(f"{gguf}: transformers produced no fast tokenizer (tokenizer.json) for this GGUF file")
    # Load it back as a generic fast tokenizer: transformers 5's model-specific classes rebuild
    # the normalizer and pre-tokenizer from class defaults (Qwen2Tokenizer turns qwen35's
    # pre-tokenizer into qwen2's and adds NFC), so the file would not be what gets used.
    cfg_path = tmp / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, out)


def gguf_tokenizer_dir(gguf: Path) -> Path:
    """The cached fast-tokenizer folder for a GGUF file, converting it on first use."""
    gguf = Path(gguf)
    if not gguf.is_file():
        raise InputError(f"{gguf}: tokenizer file not found")
    out = assets.assets_dir() / "gguf-tokenizers" / sha256_file(gguf)[:16]
    if not (out / "tokenizer.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        _convert_gguf(gguf, out)
    return out


def tokenizer_dir(path: str | Path) -> Path:
    """A folder holding ``tokenizer.json`` for a model dir, a tokenizer.json file or a GGUF file."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: tokenizer path does not exist")
    if p.suffix == ".gguf":
        return gguf_tokenizer_dir(p)
    if p.is_file():
        if p.name.endswith(".json"):
            return p.parent
        raise InputError(f"{p}: not a tokenizer (expected a directory, a tokenizer.json or a .gguf file)")
    ggufs = sorted(p.glob("*.gguf"))
    if not (p / "tokenizer.json").exists() and ggufs:
        return gguf_tokenizer_dir(ggufs[0])
    if not (p / "tokenizer.json").exists():
        raise InputError(f"{p}: no tokenizer.json (and no .gguf file) in this directory")
    return p


@lru_cache(maxsize=64)
def load_fast(path: str) -> Any:
    """A ``tokenizers.Tokenizer`` (the Rust object: fast, and exactly what the model uses)."""
    from tokenizers import Tokenizer

    p = Path(path)
    file = p if p.is_file() and p.suffix == ".json" else tokenizer_dir(p) / "tokenizer.json"
    try:
        return Tokenizer.from_file(str(file))
    except Exception as e:  # the Rust binding raises a bare Exception on malformed JSON
        raise InputError(f"{file}: cannot load tokenizer: {e}") from e


def count_tokens(path: str | Path, texts: list[str]) -> list[int]:
    """Token counts without special tokens: what a prompt adds, template aside."""
    tok = load_fast(str(path))
    return [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)]


# ---------------------------------------------------------------------------------- library
def _convert_entry(name: str, src: Path, out: Path, digest: str) -> dict[str, Any]:
    """Convert one library tokenizer; the index entry says whether transformers could."""
    entry: dict[str, Any] = {"source": str(src), "source_sha256": digest, "format": LIBRARY_FORMAT}
    try:
        if out.exists():
            shutil.rmtree(out)
        _convert_gguf(src, out)
        return entry | {"status": "ok"}
    except InputError as e:
        return entry | {"status": "unsupported", "error": str(e)}


def prepare(log=print, workers: int | None = None) -> dict[str, Any]:
    """Convert every library tokenizer once and write ``index.json``. Idempotent.

    Conversions run in a process pool (one per core): transformers' GGUF conversion is pure
    Python, and the large vocabularies (qwen2, qwen35) take minutes each.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed

    sources = {p.stem.removeprefix("ggml-vocab-"): p for p in sorted(assets.require("llama-vocab").glob("*.gguf"))}
    sources[SMOLLM2] = assets.require("smollm2-gguf")
    root = library_dir()
    index_path = root / "index.json"
    index: dict[str, Any] = json.loads(index_path.read_text()) if index_path.exists() else {}
    root.mkdir(parents=True, exist_ok=True)
    todo = {}
    for name, src in sources.items():
        digest = sha256_file(src)
        entry = index.get(name)
        fresh = entry is not None and entry.get("source_sha256") == digest and entry.get("format") == LIBRARY_FORMAT
        if not (fresh and entry is not None and (entry["status"] != "ok" or (root / name).exists())):
            todo[name] = (src, digest)
    # Largest first, so the slow conversions do not end up last on one worker.
    order = sorted(todo, key=lambda n: -todo[n][0].stat().st_size)
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        futures = {pool.submit(_convert_entry, n, todo[n][0], root / n, todo[n][1]): n for n in order}
        for future in as_completed(futures):
            name = futures[future]
            index[name] = future.result()
            if index[name]["status"] == "ok":
                log(f"  tokenizer {name:<16} ok")
            else:
                log(f"  tokenizer {name:<16} not loadable by transformers: {index[name]['error'][-120:]}")
            index_path.write_text(json.dumps(index, indent=2, sort_keys=True))
    return index


def library() -> dict[str, Path]:
    """Name -> folder of every prepared library tokenizer that transformers could load."""
    index_path = library_dir() / "index.json"
    if not index_path.exists():
        raise InputError(f"the tokenizer library is not prepared at {library_dir()}: {assets.FETCH_HINT}")
    index = json.loads(index_path.read_text())
    return {n: library_dir() / n for n, e in sorted(index.items()) if e["status"] == "ok"}


def library_index() -> dict[str, Any]:
    library()  # raises the set-up hint when missing
    return json.loads((library_dir() / "index.json").read_text())
