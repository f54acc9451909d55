"""Parents from pools of growing size (issue 32): the pool's genealogy, the suspects' parents in
roots, false parent claims for the controls, and what selection costs against pool size.

    python benchmarks/bench_pool.py [--seed 0] [--sizes 11 21 35 50] [--screen] [--out results/bench-DATE]

Tiny zoo: the suspects linear_0.6 (0.6 parent_a + 0.4 parent_b) and linear3 (0.5 a + 0.3 b + 0.2
c); the five controls are candidates for the others and subjects themselves (as in
configs/pool-tiny.yaml); the pool's first ``size`` members are taken from every other zoo member,
the parents, the base and other merges of the parents first. Past one zoo's members the pool
takes the other seeds' zoos (``s1_parent_a``, ...): the same architecture and tokenizer, another
lineage, with merges of their own, as a Hub pool holds families beside the suspect's.

All runs share one response cache, so collection is paid once: the requests column is what a
cold run sends; ``analyse s`` is ``parentage analyze`` alone, timed in this process, against the
smallest pool's as baseline. Once, on the same cache, linear_0.6 and the controls are analysed
with parent_a and parent_b given (the known-parent mode): the last column compares each one's
verdict in every pool with that one.
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
SMOL = Path(os.environ.get("PARENTAGE_ZOO_SMOL", REPO / ".cache" / "zoo" / "smol"))
SMOL_CONTROLS = ["sibling", "nex_ft", "student_mini", "impostor_mini"]
SUSPECTS = ["linear_0.6", "linear3"]
CONTROLS = ["sibling", "a_ft", "student", "independent", "impostor"]
FIRST = ["parent_a", "parent_b", "parent_c", "base", "linear_0.25", "linear_0.75"]


def pool_order(zoo: Path) -> list[tuple[str, Path]]:
    """(name, folder) of every candidate, in the order pools take them: this seed's parents, base
    and merges first, then its other members, then the other seeds' zoos, prefixed."""
    members = json.loads((zoo / "zoo.json").read_text())["members"]
    rest = sorted(m for m in members if m not in [*SUSPECTS, *CONTROLS, *FIRST] and (zoo / m / "config.json").exists())
    out = [(m, zoo / m) for m in FIRST + rest]
    for i, other in enumerate([TINY, TINY.with_name(f"{TINY.name}-seed1"), TINY.with_name(f"{TINY.name}-seed2")]):
        if other.resolve() == zoo.resolve() or not (other / "zoo.json").is_file():
            continue
        names = sorted(json.loads((other / "zoo.json").read_text())["members"])
        out += [(f"s{i}_{m}", other / m) for m in names if (other / m / "config.json").exists()]
    return out


def suite_file(work: Path, name: str, models: list[dict], params: dict[str, Any]) -> Path:
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
    return path


def said(ev: dict[str, Any], m: str) -> str:
    r = ev["per_model"].get(m)
    return "not analysed" if r is None else r["verdict"] + (f" ({r['parent']})" if r.get("parent") else "")


def known_parent(zoo: Path, work: Path) -> dict[str, Any]:
    """linear_0.6 and the controls with parent_a and parent_b given, on the pools' cache."""
    models = [{"name": "linear_0.6", "role": "suspect", "path": str(zoo / "linear_0.6")}]
    models += [{"name": p, "role": "parent", "path": str(zoo / p)} for p in ("parent_a", "parent_b")]
    models += [{"name": c, "role": "control", "path": str(zoo / c)} for c in CONTROLS]
    path = suite_file(work, "known-parents", models, {"max_texts": 64})
    assert cli_main(["run", str(path), "--run-id", "known-parents"]) == 0
    return json.loads((work / "results" / "known-parents" / "evidence.json").read_text())["probes"][0]


def run(zoo: Path, size: int, work: Path, screen: bool, reanalyze: bool) -> dict[str, Any]:
    pool = pool_order(zoo)[: size - len(CONTROLS)]
    models = [{"name": s, "role": "suspect", "path": str(zoo / s)} for s in SUSPECTS]
    models += [{"name": c, "role": "candidate", "path": str(path)} for c, path in pool]
    models += [{"name": c, "role": "control", "path": str(zoo / c)} for c in CONTROLS]
    params: dict[str, Any] = {"max_texts": 64, "candidates": CONTROLS}
    if screen:
        params |= {"screen_texts": 8, "shortlist": 6}
    name = f"pool-{size}" + ("-screened" if screen else "")
    path = suite_file(work, name, models, params)
    run_dir = work / "results" / name
    if not (reanalyze and (run_dir / "run.jsonl").is_file()):
        assert cli_main(["run", str(path), "--run-id", name]) == 0
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
        # a copy (zoo.json kind "copy", e.g. parent_a's bf16 rounding) stands for what it copies
        same = {m: truth[m]["from"] for m in rows[s]["parents_found"] if truth.get(m, {}).get("kind") == "copy"}
        found_as = {same.get(m, m): m for m in rows[s]["parents_found"]}
        right = sorted(found_as) == sorted(truth[s]["parents"])
        err = max(abs(w[found_as[p]]["value"] - v) for p, v in truth[s]["parents"].items()) if right else float("nan")
        direct = ", ".join(rows[s]["selected"])
        found.append(f"{s}: {', '.join(rows[s]['parents_found']) or 'none'} (direct {direct}; max error {err:.3f})")
    merges = [
        f"{r['candidate']} = " + " + ".join(f"{k} {v:.2f}" for k, v in r["in_roots"].items())
        for r in ev["tables"]["genealogy"]
        if not r["root"]
    ]
    false = [c for c in CONTROLS if rows.get(c, {}).get("parents_found")]
    kinds = {r["candidate"]: r for r in ev["tables"]["genealogy"]}
    return {
        "ev": ev,
        "other_seeds": sum(1 for c, _ in pool if c[:1] == "s" and c[2:3] == "_"),
        "roots": sum(1 for r in kinds.values() if r["root"]),
        "size": len(pool) + len(CONTROLS),
        "screen": screen,
        "requests": requests,
        "analyse_s": seconds,
        "merges": merges,
        "found": found,
        "false": false,
    }


def smol(work: Path, texts: int) -> str:
    """The smol family: rio_mini (0.6 nex_mini + 0.4 smollm2) against a pool of the parents, a
    second merge of them made here by mergekit (slerp, t 0.3 towards nex_mini: ``slerp_mini``),
    the merge trained further (rio_mini_opd) and the four controls, in process, top-20; the
    same records analysed with the parents given."""
    from harness.merging import run_mergekit

    slerp = work / "slerp_mini"
    if not (slerp / "config.json").is_file():
        recipe = {
            "merge_method": "slerp",
            "dtype": "float32",
            "base_model": str(SMOL / "smollm2"),
            "models": [{"model": str(SMOL / "smollm2")}, {"model": str(SMOL / "nex_mini")}],
            "parameters": {"t": 0.3},
        }
        run_mergekit(recipe, slerp)
    opts = {"backend": "hf", "options": {"dtype": "float32"}}
    pool = [("smollm2", SMOL / "smollm2"), ("nex_mini", SMOL / "nex_mini"), ("slerp_mini", slerp)]
    pool += [("rio_mini_opd", SMOL / "rio_mini_opd")]
    params: dict[str, Any] = {"max_texts": texts, "mode": "topk", "top_k": 20}
    models = [{"name": "rio_mini", "role": "suspect", "path": str(SMOL / "rio_mini"), **opts}]
    models += [{"name": c, "role": "candidate", "path": str(path), **opts} for c, path in pool]
    models += [{"name": c, "role": "control", "path": str(SMOL / c), **opts} for c in SMOL_CONTROLS]
    path = suite_file(work, "smol-pool", models, params | {"candidates": SMOL_CONTROLS})
    assert cli_main(["run", str(path), "--run-id", "smol-pool"]) == 0
    ev = json.loads((work / "results" / "smol-pool" / "evidence.json").read_text())["probes"][0]
    given = [{"name": "rio_mini", "role": "suspect", "path": str(SMOL / "rio_mini"), **opts}]
    given += [{"name": p, "role": "parent", "path": str(SMOL / p), **opts} for p in ("nex_mini", "smollm2")]
    given += [{"name": c, "role": "control", "path": str(SMOL / c), **opts} for c in SMOL_CONTROLS]
    path = suite_file(work, "smol-known", given, params)
    assert cli_main(["run", str(path), "--run-id", "smol-known"]) == 0
    known = json.loads((work / "results" / "smol-known" / "evidence.json").read_text())["probes"][0]
    rows = {r["model"]: r for r in ev["tables"]["selection"]}
    w = ev["per_model"]["rio_mini"]["weights"]
    lines = [
        f"Smol family, in process (hf), top-20, {texts} texts; suspect rio_mini (0.6 nex_mini + 0.4 smollm2); "
        f"candidates {', '.join(c for c, _ in pool)} (slerp_mini: mergekit slerp t 0.3, made here); controls (also "
        f"candidates) {', '.join(SMOL_CONTROLS)}.",
        "",
        "| candidate | root | merge of (in roots) | verdict against the members selected |",
        "|---|---|---|---|",
    ]
    for r in ev["tables"]["genealogy"]:
        roots = " + ".join(f"{k} {v:.2f}" for k, v in r["in_roots"].items())
        merge = "" if r["root"] else roots
        lines.append(f"| {r['candidate']} | {'yes' if r['root'] else 'no'} | {merge} | {r['verdict'] or ''} |")
    lines += [
        "",
        f"rio_mini: parents found {', '.join(rows['rio_mini']['parents_found']) or 'none'} (direct "
        f"{', '.join(rows['rio_mini']['selected'])}); weights "
        + ", ".join(f"{k} {v['value']:.3f} [{v['lo']:.3f}, {v['hi']:.3f}]" for k, v in w.items()),
        "",
        "| subject | pool | known parents | agree |",
        "|---|---|---|---|",
    ]
    for m in ["rio_mini", *SMOL_CONTROLS]:
        lines.append(f"| {m} | {said(ev, m)} | {said(known, m)} | {'yes' if said(ev, m) == said(known, m) else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", type=int, nargs="+", default=[11, 21, 35, 50])
    ap.add_argument("--screen", action="store_true", help="also the largest pool with screening (8 texts, 6 kept)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-pool"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--reanalyze", action="store_true", help="analyse the runs already in --work again (no collection)")
    ap.add_argument(
        "--smol", type=int, default=0, metavar="TEXTS", help="the smol family's pool instead, on TEXTS texts"
    )
    args = ap.parse_args()
    if args.smol:
        args.work.mkdir(parents=True, exist_ok=True)
        text = smol(args.work, args.smol)
        print(text)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "pool-smol.md").write_text(text + "\n")
        return
    zoo = TINY if args.seed == 0 else TINY.with_name(f"{TINY.name}-seed{args.seed}")
    args.work.mkdir(parents=True, exist_ok=True)
    results = [run(zoo, n, args.work, False, args.reanalyze) for n in args.sizes]
    if args.screen:
        results.append(run(zoo, max(args.sizes), args.work, True, args.reanalyze))
    known = known_parent(zoo, args.work)
    subjects = ["linear_0.6", *CONTROLS]
    base = results[0]["analyse_s"]
    lines = [
        f"Tiny zoo seed {args.seed}, 64 texts, full mode; suspects {', '.join(SUSPECTS)}; controls (also candidates) "
        f"{', '.join(CONTROLS)}.",
        "",
        "| pool | from other seeds | screened | requests (cold) | analyse s | x smallest | roots | merges of the pool "
        "(in roots) | suspects' parents (roots) | controls given a parent | agrees with known parents |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        agree = [m for m in subjects if said(r["ev"], m) == said(known, m)]
        differ = [f"{m}: {said(r['ev'], m)} (known: {said(known, m)})" for m in subjects if m not in agree]
        lines.append(
            f"| {r['size']} | {r['other_seeds']} | {'8 texts, 6 kept' if r['screen'] else 'no'} | {r['requests']} | "
            f"{r['analyse_s']:.1f} | {r['analyse_s'] / base:.2f} | {r['roots']} | {'; '.join(r['merges']) or 'none'} | "
            f"{'; '.join(r['found'])} | {', '.join(r['false']) or 'none (0 of 5)'} | "
            f"{len(agree)} of {len(subjects)}{'; ' if differ else ''}{'; '.join(differ)} |"
        )
    lines += ["", "Known parents (parent_a, parent_b given): " + "; ".join(f"{m} {said(known, m)}" for m in subjects)]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "pool.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
