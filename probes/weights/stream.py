"""One pass over the checkpoints: per tensor, the sufficient statistics every fit needs.

For each tensor name the models are read side by side in chunks, as differences from the
reference R (the shared base, or a parent): rows ``[R, P_1 - R, ..., P_p - R, S_1 - R, ...]``.
Their Gram matrix (all inner products) holds everything the fits use (least squares, NNLS,
slerp, cosines, distances), so a tensor is read once whatever is asked of it later, and the
statistics of a 397B-parameter tensor are a few hundred bytes. Counts that need the elements
(coordinates equal to the reference, sign agreement) are taken in the same pass, by one compiled
loop over each chunk (``kernel.chunk_stats``).

Tensors are processed by a thread pool (reading and the compiled loop release the GIL); each
finished tensor is appended to a JSON-lines file in the cache, so a killed pass resumes where it
stopped.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from probes.weights.checkpoint import Tensor
from probes.weights.gguf_file import QUANT_GROUPS
from probes.weights.kernel import chunk_stats

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


def _tolerances(infos: list[Tensor], subjects: range) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per subject, how far storing a model in its dtype may move an element: the absolute floor
    (``COPY_ABSOLUTE``), and for a quantized subject the group and the step per unit of max |P|."""
    floors = np.array([COPY_ABSOLUTE.get(infos[s].dtype, 0.0) for s in subjects])
    quant = [QUANT_GROUPS.get(infos[s].dtype, (0, 0)) for s in subjects]
    qgroup = np.array([g for g, _ in quant], dtype=np.int64)
    qscale = np.array([2 / (2**bits - 1) if g else 0.0 for g, bits in quant])
    return floors, qgroup, qscale


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


def tensor_stats(infos: list[Tensor], n_parents: int, chunk: int = CHUNK, sample: Sample | None = None) -> TensorStats:
    """Stream one tensor of every model (``infos``: R, the parents, the subjects), whole or, with
    ``sample``, the sampled blocks only; the arithmetic is ``kernel.chunk_stats``."""
    k = len(infos)
    subjects = range(1 + n_parents, k)
    m = len(subjects)
    gram = np.zeros((k, k))
    gz = np.zeros((m, n_parents, n_parents))  # per subject: the parents' Gram where S equals R
    counts = np.zeros(1 + 3 * m, dtype=np.int64)  # moved, then per subject zero_moved, sign_n, agree
    beyond = np.zeros((m, 1 + n_parents), dtype=np.int64)
    floors, qgroup, qscale = _tolerances(infos, subjects)
    nonfinite = np.zeros(k, dtype=np.int64)
    overflow = False
    plan = sample.blocks(infos) if sample is not None else None
    groups = np.zeros((min(SAMPLE_GROUPS, len(plan[1])) if plan else 1, k, k))
    # float16 and bfloat16 (read as float32) convert exactly to float32; float64 needs float64 rows
    wide = np.float64 if any(t.dtype == "F64" for t in infos) else np.float32
    buf = np.empty((k, max(chunk, plan[0] if plan else 0)), dtype=wide)
    for parts, first in _pieces(infos, chunk, plan):
        c = parts[0].shape[0]
        for i, part in enumerate(parts):
            buf[i, :c] = part
        chunk_gram, chunk_groups = np.zeros((k, k)), np.zeros_like(groups)
        chunk_gz, chunk_counts, chunk_beyond = np.zeros_like(gz), np.zeros_like(counts), np.zeros_like(beyond)
        with np.errstate(all="ignore"):
            chunk_stats(
                buf, c, n_parents, COPY_RELATIVE, floors, qgroup, qscale, plan[0] if plan else 0, first,
                chunk_gram, chunk_groups, chunk_gz, chunk_counts, chunk_beyond,
            )  # fmt: skip
        if not np.isfinite(chunk_gram.diagonal()).all():  # NaN or inf in some model, or sums past float64
            nonfinite += [int(np.count_nonzero(~np.isfinite(x))) for x in parts]
            overflow = overflow or not nonfinite.any()
            continue
        gram += chunk_gram
        groups += chunk_groups
        gz += chunk_gz
        counts += chunk_counts
        beyond += chunk_beyond
    gram = np.triu(gram) + np.triu(gram, 1).T
    groups = np.triu(groups) + np.transpose(np.triu(groups, 1), (0, 2, 1))
    # The Gram where S differs from R: the whole Gram of [X..., S - R] less the parents' block at S's zeros
    gnz = []
    for j, s in enumerate(subjects):
        rows = [*range(1, 1 + n_parents), s]
        sub = gram[np.ix_(rows, rows)].copy()
        sub[:n_parents, :n_parents] -= gz[j]
        gnz.append(sub)
    sampled = plan[0] * len(plan[1]) if plan is not None else 0
    scale = infos[0].numel / sampled if sampled else 1.0
    return TensorStats(
        name=infos[0].name,
        shape=list(infos[0].shape),
        dtypes=[t.dtype for t in infos],
        gram=(gram * scale).tolist(),
        gram_nonzero=[(g * scale).tolist() for g in gnz],
        sign_agree=counts[3::3].tolist(),
        sign_n=counts[2::3].tolist(),
        moved=int(counts[0]),
        zero_moved=counts[1::3].tolist(),
        beyond_rounding=beyond.tolist(),
        nonfinite=nonfinite.tolist(),
        overflow=overflow,
        sampled=sampled,
        group_grams=groups.tolist() if plan is not None else [],
    )


def default_workers() -> int:
    """A thread per core, at most 8: the compiled loop keeps a core busy (on 2 cores, from the page
    cache, one thread passes 2.0 GB/s and two 3.5 GB/s), and each thread holds only a few chunks."""
    return max(1, min(8, os.cpu_count() or 1))


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
