"""Safetensors checkpoints read without loading them: headers at pre-flight, tensors in chunks.

Why not ``safetensors.safe_open``: its numpy path has no bfloat16 (the dtype of most large
checkpoints) and its torch path materialises a whole tensor, while the probe must stay within
a few chunks of memory at any model size. The format is simple (an 8-byte little-endian header
length, a JSON header of ``dtype``/``shape``/``data_offsets`` per tensor, then the raw bytes), so
each chunk is mapped on its own (``numpy.memmap`` at an offset) and unmapped when done: the
resident set never holds more than the chunks in flight, whatever the file size.

Parsing every header and checking every tensor's byte range against the file size is what the
probe's pre-flight does: a truncated or corrupt shard is found in milliseconds, named, before
hours of reading.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import BinaryIO

import numpy as np

from harness.errors import InputError
from probes.weights.gguf_file import GGUFTensor, header_hash, read_gguf

INDEX = "model.safetensors.index.json"
# Stored dtypes the probe reads, with their mantissa bits (the storage rounding they imply).
FLOAT_DTYPES: dict[str, tuple[str, int]] = {
    "F64": ("<f8", 52),
    "F32": ("<f4", 23),
    "F16": ("<f2", 10),
    "BF16": ("<u2", 7),
}
_ITEMSIZE = {
    **{"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1},
    **{"I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1},
}


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor's bytes are: file, absolute byte offset, dtype and shape."""

    name: str
    file: Path
    offset: int
    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.numel * _ITEMSIZE.get(self.dtype, 1)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    def _fill(self, f: BinaryIO, start: int, piece: np.ndarray) -> np.ndarray:
        """Read elements from ``start`` into ``piece`` (bfloat16 widened to float32 on return)."""
        f.seek(self.offset + start * piece.itemsize)
        got = f.readinto(piece.view(np.uint8).data)  # type: ignore[attr-defined]
        if got != piece.nbytes:
            raise InputError(f"{self.file}: tensor '{self.name}': file ends inside its data (read {got} bytes)")
        return (piece.astype(np.uint32) << 16).view(np.float32) if self.dtype == "BF16" else piece

    def read(self, start: int, count: int) -> np.ndarray:
        """Elements [start, start + count) of the flattened tensor, as ``chunks`` gives them (a
        sampled pass reads a few such blocks of each tensor)."""
        with open(self.file, "rb", buffering=0) as f:
            return self._fill(f, start, np.empty(count, dtype=FLOAT_DTYPES[self.dtype][0]))

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        """The tensor flattened, in pieces of at most ``size`` elements in a numpy float dtype
        (bfloat16 widened to float32). The file is read into one reused buffer (``readinto``:
        no page faults of a fresh memory map per piece), so a piece is valid until the next one
        is asked for: copy it to keep it."""
        buf = np.empty(min(size, self.numel), dtype=FLOAT_DTYPES[self.dtype][0])
        with open(self.file, "rb", buffering=0) as f:
            for start in range(0, self.numel, size):
                yield self._fill(f, start, buf[: min(size, self.numel - start)])


Tensor = TensorInfo | GGUFTensor  # what a checkpoint's tensors are: both read in float chunks


@dataclass
class Checkpoint:
    """One model's weights: a directory of safetensors shards, one safetensors file, or one GGUF
    file (``gguf_file.py``), headers parsed."""

    root: Path
    tensors: dict[str, Tensor]
    metadata: dict[str, dict[str, str]]  # per shard file name: the header's __metadata__

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    @property
    def storage(self) -> str:
        """ "safetensors", or "GGUF" and llama.cpp's file type ("GGUF Q4_K_M")."""
        gguf = next((m for m in self.metadata.values() if m.get("format") == "GGUF"), None)
        return f"GGUF {gguf['file_type']}" if gguf else "safetensors"

    @property
    def files(self) -> list[Path]:
        return sorted({t.file for t in self.tensors.values()})

    def fingerprint(self) -> dict[str, object]:
        """What identifies these weights in the evidence without hashing gigabytes: the directory,
        the shards' sizes, the dtypes and a hash of every shard's header (names, shapes, dtypes
        and byte offsets of every tensor)."""
        h = hashlib.sha256()
        for f in self.files:
            if f.suffix == ".gguf":
                h.update(header_hash(f).encode())
                continue
            with open(f, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                h.update(fh.read(n))
        return {
            "path": str(self.root),
            "files": len(self.files),
            "bytes": sum(f.stat().st_size for f in self.files),
            "tensors": len(self.tensors),
            "dtypes": sorted({t.dtype for t in self.tensors.values()}),
            "storage": self.storage,
            "headers_sha256": h.hexdigest(),
        }


def _index(root: Path) -> dict[str, str] | None:
    """The index's ``weight_map`` (tensor name -> shard file name), checked for shape, or None."""
    index = root / INDEX
    if not index.exists():
        return None
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise InputError(f"{index}: not a safetensors index (needs a 'weight_map'): {e}") from None
    if not isinstance(weight_map, dict):
        raise InputError(f"{index}: weight_map: a {type(weight_map).__name__}, not an object of tensor -> shard file")
    bad = [f"{k!r}: {v!r}" for k, v in weight_map.items() if not isinstance(v, str) or not v]
    if bad:
        raise InputError(f"{index}: weight_map: shard file names must be strings ({', '.join(bad[:3])})")
    return weight_map


def shard_files(root: Path) -> list[Path]:
    """The shards of a checkpoint: from the index when there is one, else every *.safetensors."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise InputError(f"{root}: no such checkpoint directory")
    weight_map = _index(root)
    if weight_map is not None:
        files = sorted({root / f for f in weight_map.values()})
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise InputError(f"{root / INDEX}: lists shard(s) that are not there: {', '.join(missing)}")
        not_files = [f.name for f in files if not f.is_file()]
        if not_files:
            raise InputError(f"{root / INDEX}: weight_map names what is not a file: {', '.join(not_files)}")
        return files
    files = sorted(f for f in root.glob("*.safetensors") if f.is_file())
    if not files:
        raise InputError(f"{root}: no *.safetensors file (the weights probe reads local safetensors checkpoints)")
    return files


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """One shard's tensors and metadata; every byte range checked against the file's size."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise InputError(f"{path}: truncated safetensors file ({size} bytes, no header)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 100_000_000:
            raise InputError(f"{path}: corrupt safetensors header (claims {n} header bytes in a {size}-byte file)")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{path}: safetensors header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: safetensors header is not a JSON object (a {type(header).__name__})")
    meta = header.pop("__metadata__", None) or {}
    tensors: dict[str, TensorInfo] = {}
    spans: list[tuple[int, int, str]] = []
    for name, h in header.items():
        info, begin, stop = _entry(path, n, name, h)
        tensors[name] = info
        spans.append((begin, stop, name))
    spans.sort()
    for (_, stop, first), (begin, _, second) in pairwise(spans):
        if begin < stop:
            raise InputError(f"{path}: tensors '{first}' and '{second}': data_offsets overlap")
    end = spans[-1][1] if spans else 0
    if 8 + n + end > size:
        raise InputError(
            f"{path}: truncated: the header places tensor data up to byte {8 + n + end}, the file has {size} "
            "(an interrupted download or copy?)"
        )
    return tensors, meta


def _entry(path: Path, n: int, name: str, h: object) -> tuple[TensorInfo, int, int]:
    """One header entry, every field checked: a JSON value of the wrong kind is an error naming
    the file, the tensor and the field, never a traceback later."""

    def bad(field: str, why: str) -> InputError:
        return InputError(f"{path}: tensor '{name}': {field}: {why}")

    if not isinstance(h, dict):
        raise bad("entry", f"a {type(h).__name__}, not an object with dtype, shape and data_offsets")
    for key in ("dtype", "shape", "data_offsets"):
        if key not in h:
            raise bad(key, "missing")
    dtype, shape, offsets = h["dtype"], h["shape"], h["data_offsets"]
    if not isinstance(dtype, str):
        raise bad("dtype", f"{dtype!r} is not a dtype name")
    if not isinstance(shape, list) or not all(_count(d) for d in shape):
        raise bad("shape", f"{shape!r} is not a list of non-negative integers")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_count(o) for o in offsets):
        raise bad("data_offsets", f"{offsets!r} is not two non-negative integer byte offsets")
    begin, stop = offsets
    if stop < begin:
        raise bad("data_offsets", f"ends ({stop}) before it begins ({begin})")
    info = TensorInfo(name, path, 8 + n + begin, dtype, tuple(shape))
    if dtype in _ITEMSIZE and stop - begin != info.nbytes:
        raise bad("data_offsets", f"{stop - begin} bytes for shape {list(info.shape)} {dtype}")
    return info, begin, stop


def _count(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def open_checkpoint(root: Path | str, like: set[str] | None = None) -> Checkpoint:
    """Every shard's header; a tensor listed twice across shards, or one the index places in a
    shard that does not hold it, is an error. A ``.gguf`` file's tensors take the names ``like``
    (the other checkpoints' tensor names) uses for them."""
    root = Path(root)
    if root.suffix == ".gguf" and root.is_file():
        gtensors, gmeta = read_gguf(root, like or set())
        return Checkpoint(root.parent, dict(gtensors), {root.name: gmeta})
    tensors: dict[str, Tensor] = {}
    metadata: dict[str, dict[str, str]] = {}
    for f in shard_files(root):
        ts, meta = read_header(f)
        metadata[f.name] = meta
        for name, t in ts.items():
            if name in tensors:
                raise InputError(f"{root}: tensor '{name}' is in both {tensors[name].file.name} and {f.name}")
            tensors[name] = t
    weight_map = _index(root) if root.is_dir() else None
    if weight_map is not None:
        astray = [
            f"'{t}' (listed in {f})" for t, f in weight_map.items() if t not in tensors or tensors[t].file.name != f
        ]
        if astray:
            raise InputError(
                f"{root / INDEX}: weight_map: {len(astray)} of {len(weight_map)} tensors are not in the shard it "
                f"names: {', '.join(astray[:3])}{' ...' if len(astray) > 3 else ''}"
            )
    return Checkpoint(root if root.is_dir() else root.parent, tensors, metadata)
