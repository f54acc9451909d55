"""The rebuild probe over the calibration zoos: the weight-space a it finds for every merge
(against the truth in ``zoo.json``, written when the zoo was built), how often its CI covers the
truth, the equality verdict of every member and control, and what it cost.

    python benchmarks/bench_rebuild.py [--seeds 0 1 2] [--smol] [--densities 0.5 0.8 0.9] [--out results/bench-DATE]

Tiny zoo: both parents, every two-parent member as a subject (merges as suspects, the rest as
controls), in process (hf, full vocabulary), with the zoo's base as params.base (so task
arithmetic, ties and dare_ties are tried) at the ``--densities`` given. Smol family: nex_mini and smollm2 as parents,
Rio-mini and Rio-mini trained on-policy after merging, the sibling, the fine-tune and the
students, in process (hf, compact full vocabulary).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.cli import main as cli_main  # noqa: E402

TINY = Path(os.environ.get("PARENTAGE_ZOO", REPO / ".cache" / "zoo" / "tiny"))
SMOL = Path(os.environ.get("PARENTAGE_ZOO_SMOL", REPO / ".cache" / "zoo" / "smol"))
SKIP = {"linear3", "homegrown_tokenizer", "base", "parent_c"}  # a third parent / another tokenizer / the base


def suite_for(
    zoo: Path, parents: list[str], out: Path, max_texts: int, densities: list[float]
) -> tuple[dict[str, Any], dict[str, Any]]:
    members = json.loads((zoo / "zoo.json").read_text())["members"]
    models = [{"name": p, "role": "parent", "path": str(zoo / p)} for p in parents]
    for name, m in members.items():
        if name in parents or name in SKIP or not (zoo / name / "config.json").exists():
            continue
        role = "suspect" if str(m.get("kind", "")).startswith("interpolation") else "control"
        models.append({"name": name, "role": role, "path": str(zoo / name)})
    params: dict[str, Any] = {"max_texts": max_texts, "densities": densities}
    if (zoo / "base" / "config.json").exists() and "base" not in parents:
        params["base"] = str(zoo / "base")
    suite = {
        "name": f"rebuild-{zoo.name}",
        "models": models,
        "probes": [{"kind": "rebuild", "params": params}],
        "output_dir": str(out),
    }
    return suite, members


def run_zoo(zoo: Path, parents: list[str], tmp: Path, max_texts: int, densities: list[float]) -> list[dict[str, Any]]:
    suite, members = suite_for(zoo, parents, tmp / zoo.name, max_texts, densities)
    path = tmp / f"{zoo.name}.yaml"
    path.write_text(yaml.safe_dump(suite))
    code = cli_main(["run", str(path)])
    return rows_of(sorted((tmp / zoo.name).iterdir())[-1], members, parents, code)


def rows_of(run_dir: Path, members: dict[str, Any], parents: list[str], code: int) -> list[dict[str, Any]]:
    """One table row per subject of a finished run; minutes from the run log's first and last events
    (an ``analyze`` appends to it, so the collection's end is the first ``run_end``)."""
    events = [json.loads(line) for line in (run_dir / "run.jsonl").read_text().splitlines()]
    end = next(e for e in events if e.get("event") == "run_end")
    seconds = (datetime.fromisoformat(end["time"]) - datetime.fromisoformat(events[0]["time"])).total_seconds()
    evidence = json.loads((run_dir / "evidence.json").read_text())
    built = [e for e in events if e.get("event") == "model_built"]
    ev = next(p for p in evidence["probes"] if p["probe"] == "rebuild")
    rows = []
    for name, r in ev["per_model"].items():
        truth = members[name]
        true_a = (truth.get("parents") or {}).get(parents[0])
        true_b = (truth.get("parents") or {}).get(parents[1])
        best = next((f for f in r["fits"] if f["family"] == r["best"]), None)
        rows.append(
            {
                "zoo": run_dir.parent.name,
                "member": name,
                "truth": f"{truth.get('kind')} {truth.get('method', '')}".strip(),
                "true_a": true_a,
                "true_b": true_b,
                "method": truth.get("method"),
                "verdict": r["verdict"],
                "family": r.get("best"),
                "a": best["a"] if best else None,
                "b": (best.get("weights") or [None, None])[1] if best else None,
                "distance": best["distance"] if best else None,
                "tolerance": best["tolerance"] if best else None,
                "p": best["p_equal"] if best else None,
                "rebuilds": r.get("rebuilds"),
            }
        )
    for row in rows:
        row["run_seconds"], row["builds"], row["exit"] = seconds, len(built), code
        row["build_bytes"] = sum(e["bytes"] for e in built)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| zoo | member | truth | true a | verdict | family | family right | a (95% CI) | abs error | CI covers | "
        "distance | tolerance | p (equal) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a, b = r["a"], r.get("b")
        err = cover = right = ""
        truths = [(a, r["true_a"])] + ([(b, r["true_b"])] if b else [])
        if a and r["true_a"] is not None and a["value"] is not None:
            err = " / ".join(f"{abs(x['value'] - t):.4f}" for x, t in truths)
            cover = "yes" if all(x["lo"] <= t <= x["hi"] for x, t in truths) else "no"
            right = "yes" if (r["family"] or "").split("@")[0] == r["method"] else "no"
        a_txt = " / ".join(f"{x['value']:.4f} [{x['lo']:.4f}, {x['hi']:.4f}]" for x, _ in truths) if a else ""
        true_txt = " / ".join(f"{t:g}" for _, t in truths if t is not None)
        d = r["distance"]
        out.append(
            f"| {r['zoo']} | {r['member']} | {r['truth']} | {true_txt} | "
            f"{r['verdict']} | {r['family'] or ''} | {right} | {a_txt} | {err} | {cover} | "
            f"{d['value']:.3g} | {r['tolerance']:.2g} | {r['p']:.2f} |"
            if d
            else f"| {r['zoo']} | {r['member']} | {r['truth']} | | {r['verdict']} | | | | | | | | |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--smol", action="store_true")
    ap.add_argument("--max-texts", type=int, default=32)
    ap.add_argument("--densities", type=float, nargs="+", default=[0.5], help="ties and dare_ties densities tried")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=None, help="keep the runs and their cache here (re-analysable)")
    ap.add_argument(
        "--reanalyze",
        action="store_true",
        help="with --work: analyse the runs already there again (parentage analyze), and tabulate",
    )
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    cost: list[str] = []
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
    where = contextlib.nullcontext(str(args.work)) if args.work else tempfile.TemporaryDirectory()
    with where as tmp:
        os.environ.setdefault("PARENTAGE_CACHE", str(Path(tmp) / "cache"))
        tiny = [TINY if s == 0 else TINY.with_name(f"{TINY.name}-seed{s}") for s in args.seeds]
        zoos = [(z, ["parent_a", "parent_b"]) for z in tiny]
        if args.smol:
            zoos.append((SMOL, ["nex_mini", "smollm2"]))
        for zoo, parents in zoos:
            if args.reanalyze:
                run_dir = sorted((Path(tmp) / zoo.name).iterdir())[-1]
                code = cli_main(["analyze", str(run_dir)])
                members = json.loads((zoo / "zoo.json").read_text())["members"]
                got = rows_of(run_dir, members, parents, code)
            else:
                got = run_zoo(zoo, parents, Path(tmp), args.max_texts, args.densities)
            rows += got
            g = got[0]
            gb, minutes = g["build_bytes"] / 1e9, g["run_seconds"] / 60
            cost.append(f"| {zoo.name} | {len(got)} | {g['builds']} | {gb:.2f} | {minutes:.1f} |")
            print(table(got), flush=True)
    text = "\n".join(
        [
            table(rows),
            "",
            "| zoo | subjects | merges built | GB written | minutes (whole run, 2 cores) |",
            "|---|---|---|---|---|",
            *cost,
        ]
    )
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "rebuild.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
