"""GGUF copies of the smol family's checkpoints, made as llama.cpp makes them (issue 27): the
tensors renamed to llama.cpp's names and the attention's q/k rows permuted for its rotary layout
(``convert_hf_to_gguf.py``'s ``LlamaModel.permute``), written in float32 with gguf-py's writer,
then quantized by llama.cpp itself (``llama_model_quantize`` from llama-cpp-python). The
metadata (architecture, hyper-parameters, tokenizer) is SmolLM2's own GGUF's, which every member
of the family shares.

Written independently of the probe's reader: this goes from Hugging Face names to llama.cpp's
with gguf-py's forward map and llama.cpp's permutation; the probe goes back.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from tests.bad_checkpoints import load

FTYPES = {"Q8_0": 7, "Q4_1": 3, "Q4_K_M": 15}  # llama.cpp's LLAMA_FTYPE_MOSTLY_*


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.py LlamaModel.permute."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def to_gguf(hf_dir: Path, template: Path, out: Path) -> Path:
    """``hf_dir``'s safetensors as a float32 GGUF with ``template``'s metadata."""
    reader = gguf.GGUFReader(template)
    arch = reader.fields["general.architecture"].contents()
    n_head = reader.fields[f"{arch}.attention.head_count"].contents()
    n_kv = reader.fields[f"{arch}.attention.head_count_kv"].contents()
    n_blocks = reader.fields[f"{arch}.block_count"].contents()
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_blocks)
    writer = gguf.GGUFWriter(out, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type"):
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            writer.add_array(key, field.contents())
        else:
            writer.add_key_value(key, field.contents(), vtype)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for name, w in load(hf_dir).items():
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        assert target is not None, name
        if target.endswith("attn_q.weight"):
            w = _permute(w, n_head)
        elif target.endswith("attn_k.weight"):
            w = _permute(w, n_kv)
        writer.add_tensor(target, np.ascontiguousarray(w, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def quantize(src: Path, out: Path, ftype: str) -> Path:
    """llama.cpp's own quantizer (the one `llama-quantize` runs)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[ftype]
    params.nthread = 2
    if llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), params) != 0:
        raise RuntimeError(f"llama.cpp could not quantize {src} to {ftype}")
    return out
