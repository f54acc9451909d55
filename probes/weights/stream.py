"""One pass over the checkpoints: per tensor, the sufficient statistics every fit needs.

For each tensor name the models are read side by side in chunks, as differences from the
reference R (the shared base, or a parent): rows ``[R, P_1 - R, ..., P_p - R, S_1 - R, ...]``.
Their Gram matrix (all inner products) holds everything the fits use (least squares, NNLS,
slerp, cosines, distances), so a tensor is read once whatever is asked of it later, and the
statistics of a 397B-parameter tensor are a few hundred bytes. Counts that need the elements
(coordinates equal to the reference, sign agreement) are taken in the same pass.

Tensors are processed by a thread pool (numpy releases the GIL in its copies and BLAS calls),
so reading, not arithmetic, bounds the pass; each finished tensor is appended to a JSON-lines
file in the cache, so a killed pass resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from probes.weights.checkpoint import Tensor
from probes.weights.gguf_file import QUANT_GROUPS

CHUNK = 1 << 20  # elements per chunk and model: 8 MiB of float64
# Of TensorStats and of the sampled blocks: part of the journal's key, so a journal of another layout is not read.
FORMAT = 7
# A dtype conversion of P moves no element by more than one bfloat16 ulp relative (rounding to
# nearest moves half of it, truncation, as some converters do, up to a whole one; finer dtypes
# less), nor, for a float16 copy, by more than float16's smallest normal (a value below it is
# rounded to a subnormal or flushed to zero): past both, S is not a conversion of P.
COPY_RELATIVE = 2.0**-7
COPY_ABSOLUTE = {"F16": 2.0**-14}
# A quantized S (GGUF) is a copy of P when every element is within one quantization step of P's:
# 2 max|P| / (2^bits - 1) over the elements one scale covers (``gguf_file.QUANT_GROUPS``), which
# bounds what rounding to the type's levels moves a value, scales' own rounding included.


SAMPLE_GROUPS = 16  # a sampled tensor's blocks, dealt into at most this many groups: the units its CI resamples


@dataclass(frozen=True)
class Sample:
    """A seeded share of each tensor's elements, read as blocks at random places (the sampled
    mode, ``params.sample``): for a 397B checkpoint, minutes of reading instead of hours. A tensor
    is cut into about 256 blocks (of 32 to 4096 elements; whole multiples of 256 when a model
    stores it quantized, so the copy check sees whole quantization groups), at least two of which
    are read (its CI resamples them); a tensor of fewer than three blocks is read whole."""

    fraction: float
    seed: int

    def blocks(self, infos: list[Tensor]) -> tuple[int, list[int]] | None:
        """(block size, the sorted blocks to read) for one tensor of every model, or None: read it whole."""
        info = infos[0]
        unit = 256 if any(t.dtype in QUANT_GROUPS for t in infos) else 32
        block = min(4096, max(unit, info.numel // 256 // unit * unit))
        n = info.numel // block
        m = max(2, int(self.fraction * n))
        if m >= n:
            return None
        rng = np.random.default_rng([self.seed, zlib.crc32(info.name.encode())])
        return block, sorted(rng.choice(n, m, replace=False).tolist())


@dataclass
class TensorStats:
    """Sufficient statistics of one tensor across the models (rows as in the module docstring)."""

    name: str
    shape: list[int]
    dtypes: list[str]
    gram: list[list[float]]
    gram_nonzero: list[list[list[float]]] = field(
        default_factory=list
    )  # per subject: Gram of [P-R..., S-R] where S != R
    sign_agree: list[int] = field(default_factory=list)  # per subject: sign(S-R) == sign(sum of P-R), both nonzero
    sign_n: list[int] = field(default_factory=list)
    moved: int = 0  # coordinates where some parent differs from R
    zero_moved: list[int] = field(default_factory=list)  # per subject: of those, where S equals R exactly
    # per subject, per [R, P_1..P_p]: elements (or whole chunks) where S is further from the model
    # than converting it to another dtype moves it (COPY_RELATIVE, COPY_ABSOLUTE): 0 means a copy
    beyond_rounding: list[list[int]] = field(default_factory=list)
    # per model row: non-finite elements (NaN, inf); with ``overflow`` (sums past float64's range)
    # the tensor is left out of every fit and named
    nonfinite: list[int] = field(default_factory=list)
    overflow: bool = False
    # sampled mode: the elements read (0: all of them; ``gram`` and ``gram_nonzero`` are then scaled
    # up by numel / sampled) and the unscaled Grams of the SAMPLE_GROUPS groups of blocks
    sampled: int = 0
    group_grams: list[list[list[float]]] = field(default_factory=list)

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def scale(self) -> float:
        """What the sample's sums are multiplied by to stand for the whole tensor's."""
        return self.numel / self.sampled if self.sampled else 1.0


def gram_of(w: np.ndarray) -> np.ndarray:
    """All inner products of the rows: one dot product per pair, which for a few very long rows
    runs at memory speed where a matrix product (a skinny GEMM) does not."""
    k = w.shape[0]
    g = np.empty((k, k))
    for i in range(k):
        for j in range(i, k):
            g[i, j] = g[j, i] = np.dot(w[i], w[j])
    return g


def beyond_conversion(diff: np.ndarray, p: np.ndarray, dtype: str) -> int:
    """Elements of S - P (``diff``) further than storing P (``p``) as S's ``dtype`` moves them."""
    quantized = QUANT_GROUPS.get(dtype)
    if quantized is None:
        tol = COPY_RELATIVE * np.abs(p) + COPY_ABSOLUTE.get(dtype, 0.0)
    else:
        group, bits = quantized
        whole = len(p) // group * group
        steps = [np.abs(p[:whole]).reshape(-1, group).max(axis=1)] if whole else []
        if whole < len(p):
            steps.append(np.abs(p[whole:]).max(keepdims=True))
        tol = np.repeat(
            np.concatenate(steps), [group] * (whole // group) + ([len(p) - whole] if whole < len(p) else [])
        )
        tol *= 2 / (2**bits - 1)
    return int(np.count_nonzero(np.abs(diff) > tol))


def _pieces(infos: list[Tensor], chunk: int, plan: tuple[int, list[int]] | None) -> Iterator[tuple[list, int]]:
    """The models' pieces side by side, each with the position of its first sampled block (0 when
    the tensor is read whole): consecutive chunks, or the sampled blocks ``chunk`` elements at a time."""
    if plan is None:
        for parts in zip(*(t.chunks(chunk) for t in infos)):
            yield list(parts), 0
        return
    block, idx = plan
    per = max(1, chunk // block)
    for first in range(0, len(idx), per):
        batch = idx[first : first + per]
        yield [np.concatenate([t.read(b * block, block) for b in batch]) for t in infos], first


def _beyond_in(w: np.ndarray, i: int, s: int, part: slice, dtype: str, scratch: np.ndarray) -> int:
    """``beyond_conversion`` of row ``s`` (S - R) against model ``i`` (R itself for 0, else R + X_i)
    on ``part`` of the chunk, computed in ``scratch`` for the float dtypes (the full-chunk check
    runs on every chunk a copy passes, so it allocates nothing)."""
    y, ref = w[s, part], w[0, part]
    if dtype in QUANT_GROUPS:
        xi = w[i, part] if i else 0.0
        return beyond_conversion(y - xi, ref + xi, dtype)
    n = len(y)
    diff, tol = scratch[0, :n], scratch[1, :n]
    if i:
        np.subtract(y, w[i, part], out=diff)
        np.add(ref, w[i, part], out=tol)
    else:
        diff[:] = y
        tol[:] = ref
    np.abs(diff, out=diff)
    np.abs(tol, out=tol)
    tol *= COPY_RELATIVE
    tol += COPY_ABSOLUTE.get(dtype, 0.0)
    return int(np.count_nonzero(diff > tol))


def tensor_stats(infos: list[Tensor], n_parents: int, chunk: int = CHUNK, sample: Sample | None = None) -> TensorStats:
    """Stream one tensor of every model (``infos``: R, the parents, the subjects), whole or, with
    ``sample``, the sampled blocks only."""
    k = len(infos)
    subjects = range(1 + n_parents, k)
    gram = np.zeros((k, k))
    gnz = [np.zeros((n_parents + 1, n_parents + 1)) for _ in subjects]
    agree = np.zeros(len(subjects), dtype=np.int64)
    sign_n = np.zeros(len(subjects), dtype=np.int64)
    moved = 0
    zero_moved = np.zeros(len(subjects), dtype=np.int64)
    beyond = np.zeros((len(subjects), 1 + n_parents), dtype=np.int64)
    # S - P_i over rows [R, X..., y]: the model P_i as a coefficient vector (R itself for i = 0)
    models = np.zeros((1 + n_parents, k))
    models[:, 0] = 1.0
    for i in range(1, 1 + n_parents):
        models[i, i] = 1.0
    nonfinite = np.zeros(k, dtype=np.int64)
    overflow = False
    plan = sample.blocks(infos) if sample is not None else None
    groups = np.zeros((min(SAMPLE_GROUPS, len(plan[1])), k, k)) if plan is not None else None
    v = np.empty((k, max(chunk, plan[0] if plan else 0)))
    scratch = np.empty((2, v.shape[1]))  # for the copy check: no fresh 8 MiB arrays per chunk
    for parts, first in _pieces(infos, chunk, plan):
        c = parts[0].shape[0]
        w = v[:, :c]
        with np.errstate(all="ignore"):  # inf - inf, inf * 0: caught just below
            w[0] = parts[0]  # widened to float64: differences and sums exact enough for the floor
            for i in range(1, k):
                np.subtract(parts[i], parts[0], out=w[i], dtype=np.float64)  # widen and subtract in one pass
            g = gram_of(w)
        if not np.isfinite(g.diagonal()).all():  # NaN or inf in some model, or sums past float64
            nonfinite += [int(np.count_nonzero(~np.isfinite(x))) for x in parts]
            overflow = overflow or not nonfinite.any()
            continue
        del parts
        gram += g
        if plan is not None and groups is not None:  # each block's Gram, into its group
            wb = w.reshape(k, c // plan[0], plan[0])
            np.add.at(groups, (first + np.arange(wb.shape[1])) % len(groups), np.einsum("ibn,jbn->bij", wb, wb))
        x = w[1 : 1 + n_parents]
        any_moved = x[0] != 0 if n_parents == 1 else (x != 0).any(axis=0)
        moved += int(np.count_nonzero(any_moved))
        direction = x[0] if n_parents == 1 else x.sum(axis=0)
        for j, s in enumerate(subjects):
            y = w[s]
            rows = [*range(1, 1 + n_parents), s]
            if g[s, s] > 0:  # else S equals R on the whole chunk: nothing where S differs
                zero = y == 0
                sub = g[np.ix_(rows, rows)]
                if zero.any():  # the Gram where S differs from R: the chunk's minus that at S's zeros,
                    # where S's own row is 0 and only the parents' block changes (a mask, not a gather)
                    sub = sub.copy()
                    sub[:n_parents, :n_parents] -= np.multiply(x, zero) @ x.T
                    zero_moved[j] += int(np.count_nonzero(any_moved & zero))
                gnz[j] += sub
            else:
                zero_moved[j] += int(np.count_nonzero(any_moved))
            if g[s, s] > 0 and np.any(direction):
                prod = y * direction
                sign_n[j] += int(np.count_nonzero(prod))
                agree[j] += int(np.count_nonzero(prod > 0))
            before = beyond[j, 0]
            floor = COPY_ABSOLUTE.get(infos[s].dtype, 0.0)
            quantized = QUANT_GROUPS.get(infos[s].dtype)
            for i in range(1 + n_parents):
                # |S - P|^2 <= u^2 |P|^2 over the chunk is necessary for every element to be within
                # u |P_e| of P's (S a re-rounded copy): only then are the elements checked
                d = -models[i].copy()
                d[s] += 1.0
                d[0] += 1.0
                dist2 = d @ g @ d
                if dist2 == 0:
                    continue
                if i and g[i, i] == 0:  # P_i equals R on this chunk: R's count holds for it
                    beyond[j, i] += beyond[j, 0] - before
                    continue
                if quantized is None and math.sqrt(dist2) > COPY_RELATIVE * math.sqrt(
                    max(models[i] @ g @ models[i], 0)
                ) + floor * math.sqrt(c):
                    beyond[j, i] += 1
                    continue
                # a non-copy shows in a few elements spread over the chunk (a prefix may be rows training
                # never touched); a quantized S's groups must stay whole, so it takes a prefix
                for part in (slice(0, 4096) if quantized else slice(None, None, 101), slice(None)):
                    n_beyond = _beyond_in(w, i, s, part, infos[s].dtype, scratch)
                    if n_beyond:
                        beyond[j, i] += n_beyond
                        break
    sampled = plan[0] * len(plan[1]) if plan is not None else 0
    scale = infos[0].numel / sampled if sampled else 1.0
    return TensorStats(
        name=infos[0].name,
        shape=list(infos[0].shape),
        dtypes=[t.dtype for t in infos],
        gram=(gram * scale).tolist(),
        gram_nonzero=[(g * scale).tolist() for g in gnz],
        sign_agree=agree.tolist(),
        sign_n=sign_n.tolist(),
        moved=moved,
        zero_moved=zero_moved.tolist(),
        beyond_rounding=beyond.tolist(),
        nonfinite=nonfinite.tolist(),
        overflow=overflow,
        sampled=sampled,
        group_grams=groups.tolist() if groups is not None else [],
    )


def default_workers() -> int:
    """Half the cores, at most 4: the pass is bound by memory bandwidth, and a thread per core
    contends for it (on 2 cores one thread reads 0.7 GB/s, two 0.55)."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def stream(
    work: list[list[Tensor]],
    n_parents: int,
    journal: Path | None,
    workers: int | None = None,
    advance: Callable[[int], None] = lambda nbytes: None,
    sample: Sample | None = None,
) -> list[TensorStats]:
    """Statistics of every tensor in ``work`` (one list of infos per tensor, models in row order),
    resuming from ``journal`` and appending to it; in ``work``'s order. ``advance`` is told the
    bytes each tensor took to read (its sampled share, in the sampled mode)."""
    done: dict[str, TensorStats] = {}
    if journal is not None and journal.exists():
        for line in journal.read_text().splitlines():
            try:
                s = TensorStats(**json.loads(line))
            except (json.JSONDecodeError, TypeError):
                continue  # a line cut by a kill: that tensor is computed again
            done[s.name] = s
    todo = [infos for infos in work if infos[0].name not in done]
    for infos in work:
        if infos[0].name in done:
            advance(bytes_read(infos, sample))
    out = open(journal, "a") if journal is not None else None
    try:
        with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
            futures = {pool.submit(tensor_stats, infos, n_parents, CHUNK, sample): infos for infos in todo}
            for fut in as_completed(futures):
                s = fut.result()
                done[s.name] = s
                if out is not None:
                    out.write(json.dumps(asdict(s)) + "\n")
                    out.flush()
                advance(bytes_read(futures[fut], sample))
    finally:
        if out is not None:
            out.close()
    return [done[infos[0].name] for infos in work]


def bytes_read(infos: list[Tensor], sample: Sample | None) -> int:
    """The bytes one tensor of every model takes to read: all, or its sampled blocks' share."""
    plan = sample.blocks(infos) if sample is not None else None
    share = plan[0] * len(plan[1]) / infos[0].numel if plan is not None else 1.0
    return int(sum(t.nbytes for t in infos) * share)
