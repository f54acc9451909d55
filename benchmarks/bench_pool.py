"""Parents from pools of growing size (issue 32): the pool's genealogy, the suspects' parents in
roots, false parent claims for the controls, and what selection costs against pool size.

    python benchmarks/bench_pool.py [--seed 0] [--sizes 6 12 21] [--screen] [--out results/bench-DATE]

Tiny zoo: the suspects linear_0.6 (0.6 parent_a + 0.4 parent_b) and linear3 (0.5 a + 0.3 b + 0.2
c); the five controls are candidates for the others and subjects themselves (as in
configs/pool-tiny.yaml); the pool's first ``size`` members are taken from every other zoo member,
the parents, the base and other merges of the parents first. All runs share one response cache,
so collection is paid once: the requests column is what a cold run sends; ``analyse s`` is
``parentage analyze`` alone, timed in this process, against the smallest pool's as baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.cli import main as cli_main  # noqa: E402

TINY = Path(os.environ.get("PARENTAGE_ZOO", REPO / ".cache" / "zoo" / "tiny"))
SUSPECTS = ["linear_0.6", "linear3"]
CONTROLS = ["sibling", "a_ft", "student", "independent", "impostor"]
FIRST = ["parent_a", "parent_b", "parent_c", "base", "linear_0.25", "linear_0.75"]


def pool_order(zoo: Path) -> list[str]:
    members = json.loads((zoo / "zoo.json").read_text())["members"]
    rest = sorted(m for m in members if m not in [*SUSPECTS, *CONTROLS, *FIRST] and (zoo / m / "config.json").exists())
    return FIRST + rest


def run(zoo: Path, size: int, work: Path, screen: bool) -> dict[str, Any]:
    pool = pool_order(zoo)[: size - len(CONTROLS)]
    models = [{"name": s, "role": "suspect", "path": str(zoo / s)} for s in SUSPECTS]
    models += [{"name": c, "role": "candidate", "path": str(zoo / c)} for c in pool]
    models += [{"name": c, "role": "control", "path": str(zoo / c)} for c in CONTROLS]
    params: dict[str, Any] = {"max_texts": 64, "candidates": CONTROLS}
    if screen:
        params |= {"screen_texts": 8, "shortlist": 6}
    name = f"pool-{size}" + ("-screened" if screen else "")
    suite = {
        "name": name,
        "models": models,
        "probes": [{"kind": "logit_interpolation", "params": params}],
        "stats": {"seed": 20261130},
        "output_dir": str(work / "results"),
        "cache_dir": str(work / "cache"),
    }
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(suite))
    assert cli_main(["run", str(path), "--run-id", name]) == 0
    run_dir = work / "results" / name
    start = time.perf_counter()
    assert cli_main(["analyze", str(run_dir)]) == 0
    seconds = time.perf_counter() - start
    events = [json.loads(x) for x in (run_dir / "run.jsonl").read_text().splitlines()]
    requests = next(e for e in events if e["event"] == "collect_end")["requests"]
    ev = json.loads((run_dir / "evidence.json").read_text())["probes"][0]
    rows = {r["model"]: r for r in ev["tables"]["selection"]}
    truth = json.loads((zoo / "zoo.json").read_text())["members"]
    found = []
    for s in SUSPECTS:
        w = ev["per_model"][s]["weights"]
        right = sorted(rows[s]["parents_found"]) == sorted(truth[s]["parents"])
        err = max(abs(w[p]["value"] - v) for p, v in truth[s]["parents"].items()) if right else float("nan")
        direct = ", ".join(rows[s]["selected"])
        found.append(f"{s}: {', '.join(rows[s]['parents_found']) or 'none'} (direct {direct}; max error {err:.3f})")
    merges = [
        f"{r['candidate']} = " + " + ".join(f"{k} {v:.2f}" for k, v in r["in_roots"].items())
        for r in ev["tables"]["genealogy"]
        if not r["root"]
    ]
    false = [c for c in CONTROLS if rows.get(c, {}).get("parents_found")]
    return {
        "size": len(pool) + len(CONTROLS),
        "screen": screen,
        "requests": requests,
        "analyse_s": seconds,
        "merges": merges,
        "found": found,
        "false": false,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", type=int, nargs="+", default=[11, 16, 21])
    ap.add_argument("--screen", action="store_true", help="also the largest pool with screening (8 texts, 6 kept)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-pool"))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    zoo = TINY if args.seed == 0 else TINY.with_name(f"{TINY.name}-seed{args.seed}")
    args.work.mkdir(parents=True, exist_ok=True)
    results = [run(zoo, n, args.work, False) for n in args.sizes]
    if args.screen:
        results.append(run(zoo, max(args.sizes), args.work, True))
    base = results[0]["analyse_s"]
    lines = [
        f"Tiny zoo seed {args.seed}, 64 texts, full mode; suspects {', '.join(SUSPECTS)}; controls (also candidates) "
        f"{', '.join(CONTROLS)}.",
        "",
        "| pool | screened | requests (cold) | analyse s | x smallest | merges of the pool (in roots) | suspects' "
        "parents (roots) | controls given a parent |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['size']} | {'8 texts, 6 kept' if r['screen'] else 'no'} | {r['requests']} | {r['analyse_s']:.1f} | "
            f"{r['analyse_s'] / base:.2f} | {'; '.join(r['merges']) or 'none'} | {'; '.join(r['found'])} | "
            f"{', '.join(r['false']) or 'none (0 of 5)'} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "pool.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
