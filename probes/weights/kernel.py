"""The pass's per-chunk arithmetic in one compiled loop (numba), so that it keeps up with reading.

Done as numpy calls, each statistic of ``stream.TensorStats`` is a pass of its own over a chunk
widened to float64 (the Gram alone is k(k+1)/2 dot products): about ten passes over memory per
element, which held the pass to 0.14 of the page cache's speed. Here the chunk is cut into blocks
that stay in the core's cache; each block is widened and differenced once, and every statistic is
taken from it while it is there. The sums stay float64: a linear merge's residual is about 1e-5
of |S - R|, so its square is 1e-10 of the Gram's entries and float32 sums would cancel it away.

Rows of ``buf`` are the models ``[R, P_1..P_p, S_1..S_m]`` as stored (float32 or float64, already
converted exactly from float16/bfloat16); the statistics are of ``[R, P_1 - R, ..., S_m - R]``.
"""

from __future__ import annotations

import numba
import numpy as np

WHOLE_BLOCK = 512  # elements per block when a tensor is read whole: a multiple of every quantization group


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def chunk_stats(
    buf: np.ndarray,
    c: int,
    p: int,
    rel: float,
    floors: np.ndarray,
    qgroup: np.ndarray,
    qscale: np.ndarray,
    block: int,
    first: int,
    out_gram: np.ndarray,
    out_groups: np.ndarray,
    out_gz: np.ndarray,
    out_counts: np.ndarray,
    out_beyond: np.ndarray,
) -> None:
    """Add one chunk's statistics (its first ``c`` columns) to the ``out_*`` arrays.

    ``block``: elements per block (the sampled mode's block, whose Gram also goes to group
    ``(first + b) % len(out_groups)``; 0 when the tensor is read whole). Per subject j:
    ``floors[j]`` the absolute part of its rounding tolerance, ``qgroup[j]`` > 0 when it is stored
    quantized (then element e may move by ``qscale[j]`` x max |P| over its group). Outputs:
    ``out_gram`` (k x k, upper triangle), ``out_gz[j]`` the parents' Gram where S_j equals R,
    ``out_counts`` = [moved, then per subject zero_moved, sign_n, agree], ``out_beyond[j, i]``
    the elements of S_j further from model i (R, then R + X_i) than rounding moves them.
    """
    k = buf.shape[0]
    m = k - 1 - p
    size = block if block > 0 else WHOLE_BLOCK
    d = np.empty((k, size))
    anym = np.empty(size)
    dirn = np.empty(size)
    tol = np.empty(size)
    ngroups = out_groups.shape[0]
    for nb, s0 in enumerate(range(0, c, size)):
        n = min(size, c - s0)
        r = buf[0, s0 : s0 + n]
        d0 = d[0]
        for e in range(n):
            d0[e] = r[e]
        for i in range(1, k):
            row = buf[i, s0 : s0 + n]
            di = d[i]
            for e in range(n):
                di[e] = np.float64(row[e]) - np.float64(r[e])
        for a in range(k):
            da = d[a]
            for b in range(a, k):
                db = d[b]
                acc = 0.0
                for e in range(n):
                    acc += da[e] * db[e]
                out_gram[a, b] += acc
                if block > 0:
                    out_groups[(first + nb) % ngroups, a, b] += acc
        for e in range(n):
            anym[e] = 0.0
            dirn[e] = 0.0
        for i in range(1, 1 + p):
            di = d[i]
            for e in range(n):
                anym[e] = 1.0 if (di[e] != 0.0 or anym[e] != 0.0) else 0.0
                dirn[e] += di[e]
        moved = 0
        for e in range(n):
            moved += anym[e] != 0.0
        out_counts[0] += moved
        for j in range(m):
            y = d[1 + p + j]
            zm = 0
            sn = 0
            ag = 0
            for e in range(n):
                zm += y[e] == 0.0 and anym[e] != 0.0
                pr = y[e] * dirn[e]
                sn += pr != 0.0
                ag += pr > 0.0
            out_counts[1 + 3 * j] += zm
            out_counts[2 + 3 * j] += sn
            out_counts[3 + 3 * j] += ag
            if zm:
                for a in range(p):
                    da = d[1 + a]
                    for b in range(p):
                        db = d[1 + b]
                        acc = 0.0
                        for e in range(n):
                            acc += da[e] * db[e] if y[e] == 0.0 else 0.0
                        out_gz[j, a, b] += acc
            for i in range(1 + p):  # model i: R (i = 0) or R + X_i; S_j - model_i = y - X_i
                di = d[i]
                if qgroup[j] > 0:  # one step of the quantization: scale x max |model| over the group
                    q = qgroup[j]
                    for g0 in range(0, n, q):
                        top = 0.0
                        for e in range(g0, min(n, g0 + q)):
                            v = abs(d0[e] + di[e]) if i else abs(d0[e])
                            top = max(top, v)
                        for e in range(g0, min(n, g0 + q)):
                            tol[e] = qscale[j] * top
                else:
                    for e in range(n):
                        tol[e] = rel * (abs(d0[e] + di[e]) if i else abs(d0[e])) + floors[j]
                beyond = 0
                for e in range(n):
                    beyond += abs(y[e] - di[e] if i else y[e]) > tol[e]
                out_beyond[j, i] += beyond
