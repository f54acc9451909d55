"""The weights probe's pass over three checkpoints of SmolLM2's size: throughput and memory.

Three checkpoints of the Rio-mini family (``rio_mini``, ``nex_mini``, ``smollm2``: 3 x 538 MB,
float32) are read

* raw, sequentially, file after file into one reused 64 MiB buffer: the baseline, what the disk
  (or page cache) gives;
* by the probe's pass (``probes.weights.stream``: every tensor of the three side by side, in
  chunks, through the worker pool), with ``tracemalloc`` counting every numpy array it makes;

each cold (``posix_fadvise(DONTNEED)`` evicts the files from the page cache first, no root
needed) and warm (the files already cached: the arithmetic's own ceiling). The table gives the
throughput of each, their ratio, the peak traced memory against the largest tensor, the peak
resident set, and the extrapolation of the pass to three 397B bf16 checkpoints (794 GB each):
reading them at the raw rate, and their arithmetic at the pass's rate per element.

Then the sampled mode (``params.sample``, 2% of each tensor): for every merge of known weights in
both zoos (the tiny zoo's seeds, the Rio-mini family), the bytes it reads and its single a against
the full pass's, with the projection of a sampled pass over the 397B triple. Written to
``results/bench-<date>/weights.md``.

    python benchmarks/bench_weights.py [--workers N] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np

from probes.weights import estimates
from probes.weights.checkpoint import open_checkpoint
from probes.weights.stream import Sample, bytes_read, default_workers, stream

REPO = Path(__file__).resolve().parents[1]
SMOL = Path(os.environ.get("PARENTAGE_ZOO_SMOL", REPO / ".cache" / "zoo" / "smol"))
TINY = Path(os.environ.get("PARENTAGE_ZOO", REPO / ".cache" / "zoo" / "tiny"))
SAMPLE = 0.02
MODELS = ("smollm2", "nex_mini", "rio_mini")  # R, the parent, the suspect
RIO_PARAMS = 397e9
RIO_BYTES = RIO_PARAMS * 2  # one 397B-parameter checkpoint in bf16


def evict(files: list[Path]) -> None:
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def raw_read(files: list[Path]) -> float:
    buf = bytearray(64 << 20)
    view = memoryview(buf)
    t = time.perf_counter()
    for f in files:
        with open(f, "rb", buffering=0) as fh:
            while fh.readinto(view):
                pass
    return time.perf_counter() - t


def probe_pass(work, workers: int | None) -> tuple[float, int]:
    """The pass's time (untraced: tracemalloc slows every allocation) and, from a second, traced
    pass, its peak memory."""
    t = time.perf_counter()
    stream(work, 1, None, workers)
    seconds = time.perf_counter() - t
    tracemalloc.start()
    stream(work, 1, None, workers)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak


def sampled_vs_full(zoo: Path, reference: str, parents: list[str], workers: int | None) -> list[tuple]:
    """Every merge of known weights in ``zoo`` (its zoo.json), fitted on ``parents`` from
    ``reference``: (zoo, member, method, true a, full a, sampled a, its CI, share of bytes read)."""
    manifest = json.loads((zoo / "zoo.json").read_text())
    members = [
        (m, e)
        for m, e in manifest["members"].items()
        if e.get("method") in ("linear", "slerp", "ties", "dare_ties", "task_arithmetic")
        and set(e.get("parents", {})) <= {*parents, reference}
        and (e.get("parents", {}).get(parents[0]) is not None)
    ]
    ckpts = [open_checkpoint(zoo / m) for m in [reference, *parents, *(m for m, _ in members)]]
    work = [[c.tensors[t] for c in ckpts] for t in sorted(ckpts[0].tensors)]
    p = len(parents)
    sample = Sample(SAMPLE, 20261206)
    full, sampled = stream(work, p, None, workers), stream(work, p, None, workers, sample=sample)
    share = sum(bytes_read(w, sample) for w in work) / sum(bytes_read(w, None) for w in work)
    rows = []
    for j, (m, e) in enumerate(members):
        moving = [[x for x in st if np.trace(np.array(x.gram)[1 : p + 1, 1 : p + 1]) > 0] for st in (full, sampled)]
        a_full = float(estimates.pooled(moving[0], p, j).weights[0])
        a_s = float(estimates.pooled(moving[1], p, j).weights[0])
        lo, hi, _ = estimates.bootstrap(moving[1], p, j, 0.95, 300, np.random.default_rng(0))
        rows.append((zoo.name, m, e["method"], e["parents"][parents[0]], a_full, a_s, (lo[0], hi[0]), share))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "results" / f"bench-{dt.date.today().isoformat()}")
    args = ap.parse_args()
    missing = [m for m in MODELS if not (SMOL / m).is_dir()]
    if missing:
        raise SystemExit(f"{SMOL}: no {', '.join(missing)}; run `make test-data` (builds the smol zoo) first")
    ckpts = [open_checkpoint(SMOL / m) for m in MODELS]
    files = [f for c in ckpts for f in c.files]
    total = sum(f.stat().st_size for f in files)
    names = sorted(ckpts[0].tensors)
    work = [[c.tensors[n] for c in ckpts] for n in names]
    largest = max(t.nbytes for t in ckpts[0].tensors.values())
    rows = []
    for state in ("cold", "warm"):
        if state == "cold":
            evict(files)
        raw = raw_read(files)
        if state == "cold":
            evict(files)
        else:
            raw_read(files)  # make sure every page is cached for the warm pass
        seconds, peak = probe_pass(work, args.workers)
        rows.append((state, raw, seconds, peak))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    lines = [
        f"# Weights probe: one pass over three SmolLM2-135M checkpoints ({total / 1e9:.2f} GB, float32)",
        "",
        f"{dt.datetime.now().isoformat(timespec='seconds')}, {os.cpu_count()} cores, workers "
        f"{args.workers or default_workers()}. Largest tensor: {largest / 2**20:.0f} MiB "
        "(model.embed_tokens.weight).",
        "",
        "| page cache | raw read GB/s | probe pass GB/s | ratio | peak traced memory | / largest tensor | "
        "3 x 397B bf16: reading at the raw rate | its arithmetic at this pass's element rate |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    elements = total / 4  # float32 checkpoints
    for state, raw, seconds, peak in rows:
        lines.append(
            f"| {state} | {total / raw / 1e9:.2f} | {total / seconds / 1e9:.2f} | {raw / seconds:.2f} | "
            f"{peak / 2**20:.0f} MiB | {peak / largest:.2f}x | {3 * RIO_BYTES / (total / raw) / 3600:.1f} h | "
            f"{3 * RIO_PARAMS / (elements / seconds) / 3600:.1f} h |"
        )
    sampled = []
    for zoo in sorted(TINY.parent.glob(TINY.name + "*")):
        if (zoo / "zoo.json").exists():
            sampled += sampled_vs_full(zoo, "base", ["parent_a", "parent_b"], args.workers)
    sampled += sampled_vs_full(SMOL, "smollm2", ["nex_mini"], args.workers)
    lines += [
        "",
        f"## Sampled mode (`params.sample: {SAMPLE}`) against the full pass",
        "",
        "| zoo | member | method | true a | full pass a | sampled a (95% CI) | bytes read | abs(a - a_full) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for zoo, m, method, truth, a_full, a_s, (lo, hi), share in sampled:
        lines.append(
            f"| {zoo} | {m} | {method} | {truth:g} | {a_full:.4f} | {a_s:.4f} ({lo:.3f}-{hi:.3f}) | "
            f"{100 * share:.2f}% | {abs(a_s - a_full):.4f} |"
        )
    linear = [abs(r[5] - r[4]) for r in sampled if r[2] in ("linear", "task_arithmetic")]
    warm = rows[-1]
    lines += [
        "",
        f"Linear merges: largest abs(a - a_full) {max(linear):.4f} over {len(linear)}. Every tensor is cut into "
        "about 256 blocks and at least two are read (its CI resamples them), so a tiny tensor is read above the "
        "sample's share. Sampled, the 397B triple reads "
        f"{SAMPLE * 3 * RIO_BYTES / 1e9:.0f} GB: {SAMPLE * 3 * RIO_BYTES / (total / rows[0][1]) / 60:.0f} min at "
        f"this disk's cold rate, {SAMPLE * 3 * RIO_PARAMS / (elements / warm[2]) / 60:.0f} min of this pass's "
        "arithmetic.",
    ]
    lines += [
        "",
        f"Peak resident set of the whole process (Python, numpy, both passes): {rss / 2**20:.0f} MiB.",
        "Extrapolation: the pass takes the longer of the two right-hand columns. Reading scales with "
        "bytes (bf16 halves them), the arithmetic with elements (the same per element whatever the "
        "dtype), and here the arithmetic of two cores (the warm row) is the ceiling; it scales with "
        "cores (`workers`) until the disk is.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "weights.md").write_text(text)


if __name__ == "__main__":
    main()
