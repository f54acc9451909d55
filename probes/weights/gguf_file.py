"""GGUF checkpoints (llama.cpp's format, quantized or not) read like safetensors ones: tensors
under their Hugging Face names, in Hugging Face's layout, dequantized chunk by chunk.

A quantized re-upload of a model (Q8_0, Q4_K_M, ...) is among the most common things on the Hub,
so the weights probe must read one against its parents' safetensors. Three things differ:

* **names**: llama.cpp's (``blk.3.attn_q.weight``); each is mapped back to the name the parents'
  checkpoints use, through gguf-py's own table of every architecture's names
  (``gguf.TensorNameMap``), so a GGUF and a safetensors checkpoint share their tensors' names;
* **layout**: for Llama-family architectures llama.cpp permutes the rows of the attention's q
  and k projections for its rotary kernel; the permutation is undone (``_unpermute``, the inverse
  of ``convert_hf_to_gguf.py``'s ``LlamaModel.permute``);
* **values**: quantized blocks are dequantized by gguf-py (``gguf.quants.dequantize``) a few rows
  at a time, so memory stays at a chunk whatever the file's size.

The file's tensor table is read through ``gguf.GGUFReader`` (a memory map: nothing is loaded).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import InputError

# Bits of each quantized type's levels and the elements whose largest value bounds its step: a
# quantized copy of P sits within one step, 2 max|P| / (2^bits - 1) over the group, of P's values.
# Legacy types have one scale per 32; K-quants quantize their sub-block scales against one per
# 256 (a small sub-block's scale is rounded coarsely), so only the 256-element max bounds them.
QUANT_GROUPS: dict[str, tuple[int, int]] = {
    **{"Q4_0": (32, 4), "Q4_1": (32, 4), "Q5_0": (32, 5), "Q5_1": (32, 5), "Q8_0": (32, 8), "Q8_1": (32, 8)},
    **{"Q2_K": (256, 2), "Q3_K": (256, 3), "Q4_K": (256, 4), "Q5_K": (256, 5), "Q6_K": (256, 6), "Q8_K": (256, 8)},
}
_INTEGER = {"I8", "I16", "I32", "I64"}
# Architectures whose q/k rows llama.cpp's converter permutes (LlamaModel and its subclasses).
_PERMUTED = {"llama", "mistral", "granite", "granitemoe", "smollm3"}


@dataclass(frozen=True)
class GGUFTensor:
    """One GGUF tensor, as a ``checkpoint.TensorInfo`` is: under its Hugging Face name and shape,
    read in chunks of float32. ``heads``: the head count to undo llama.cpp's q/k permutation by."""

    name: str
    file: Path
    offset: int
    dtype: str
    shape: tuple[int, ...]
    n_bytes: int
    qtype: int
    heads: int | None = None

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.n_bytes

    @property
    def is_float(self) -> bool:
        return self.dtype not in _INTEGER

    def _rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of the tensor (Hugging Face's first axis), dequantized to float32."""
        from gguf import GGMLQuantizationType
        from gguf.constants import GGML_QUANT_SIZES
        from gguf.quants import dequantize

        qtype = GGMLQuantizationType(self.qtype)
        block, type_size = GGML_QUANT_SIZES[qtype]
        cols = self.numel // self.shape[0] if self.shape else 1
        row_bytes = cols // block * type_size
        mm = np.memmap(self.file, dtype=np.uint8, mode="r", offset=self.offset + start * row_bytes)
        raw = np.asarray(mm[: (stop - start) * row_bytes]).reshape(stop - start, row_bytes)
        del mm
        if qtype == GGMLQuantizationType.F32:
            return raw.view(np.float32).reshape(stop - start, cols)
        return dequantize(raw, qtype).astype(np.float32, copy=False).reshape(stop - start, cols)

    def read(self, start: int, count: int) -> np.ndarray:
        """Elements [start, start + count) of the flattened tensor in Hugging Face's layout: the
        rows they lie in are dequantized (for a permuted q/k projection, the GGUF rows they come
        from, which lie within the same heads), then the elements taken."""
        rows = self.shape[0] if self.shape else 1
        cols = self.numel // rows
        r0, r1 = start // cols, -(-(start + count) // cols)
        if self.heads:
            order = np.arange(rows).reshape(self.heads, rows // self.heads // 2, 2).transpose(0, 2, 1).reshape(-1)
            src = order[r0:r1]  # the GGUF row each Hugging Face row comes from
            lo = int(src.min())
            block = self._rows(lo, int(src.max()) + 1)[src - lo]
        else:
            block = self._rows(r0, r1)
        flat = block.reshape(-1)
        return flat[start - r0 * cols : start - r0 * cols + count]

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        """The tensor flattened in Hugging Face's layout, in pieces of exactly ``size`` elements (the
        last shorter), as a safetensors tensor's: the models' pieces are read side by side."""
        for start in range(0, self.numel, size):
            yield self.read(start, min(size, self.numel - start))


def _unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """The inverse of llama.cpp's ``permute``: per head, its two interleaved halves back in order."""
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def read_gguf(path: Path, names: set[str]) -> tuple[dict[str, GGUFTensor], dict[str, str]]:
    """A GGUF file's tensors under Hugging Face names: the one among gguf-py's candidates for each
    that ``names`` (the other checkpoints' tensor names) holds, else the ``model.``-prefixed one,
    so a GGUF and a safetensors checkpoint match by name. Also the file's metadata, as strings."""
    import gguf

    try:
        reader = gguf.GGUFReader(path)
        arch = str(reader.fields["general.architecture"].contents())
        blocks = int(reader.fields[f"{arch}.block_count"].contents())
    except (ValueError, KeyError, IndexError, OSError, AssertionError) as e:
        raise InputError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})") from None
    heads = {
        "attn_q": reader.fields.get(f"{arch}.attention.head_count"),
        "attn_k": reader.fields.get(f"{arch}.attention.head_count_kv")
        or reader.fields.get(f"{arch}.attention.head_count"),
    }
    back = _hf_names(arch, blocks, names)
    tensors: dict[str, GGUFTensor] = {}
    for t in reader.tensors:
        base, _, suffix = t.name.rpartition(".")
        hf = back.get(base)
        if hf is None:
            raise InputError(f"{path}: tensor '{t.name}': no Hugging Face name known for it ({arch})")
        kind = base.rsplit(".", 1)[-1]
        field = heads.get(kind) if arch in _PERMUTED and suffix == "weight" else None
        tensors[f"{hf}.{suffix}"] = GGUFTensor(
            name=f"{hf}.{suffix}",
            file=path,
            offset=int(t.data_offset),
            dtype=t.tensor_type.name,
            shape=tuple(int(d) for d in reversed(t.shape.tolist())),
            n_bytes=int(t.n_bytes),
            qtype=int(t.tensor_type),
            heads=int(field.contents()) if field is not None else None,
        )
    file_type = reader.fields.get("general.file_type")
    try:
        kind = gguf.LlamaFileType(int(file_type.contents())).name if file_type is not None else "unknown"
    except ValueError:
        kind = "unknown"
    return tensors, {"format": "GGUF", "architecture": arch, "file_type": kind.removeprefix("MOSTLY_")}


def _hf_names(arch: str, blocks: int, names: set[str]) -> dict[str, str]:
    """llama.cpp base name -> Hugging Face base name, preferring those ``names`` use."""
    import gguf

    try:
        model_arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch)
    except StopIteration:
        raise InputError(f"GGUF architecture '{arch}' is unknown to gguf-py") from None
    table = gguf.get_tensor_name_map(model_arch, blocks)
    present = {n.rsplit(".", 1)[0] for n in names}
    back: dict[str, str] = {}
    for hf, (_, target) in table.mapping.items():
        best = back.get(target)
        if (
            best is None
            or (hf in present and best not in present)
            or (best not in present and hf.startswith("model.") and not best.startswith("model."))
        ):
            back[target] = hf
    return back


def header_hash(path: Path) -> str:
    """Hash of the file's metadata and tensor table (everything before the tensor data)."""
    import gguf

    reader = gguf.GGUFReader(path)
    start = min((int(t.data_offset) for t in reader.tensors), default=path.stat().st_size)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(start))
    return h.hexdigest()
