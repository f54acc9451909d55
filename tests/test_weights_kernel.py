"""The weights pass's compiled per-chunk arithmetic (``probes/weights/kernel.py``) against the
statistics written out directly in numpy on the same rows: the Gram of the differences, the
counts and the exact copy check. Several chunks, blocks cut short, zeros in a subject, a float16
copy; the truth here is plain numpy over the whole tensor, not the kernel's blocked loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from probes.weights.checkpoint import open_checkpoint
from probes.weights.stream import COPY_ABSOLUTE, COPY_RELATIVE, Sample, tensor_stats


def _models(tmp_path: Path) -> tuple[list, dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    shape = (7, 1001)  # 7007 elements: not a multiple of the kernel's blocks nor of the chunk below
    r = rng.standard_normal(shape).astype(np.float32)
    p1 = r + 0.01 * rng.standard_normal(shape).astype(np.float32)
    p2 = r + 0.01 * rng.standard_normal(shape).astype(np.float32)
    p1[0] = p2[0] = r[0]  # a row no training moved
    merge = (0.3 * p1 + 0.7 * p2).astype(np.float32)
    merge[3, :500] = r[3, :500]  # where the subject equals the reference
    arrays = {"base": r, "p1": p1, "p2": p2, "merge": merge, "p1_fp16": p1.astype(np.float16)}
    for name, a in arrays.items():
        (tmp_path / name).mkdir()
        save_file({"w": a}, str(tmp_path / name / "model.safetensors"))
    infos = [open_checkpoint(tmp_path / n).tensors["w"] for n in arrays]
    return infos, arrays


def test_the_kernel_gives_the_statistics_numpy_gives(tmp_path: Path):
    infos, arrays = _models(tmp_path)
    st = tensor_stats(infos, 2, chunk=2048)
    rows = [a.astype(np.float64).ravel() for a in arrays.values()]
    w = np.array([rows[0], *(x - rows[0] for x in rows[1:])])
    np.testing.assert_allclose(st.gram, w @ w.T, rtol=1e-12, atol=0)
    x = w[1:3]
    moved = (x != 0).any(axis=0)
    assert st.moved == int(moved.sum()) == 6006  # every element but row 0
    direction = x.sum(axis=0)
    for j, s in enumerate((3, 4)):
        y = w[s]
        assert st.zero_moved[j] == int((moved & (y == 0)).sum())
        assert st.sign_n[j] == int((y * direction != 0).sum())
        assert st.sign_agree[j] == int((y * direction > 0).sum())
        keep = y != 0
        sub = np.array([x[0], x[1], y])[:, keep]
        np.testing.assert_allclose(st.gram_nonzero[j], sub @ sub.T, rtol=1e-10, atol=1e-12)
        floor = COPY_ABSOLUTE.get(infos[s].dtype, 0.0)
        for i, model_minus_r in enumerate((np.zeros_like(y), x[0], x[1])):
            tol = COPY_RELATIVE * np.abs(rows[0] + model_minus_r) + floor
            assert st.beyond_rounding[j][i] == int((np.abs(y - model_minus_r) > tol).sum()), (j, i)
    assert st.zero_moved[0] == 500
    assert st.beyond_rounding[1][1] == 0 < st.beyond_rounding[1][0]  # the float16 re-save: a copy of p1 only
    assert min(st.beyond_rounding[0]) > 0  # the merge: a copy of nothing


def test_sampled_blocks_fall_into_groups_that_sum_to_the_gram(tmp_path: Path):
    infos, _ = _models(tmp_path)
    st = tensor_stats(infos, 2, chunk=2048, sample=Sample(0.05, 3))
    assert 0 < st.sampled < 7007 and st.group_grams
    np.testing.assert_allclose(np.sum(st.group_grams, axis=0) * st.scale, st.gram, rtol=1e-12)
    full = np.diag(tensor_stats(infos, 2).gram)  # the squared norms: the sample's estimate of them is near
    assert np.all(np.abs(np.diag(st.gram) - full) <= 0.25 * full)
