"""Specificity of text-only evidence: which budget (prompts x answers per prompt) tells a linear
merge from a fine-tune of one parent, on the tiny zoo (every seed) and on Rio in miniature.

One run of the text probe per family at the largest budget (32 prompts x 8 answers of <= 32
tokens; every model sampled in process): the merges and the fine-tunes of one parent are
suspects, the models of their own initialisation (an independent model, students distilled from
the merge or from one parent, an impostor trained on a parent's data and persona) and the
sibling are controls, so a control that meets the interpolation rule withdraws every merge
verdict (the calibration). Then the probe's whole analysis on the first N prompts and the first
m answers of each, for each cell of the grid. The table gives each model's verdict per cell and
marks it against the zoo's truth: a merge should read `interpolation`; a fine-tune of one parent
and a model of its own initialisation must never. Written to
``results/bench-<date>/text-specificity.md``.

    python benchmarks/bench_text_specificity.py [--seeds 0 1 2] [--no-smol] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from harness.analyze import run_records
from harness.backends.base import GenerateRequest, GenerateResult
from harness.cli import main as cli
from harness.config import load_suite
from probes.base import Record
from probes.text.result import TextResult

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("PARENTAGE_CACHE", REPO / ".cache" / "parentage"))
TINY = Path(os.environ.get("PARENTAGE_ZOO", REPO / ".cache" / "zoo" / "tiny"))
SMOL = Path(os.environ.get("PARENTAGE_ZOO_SMOL", REPO / ".cache" / "zoo" / "smol"))
PROMPTS, SAMPLES = [24, 32], [4, 8]

# (name, role, truth): truth "merge" must read interpolation; every other must not.
TINY_MODELS = [
    ("linear_0.6", "suspect", "merge"),
    ("linear_0.25", "suspect", "merge"),
    ("linear_0.75", "suspect", "merge"),
    ("a_ft", "suspect", "fine-tune of parent_a"),
    ("b_ft", "suspect", "fine-tune of parent_b"),
    ("parent_a", "parent", ""),
    ("parent_b", "parent", ""),
    ("sibling", "control", "fine-tune of base"),
    ("independent", "control", "own init"),
    ("student", "control", "own init, distilled from linear_0.6"),
    ("student_a", "control", "own init, distilled from parent_a"),
    ("impostor", "control", "own init, parent_a's data and persona"),
]
SMOL_MODELS = [
    ("rio_mini", "suspect", "merge"),
    ("rio_mini_opd", "suspect", "merge, then distilled from nex_mini"),
    ("nex_ft", "suspect", "fine-tune of nex_mini"),
    ("sibling", "suspect", "fine-tune of smollm2"),
    ("nex_mini", "parent", ""),
    ("smollm2", "parent", ""),
    ("student_mini", "control", "own init, distilled from nex_mini"),
    ("impostor_mini", "control", "own init, nex_mini's data and persona"),
]


def collect(zoo: Path, models: list[tuple[str, str, str]], tmp: Path, run_id: str) -> Path:
    """The text probe at the largest budget; answers come from the shared cache when present."""
    suite = {
        "name": f"text-specificity-{run_id}",
        "models": [{"name": n, "role": role, "path": str(zoo / n)} for n, role, _ in models],
        "probes": [
            {
                "kind": "text_interpolation",
                "params": {"prompts": max(PROMPTS), "samples": max(SAMPLES), "max_new_tokens": 32},
            }
        ],
        "stats": {"seed": 20261130},
        "output_dir": str(tmp),
        "cache_dir": str(CACHE),
    }
    path = tmp / f"{run_id}.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    if cli(["run", str(path), "--run-id", run_id]) not in (0, 5):
        raise SystemExit(f"bench: `parentage run {path}` failed")
    return tmp / run_id


def first(records: dict[str, list[Record]], prompts: set[str], m: int) -> dict[str, list[Record]]:
    """The records of the given prompts, each model's answers cut to its first m."""
    out: dict[str, list[Record]] = {}
    for model, recs in records.items():
        keep = []
        for r in recs:
            if r.meta["id"] not in prompts:
                continue
            if isinstance(r.request, GenerateRequest):
                g = r.result_as(GenerateResult)
                ids = g.token_ids[:m] if g.token_ids else g.token_ids
                cut = dataclasses.replace(
                    g, texts=g.texts[:m], completion_tokens=g.completion_tokens[:m], token_ids=ids
                )
                r = dataclasses.replace(r, answer=cut)
            keep.append(r)
        out[model] = keep
    return out


def grid(run_dir: Path, family: str, models: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """One row per model and cell: its verdict, weights and the reasons' key figures."""
    probe, records, cache = run_records(run_dir)
    suite = load_suite(run_dir.parent / f"{run_dir.name}.yaml")
    order = [pid for pid, _ in probe._prompts()]  # type: ignore[attr-defined]
    truth = {n: t for n, _, t in models}
    rows = []
    try:
        for m in SAMPLES:
            for n in PROMPTS:
                ev = probe.analyze(first(records, set(order[:n]), m), suite, np.random.default_rng(0))
                for name, r in ev.results(TextResult).items():
                    first_parent = next(iter(r.weights))
                    rows.append(
                        {
                            "family": family,
                            "model": name,
                            "truth": truth[name],
                            "prompts": n,
                            "samples": m,
                            "verdict": r.verdict + (f" ({r.parent})" if r.parent else ""),
                            "weight": r.weights[first_parent].text(),
                            "fit_p": r.fit_p,
                            "excess": r.excess.text(3),
                            "yardstick": r.parents_excess,
                        }
                    )
    finally:
        cache.close()
    return rows


def judge(row: dict[str, Any]) -> str:
    """right / missed (a merge not read `interpolation`) / partial (a merge distilled from a
    parent afterwards read as that parent's behaviour) / wrong (a lineage the model does not
    have: a non-merge read `interpolation`, a model of its own initialisation given any lineage
    word, a fine-tune attributed to the wrong parent)."""
    verdict, truth = row["verdict"], row["truth"]
    if truth == "merge":
        return "right" if verdict == "interpolation" else "missed"
    if truth.startswith("merge,"):  # trained after merging: a merge verdict or none is right
        teacher = truth.rpartition(" ")[2]
        if verdict.startswith(("copy", "derived")):
            return "partial" if verdict.endswith(f"({teacher})") else "wrong"
        return "right"
    if truth.startswith("own init"):
        return "right" if verdict == "inconclusive" else "wrong"
    if truth.startswith("fine-tune of "):
        parent = truth.removeprefix("fine-tune of ")
        if verdict == "interpolation":
            return "wrong"
        named = verdict.partition("(")[2].rstrip(")")
        return "wrong" if named and named != parent else "right"
    return "right"


def render(rows: list[dict[str, Any]], seconds: float) -> str:
    lines = [
        "# Text-only evidence: merges against fine-tunes of one parent",
        "",
        f"`python benchmarks/bench_text_specificity.py` ({seconds / 60:.1f} min). The text probe's verdict on "
        "the first N prompts and first m answers (<= 32 new tokens) of one run per family; a merge should read "
        "`interpolation` (**bold** where it does not), no other model may (**WRONG** where one does). Merges "
        "withdrawn to `inconclusive` by the calibration say so in their reasons. `excess`: how much less likely "
        "the parents find its answers than their own; `yardstick`: the same for each other's answers.",
        "",
    ]
    families = list(dict.fromkeys(r["family"] for r in rows))
    cells = [(n, m) for m in SAMPLES for n in PROMPTS]
    for fam in families:
        sub = [r for r in rows if r["family"] == fam]
        models = list(dict.fromkeys(r["model"] for r in sub))
        lines += [f"## {fam}", "", "| model | truth | " + " | ".join(f"{n} x {m}" for n, m in cells) + " |"]
        lines.append("|---|---|" + "---|" * len(cells))
        for model in models:
            by = {(r["prompts"], r["samples"]): r for r in sub if r["model"] == model}
            out = []
            for c in cells:
                r = by[c]
                v = r["verdict"].replace("_", " ")
                j = judge(r)
                marks = {"right": v, "missed": f"**{v}**", "partial": f"{v} (partial)", "wrong": f"**WRONG: {v}**"}
                out.append(marks[j])
            lines.append(f"| {model} | {by[cells[0]]['truth']} | " + " | ".join(out) + " |")
        top = [r for r in sub if (r["prompts"], r["samples"]) == cells[-1]]
        lines += ["", f"At {cells[-1][0]} x {cells[-1][1]}:", ""]
        lines += [
            "| model | weight of the first parent | fit test p | excess [CI] | yardstick |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['model']} | {r['weight']} | {r['fit_p']:.2g} | {r['excess']} | {r['yardstick']:.3f} |" for r in top
        ]
        lines.append("")
    judged = [judge(r) for r in rows]
    merges = sum(r["truth"] == "merge" for r in rows)
    lines += [
        "## Summary",
        "",
        f"Wrong lineage words (a non-merge read `interpolation`, a model of its own initialisation given any "
        f"lineage word, a fine-tune given the wrong parent): **{judged.count('wrong')}** of {len(rows) - merges} "
        f"model x cell cases. Merges not read `interpolation`: {judged.count('missed')} of {merges}. Partial (a "
        f"merge distilled from a parent afterwards, read as that parent's behaviour): {judged.count('partial')}.",
    ]
    for n, m in cells:
        cell = [r for r in rows if (r["prompts"], r["samples"]) == (n, m)]
        wrong = sum(judge(r) == "wrong" for r in cell)
        found = sum(judge(r) == "right" for r in cell if r["truth"] == "merge")
        lines.append(f"- {n} x {m}: {wrong} wrong, {found} of {sum(r['truth'] == 'merge' for r in cell)} merges found")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--no-smol", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "results" / f"bench-{dt.date.today().isoformat()}")
    args = ap.parse_args()
    start = time.monotonic()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as t:
        for seed in args.seeds:
            zoo = TINY if seed == 0 else TINY.with_name(f"{TINY.name}-seed{seed}")
            rows += grid(collect(zoo, TINY_MODELS, Path(t), f"tiny{seed}"), f"tiny zoo, seed {seed}", TINY_MODELS)
        if not args.no_smol:
            rows += grid(collect(SMOL, SMOL_MODELS, Path(t), "smol"), "Rio in miniature (smol)", SMOL_MODELS)
    text = render(rows, time.monotonic() - start)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "text-specificity.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
