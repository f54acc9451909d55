"""Full mode at a real vocabulary size: compact storage against the whole vocabulary.

Full mode used to store every log-prob (4 V bytes per scored token: 196 KB at SmolLM2's 49,152).
Compact storage (``vocab_sample`` > 0, the default) keeps the top ``vocab_head`` tokens, the
actual token and a uniform sample of ``vocab_sample`` vocabulary entries drawn once per text
(weighted by V / n in every sum: ``probes/shared/align.align_compact``). This benchmark scores the
same texts both ways and prints, per storage:

* every model's verdict, a_hat with its CI and the residual (exact vs compact side by side);
* the cache bytes per scored token (the stored rows' array bytes over the tokens they score);
* the analysis time and its peak memory (``tracemalloc``: numpy's arrays are counted), the
  cache reads included.

Cases: the Rio-mini family (``hf`` full mode, the ``logit_hf_full`` probe of
``configs/rio-mini.yaml``) and the tiny zoo (V = 1,024, so the sample is scaled down to keep
the same sampled fraction as 4,096 of Qwen's 151,936: 32 entries, head 16). The table goes to
``results/bench-<date>/full-storage.md``.

    python benchmarks/bench_full_storage.py [--no-smol] [--no-tiny] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from bench_headline import CACHE, REPO, SMOL, SMOL_NAMES, TINY, collect, lineage, tiny_suite

from harness.analyze import build_probes, load_records
from harness.cache import Cache
from probes.logit.result import LogitResult

WHOLE = "whole vocabulary"
SMOL_STORAGES = {WHOLE: {"vocab_sample": 0}, "compact (default)": {}, "compact n=1024": {"vocab_sample": 1024}}
TINY_STORAGES = {WHOLE: {"vocab_sample": 0}, "compact n=32, head 16": {"vocab_sample": 32, "vocab_head": 16}}


def measure(run: Any, suite: Any) -> dict[str, Any]:
    """Analyse the run's one logit probe under tracemalloc; bytes per scored token from the cache."""
    cache = Cache(CACHE)
    try:
        probe = next(p for p in build_probes(suite) if p.kind == "logit_interpolation")
        view = suite.for_probe(probe.spec)
        tracemalloc.start()
        start = time.perf_counter()
        records = load_records(run, cache, view, probe)
        ev = probe.analyze(records, view, np.random.default_rng(0))
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        keys = [r.key for recs in records.values() for r in recs]
        wanted = set(keys)
        tokens = sum(  # scored positions: every token but the first has a prediction
            r["summary"]["n_tokens"] - 1 for m in records for r in run.raw_records(m) if r["key"] in wanted
        )
    finally:
        cache.close()
    db = sqlite3.connect(CACHE / "responses.sqlite")
    stored = 0
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        q = f"SELECT SUM(LENGTH(arrays)) FROM responses WHERE key IN ({','.join('?' * len(chunk))})"
        stored += db.execute(q, chunk).fetchone()[0] or 0
    db.close()
    return {"evidence": ev, "seconds": seconds, "peak_bytes": peak, "bytes_per_token": stored / max(tokens, 1)}


def case(name: str, suite: dict[str, Any], storages: dict[str, dict], members: dict, names: dict, tmp: Path) -> list:
    rows = []
    for i, (storage, params) in enumerate(storages.items()):
        s = json.loads(json.dumps(suite))
        for p in s["probes"]:
            p["params"] = p.get("params", {}) | params
        run, loaded = collect(s, tmp, f"{name.split()[0]}-{i}")
        m = measure(run, loaded)
        for model, r in m["evidence"].results(LogitResult).items():
            truth, a = lineage(members[names.get(model, model)])
            rows.append(
                {
                    "case": name,
                    "storage": storage,
                    "member": names.get(model, model),
                    "truth": truth,
                    "true_a": a,
                    "verdict": r.verdict,
                    "a_hat": r.a_hat.value if r.a_hat else None,
                    "a_lo": r.a_hat.lo if r.a_hat else None,
                    "a_hi": r.a_hat.hi if r.a_hat else None,
                    "residual": r.residual.value,
                    "divergences": {
                        e.name: e.value
                        for e in m["evidence"].estimates
                        if e.model == model and e.name.startswith(("kl[", "js[", "tv[", "a_geometric"))
                    },
                    "bytes_per_token": m["bytes_per_token"],
                    "seconds": m["seconds"],
                    "peak_mb": m["peak_bytes"] / 2**20,
                }
            )
    return rows


def smol_suite() -> tuple[dict[str, Any], dict]:
    if not (SMOL / "zoo.json").exists():
        raise SystemExit(f"bench: no smol zoo at {SMOL}: run `make test-data` first")
    suite = yaml.safe_load(os.path.expandvars((REPO / "configs" / "rio-mini.yaml").read_text()))
    probe = next(p for p in suite["probes"] if p.get("id") == "logit_hf_full")
    wanted = set(probe["models"])
    suite["models"] = [m | {"path": str(SMOL / Path(m["path"]).name)} for m in suite["models"] if m["name"] in wanted]
    suite["probes"] = [probe]
    return suite, json.loads((SMOL / "zoo.json").read_text())["members"]


def render(rows: list[dict[str, Any]], seconds: float) -> str:
    out = [
        f"# Full mode: compact storage against the whole vocabulary ({dt.date.today().isoformat()})",
        "",
        f"`python benchmarks/bench_full_storage.py` (`make bench-storage`); {seconds / 60:.1f} min on this machine.",
        "",
        "## Cost per storage",
        "",
        "| case | storage | cache bytes / scored token | analysis s | analysis peak MiB |",
        "|---|---|---:|---:|---:|",
    ]
    seen = set()
    for r in rows:
        if (r["case"], r["storage"]) in seen:
            continue
        seen.add((r["case"], r["storage"]))
        out.append(
            f"| {r['case']} | {r['storage']} | {r['bytes_per_token']:,.0f} | {r['seconds']:.1f} | {r['peak_mb']:.0f} |"
        )
    out += [
        "",
        "## Estimates per storage",
        "",
        "| case | member | truth | storage | verdict | a_hat (95% CI) | residual | a_hat - exact | "
        "divergences vs exact |",
        "|---|---|---|---|---|---|---:|---:|---|",
    ]
    exact = {(r["case"], r["member"]): r for r in rows if r["storage"] == WHOLE}
    for r in sorted(rows, key=lambda r: (r["case"], r["member"])):
        e = exact.get((r["case"], r["member"]))
        delta = f"{r['a_hat'] - e['a_hat']:+.4f}" if e else "-"
        div = "-"
        if e and r is not e:
            rel = {
                k: abs(v - e["divergences"][k]) / max(abs(e["divergences"][k]), 1e-12)
                for k, v in r["divergences"].items()
                if v is not None and e["divergences"].get(k) is not None
            }
            worst = max(rel, key=lambda k: rel[k]) if rel else None
            div = f"worst {worst}: {100 * rel[worst]:.1f}%" if worst else "-"
        truth = r["truth"] + (f" (a = {r['true_a']:g})" if r["true_a"] is not None else "")
        out.append(
            f"| {r['case']} | {r['member']} | {truth} | {r['storage']} | {r['verdict']} | "
            f"{r['a_hat']:.3f} ({r['a_lo']:.3f}-{r['a_hi']:.3f}) | {r['residual']:.3f} | {delta} | {div} |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-smol", action="store_true")
    ap.add_argument("--no-tiny", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "results" / f"bench-{dt.date.today().isoformat()}")
    args = ap.parse_args()
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if not args.no_tiny:
            members = json.loads((TINY / "zoo.json").read_text())["members"]
            suite = tiny_suite(TINY, 64)
            suite["probes"] = [suite["probes"][0]]  # full mode only
            rows += case("tiny", suite, TINY_STORAGES, members, {}, tmp)
        if not args.no_smol:
            suite, members = smol_suite()
            rows += case("rio-mini (hf)", suite, SMOL_STORAGES, members, SMOL_NAMES, tmp)
    text = render(rows, time.perf_counter() - start)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "full-storage.md").write_text(text)
    (args.out / "full-storage.json").write_text(json.dumps(rows, indent=1))
    print(f"written to {args.out}/full-storage.md")


if __name__ == "__main__":
    main()
