"""A folder of generated bad or unusual checkpoints (issue 27), each with the outcome a user must
get: a verdict, or one ``error:`` line naming the file and field with its exit code.

Every case is made from the tiny zoo's float32 checkpoints (parent_a, parent_b, base, the 0.6
linear merge) by rewriting them the way users' checkpoints arrive: dtype conversions, sharding,
corrupt headers and indexes, overflowing or non-finite values, renamed tensors. Safetensors files
are written byte by byte here (an 8-byte header length, a JSON header, the data), because half of
these cases are files no well-behaved writer would produce.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from probes.weights.checkpoint import FLOAT_DTYPES, open_checkpoint

ST_DTYPE = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8"}


def load(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a checkpoint as float32 (bfloat16 widened)."""
    out = {}
    for name, t in open_checkpoint(path).tensors.items():
        out[name] = np.concatenate([c.astype(np.float32) for c in t.chunks(1 << 20)]).reshape(t.shape)
    return out


def to_bytes(a: np.ndarray, dtype: str, truncate: bool = False) -> bytes:
    """``a`` stored as ``dtype`` (BF16 rounded to nearest even, or truncated)."""
    if dtype == "BF16":
        u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
        if not truncate:
            u = u + 0x7FFF + ((u >> 16) & 1)
        return (u >> 16).astype("<u2").tobytes()
    return np.ascontiguousarray(a, dtype=ST_DTYPE[dtype]).tobytes()


def write_raw(path: Path, header: object, data: bytes) -> None:
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def write(path: Path, tensors: dict[str, np.ndarray], dtype: str | dict[str, str] = "F32", truncate=False) -> None:
    """A well-formed safetensors file; ``dtype`` for all tensors or per tensor name."""
    header: dict[str, object] = {}
    chunks, offset = [], 0
    for name, a in tensors.items():
        dt = dtype if isinstance(dtype, str) else dtype.get(name, "F32")
        b = to_bytes(a, dt, truncate)
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        chunks.append(b)
        offset += len(b)
    write_raw(path, header, b"".join(chunks))


def write_sharded(
    root: Path, tensors: dict[str, np.ndarray], n_shards: int, dtype: str | dict[str, str] = "F32"
) -> dict[str, str]:
    names = list(tensors)
    weight_map = {}
    for k in range(n_shards):
        part = names[k::n_shards]
        fname = f"model-{k + 1:05d}-of-{n_shards:05d}.safetensors"
        write(root / fname, {n: tensors[n] for n in part}, dtype)
        weight_map.update(dict.fromkeys(part, fname))
    (root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return weight_map


@dataclass
class Case:
    """One generated input: the suite's models (name -> checkpoint path), the probe's params, and
    what must come out."""

    name: str
    make: Callable[[Path, Path], dict[str, Path]]  # (zoo, out dir) -> paths of models by name
    exit_code: int = 0
    message: str = ""  # a fragment of the error line (exit != 0) or of the weights summary
    verdict: str | None = None  # the suspect's weights verdict (exit 0)
    parent: str | None = None
    base: bool = True  # give the zoo's base as params.base
    extra: dict[str, object] = field(default_factory=dict)


def suite_file(case: Case, zoo: Path, where: Path) -> Path:
    """``case``'s checkpoints made under ``where`` and a suite running the weights probe on them
    (the suspect against parent_a and parent_b), its results and cache there too."""
    models = case.make(zoo, where / "ckpt")
    suite = {
        "name": case.name,
        "models": [
            {"name": n, "role": "suspect" if n == "suspect" else "parent", "path": str(p)} for n, p in models.items()
        ],
        "probes": [{"kind": "weights", "params": {"base": str(zoo / "base")} if case.base else {}}],
        "output_dir": str(where / "results"),
        "cache_dir": str(where / "cache"),
    }
    path = where / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def _config(src: Path, out: Path) -> None:
    """The model's config.json beside the weights: a suite's model path must be a model directory."""
    (out / "config.json").write_text((src / "config.json").read_text())


def _models(zoo: Path, suspect: Path, **over: Path) -> dict[str, Path]:
    return {"suspect": suspect, "parent_a": zoo / "parent_a", "parent_b": zoo / "parent_b", **over}


def _rewrite(src: str, fn: Callable[[dict[str, np.ndarray], Path], None]):
    def make(zoo: Path, out: Path) -> dict[str, Path]:
        fn(load(zoo / src), out)
        _config(zoo / src, out)
        return _models(zoo, out)

    return make


def _first(t: dict[str, np.ndarray], pattern: str = "mlp") -> str:
    return next(n for n in t if pattern in n)


def _fp16(t, out):
    write(out / "model.safetensors", t, "F16")


def _bf16_truncated(t, out):
    write(out / "model.safetensors", t, "BF16", truncate=True)


def _mixed(t, out):
    write(out / "model.safetensors", t, {n: ("BF16" if ".mlp." in n else "F32") for n in t})


def _same_parents(zoo: Path, out: Path) -> dict[str, Path]:
    return _models(zoo, zoo / "linear_0.6", parent_b=zoo / "parent_a")


def _symlinked_parents(zoo: Path, out: Path) -> dict[str, Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.symlink_to(zoo / "parent_a")
    return _models(zoo, zoo / "linear_0.6", parent_b=out)


def _is_base(zoo: Path, out: Path) -> dict[str, Path]:
    return _models(zoo, zoo / "base")


def _header(edit: Callable[[dict], object]):
    """linear_0.6 with its header rewritten by ``edit`` (the data untouched)."""

    def make(zoo: Path, out: Path) -> dict[str, Path]:
        raw = (zoo / "linear_0.6" / "model.safetensors").read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + n])
        write_raw(out / "model.safetensors", edit(header), raw[8 + n :])
        _config(zoo / "linear_0.6", out)
        return _models(zoo, out)

    return make


def _negative_offsets(h: dict) -> dict:
    name = next(k for k in h if k != "__metadata__")
    begin, end = h[name]["data_offsets"]
    h[name]["data_offsets"] = [-8, end - begin - 8]
    return h


def _string_shape(h: dict) -> dict:
    name = next(k for k in h if k != "__metadata__")
    h[name]["shape"] = [str(d) for d in h[name]["shape"]]
    return h


def _scaled(value: float, what: str = "overflow"):
    def fn(t, out):
        n = _first(t)
        t[n] = np.full_like(t[n], value) if what not in ("nan", "inf") else t[n].copy()
        if what == "nan":
            t[n].flat[::7] = np.nan
        elif what == "inf":
            t[n].flat[::7] = np.inf
        write(out / "model.safetensors", t)

    return fn


def _bf16_merge(t, out):
    write(out / "model.safetensors", t, "BF16")


def _tied(t, out):
    """The output head tied to the embeddings, as many Hub checkpoints store it: no lm_head tensor."""
    write(out / "model.safetensors", {n: a for n, a in t.items() if not n.startswith("lm_head")})


def _three_shards(t, out):
    write_sharded(out, t, 3, {n: ("BF16" if ".mlp." in n else "F32") for n in t})


def _overflow64(t, out):
    """One float64 tensor at 1e200: its squares leave float64's range."""
    n = _first(t)
    t[n] = np.full(t[n].shape, 1e200)
    write(out / "model.safetensors", t, {n: "F64"})


def _zeros(t, out):
    write(out / "model.safetensors", {n: np.zeros_like(a) for n, a in t.items()})


def _renamed(t, out):
    write(out / "model.safetensors", {"renamed." + n: a for n, a in t.items()})


def _all_int(t, out):
    write(out / "model.safetensors", {n: np.zeros(a.shape, np.int64) for n, a in t.items()}, "I64")


def _index(edit: Callable[[dict, Path], object]):
    """linear_0.6 in two shards, with its index rewritten by ``edit(index, root)``."""

    def make(zoo: Path, out: Path) -> dict[str, Path]:
        weight_map = write_sharded(out, load(zoo / "linear_0.6"), 2)
        index = {"metadata": {}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(edit(index, out)))
        _config(zoo / "linear_0.6", out)
        return _models(zoo, out)

    return make


def _index_one_shard(index: dict, root: Path) -> dict:
    first = sorted(set(index["weight_map"].values()))[0]
    index["weight_map"] = dict.fromkeys(index["weight_map"], first)  # every tensor listed in the first shard
    (root / sorted({*os.listdir(root)} - {first, "model.safetensors.index.json"})[0]).unlink()
    return index


def _index_list(index: dict, root: Path) -> dict:
    index["weight_map"] = list(index["weight_map"].items())
    return index


def _index_int(index: dict, root: Path) -> dict:
    name = next(iter(index["weight_map"]))
    index["weight_map"][name] = 3
    return index


def _index_dir(index: dict, root: Path) -> dict:
    (root / "subdir").mkdir()
    name = next(iter(index["weight_map"]))
    index["weight_map"][name] = "subdir"
    return index


def _index_dangling(index: dict, root: Path) -> dict:
    (root / "gone.safetensors").symlink_to(root / "nowhere.safetensors")
    name = next(iter(index["weight_map"]))
    index["weight_map"][name] = "gone.safetensors"
    return index


CASES: list[Case] = [
    # dtype conversions of a parent: copies, named as conversions
    Case("fp16_copy", _rewrite("parent_a", _fp16), verdict="copy", parent="parent_a", message="F16"),
    Case("bf16_truncated_copy", _rewrite("parent_a", _bf16_truncated), verdict="copy", parent="parent_a"),
    Case("bf16_fp32_mix_copy", _rewrite("parent_a", _mixed), verdict="copy", parent="parent_a"),
    Case("fp16_merge", _rewrite("linear_0.6", _fp16), verdict="interpolation", message="a = 0.60"),
    Case("bf16_merge", _rewrite("linear_0.6", _bf16_merge), verdict="interpolation", message="a = 0.60"),
    # how large checkpoints are stored on the Hub
    Case("tied_embeddings", _rewrite("linear_0.6", _tied), verdict="interpolation", message="lm_head.weight: missing"),
    Case("three_mixed_shards", _rewrite("linear_0.6", _three_shards), verdict="interpolation", message="a = 0.60"),
    # the same checkpoint twice
    Case("same_parent_twice", _same_parents, exit_code=2, message="same checkpoint"),
    Case("same_parent_symlink", _symlinked_parents, exit_code=2, message="same checkpoint"),
    Case("suspect_is_base", _is_base, verdict="copy", parent="base", message="shared base"),
    # corrupt headers and indexes: one error line at validate, naming the file
    Case("negative_offsets", _header(_negative_offsets), exit_code=2, message="data_offsets"),
    Case("header_list", _header(lambda h: list(h.items())), exit_code=2, message="header is not a JSON object"),
    Case("string_shape", _header(_string_shape), exit_code=2, message="shape"),
    Case("index_one_shard", _index(_index_one_shard), exit_code=2, message="not in"),
    Case("index_list", _index(_index_list), exit_code=2, message="weight_map"),
    Case("index_int", _index(_index_int), exit_code=2, message="weight_map"),
    Case("index_dir", _index(_index_dir), exit_code=2, message="not a file"),
    Case("index_dangling", _index(_index_dangling), exit_code=2, message="not there"),
    # nothing to compare
    Case("renamed_all", _rewrite("linear_0.6", _renamed), exit_code=2, message="no tensor in common"),
    Case("all_int", _rewrite("linear_0.6", _all_int), exit_code=2, message="no tensor in common"),
    # values the arithmetic must survive
    Case("overflow", _rewrite("linear_0.6", _scaled(1e38)), verdict="not an interpolation"),
    Case("overflow_float64", _rewrite("linear_0.6", _overflow64), verdict="interpolation", message="overflow float64"),
    Case("nan_tensor", _rewrite("linear_0.6", _scaled(0, "nan")), verdict="interpolation", message="non-finite"),
    Case("inf_tensor", _rewrite("linear_0.6", _scaled(0, "inf")), verdict="interpolation", message="non-finite"),
    Case("all_zero", _rewrite("linear_0.6", _zeros), verdict="not an interpolation"),
]

__all__ = ["CASES", "FLOAT_DTYPES", "Case", "load", "suite_file", "write", "write_sharded"]
