"""Power of the logit-interpolation probe: texts used x data mode x zoo member.

Collects once (cached) in three modes on the tiny zoo, then re-analyses growing prefixes of
the corpus and prints a_hat, CI width, combined p-value and verdict for each cell.

    python benchmarks/bench_logit_power.py [--zoo DIR] [--sizes 16 32 64 128 210]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from harness.analyze import build_probes, load_records
from harness.cache import Cache
from harness.cli import main as cli
from harness.config import load_suite
from harness.data import balanced_head, load_items
from harness.runstore import RunStore
from probes.logit.probe import CORPUS

REPO = Path(__file__).resolve().parent.parent
CASES = ["linear_0.6", "linear_0.25", "ties", "merge_ft", "sibling", "a_ft", "student"]
CONTROLS = ["sibling", "a_ft", "independent", "student"]
MODES = {"full": {}, "top-20": {"mode": "topk", "top_k": 20}, "next-token top-20": {"mode": "next_token", "top_k": 20}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", default=os.environ.get("PARENTAGE_ZOO", str(REPO / ".cache" / "zoo" / "tiny")))
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64, 128, 210])
    ap.add_argument("--bootstrap", type=int, default=500)
    args = ap.parse_args()
    zoo = Path(args.zoo)
    names = ["parent_a", "parent_b", *dict.fromkeys([*CASES, *CONTROLS, "independent"])]
    roles = {"parent_a": "parent", "parent_b": "parent"} | {n: "control" for n in CONTROLS}
    suite: dict[str, Any] = {
        "name": "power",
        "models": [{"name": n, "role": roles.get(n, "suspect"), "path": str(zoo / n)} for n in names],
        "probes": [{"kind": "logit_interpolation", "id": f"m{i}", "params": p} for i, p in enumerate(MODES.values())],
        "stats": {"bootstrap": args.bootstrap, "seed": 11},
        "cache_dir": os.environ.get("PARENTAGE_CACHE", str(REPO / ".cache" / "parentage")),
    }
    with tempfile.TemporaryDirectory() as tmp:
        suite["output_dir"] = tmp
        path = Path(tmp) / "power.yaml"
        path.write_text(yaml.safe_dump(suite))
        assert cli(["run", str(path), "--run-id", "power"]) == 0
        run = RunStore.open(Path(tmp) / "power")
        s = load_suite(path)
        cache = Cache(Path(suite["cache_dir"]))
        rows = []
        for probe, mode in zip(build_probes(s), MODES):
            records = load_records(run, cache, s, probe)
            order = [it.id for it in balanced_head(load_items(None, CORPUS), None)]
            for n in args.sizes:
                keep = set(order[:n])
                sub = {m: [r for r in recs if r.meta["id"] in keep] for m, recs in records.items()}
                ev = probe.analyze(sub, s, np.random.default_rng(0))
                for case in CASES:
                    if ev.status != "ok":
                        rows.append((n, mode, case, np.nan, np.nan, np.nan, ev.status))
                        continue
                    pm = ev.per_model[case]
                    width = pm["a_hat_hi"] - pm["a_hat_lo"]
                    rows.append((n, mode, case, pm["a_hat"], width, pm["p_combined"], pm["verdict"]))
        cache.close()
    print("logit-interpolation power on the tiny zoo (texts interleaved across the 7 corpus groups)")
    head = ["texts".rjust(5), "mode".ljust(17), "case".ljust(11), "a_hat".rjust(6), "CI width", "p combined"]
    print("| " + " | ".join(head) + " | verdict |")
    print("|------:|-------------------|-------------|-------:|---------:|-----------:|---------|")
    for n, mode, case, a, w, p, v in rows:
        print(f"| {n:>5} | {mode:<17} | {case:<11} | {a:>6.3f} | {w:>8.3f} | {p:>10.2e} | {v} |")


if __name__ == "__main__":
    main()
