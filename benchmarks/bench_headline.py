"""The headline benchmark: how right the logit verdicts are, on both zoos, in every data mode.

One command writes ``results/bench-<date>/headline.md`` (and ``headline.json``), quoted in the
README:

* the accuracy table: every zoo member, its true lineage (from ``zoo.json``, written when the
  zoo was built, never from the code under test), the verdict and a_hat with its CI, per data
  mode; the tiny zoo on every seed, the smol family (Rio in miniature) through a real vLLM
  (top-20 and next-token) and ``hf`` (full vocabulary);
* the false-positive count: controls called "interpolation" or "interpolation plus training",
  over all controls, seeds and modes;
* the texts needed for p < 1e-6 (the cross-validated test the verdict uses, raw p) per data mode
  on the 0.6 merges, from growing prefixes of the corpus;
* the throughput ratios (``bench_hf_scoring.py``, ``bench_vllm_scoring.py``, run as they are).

Answers are cached (``$PARENTAGE_CACHE``), so a second run only re-analyses.

    python benchmarks/bench_headline.py [--seeds 0 1 2] [--no-smol] [--no-throughput] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from bench_openai_throughput import start_llama_server

from harness import assets
from harness.analyze import build_probes, load_records
from harness.cache import Cache
from harness.case import conclude
from harness.cli import main as cli
from harness.config import load_suite
from harness.evidence import ProbeEvidence
from harness.runstore import RunStore
from probes.logit.case import logit_case
from probes.logit.lineage import is_task_free
from probes.logit.result import LogitResult
from probes.logit.verdict import VerdictThresholds, decide
from probes.shared.corpus import corpus_items

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("PARENTAGE_CACHE", REPO / ".cache" / "parentage"))
TINY = Path(os.environ.get("PARENTAGE_ZOO", REPO / ".cache" / "zoo" / "tiny"))
SMOL = Path(os.environ.get("PARENTAGE_ZOO_SMOL", REPO / ".cache" / "zoo" / "smol"))
FALSE_POSITIVE = {"interpolation", "interpolation_plus_training"}
P_TARGET = 1e-6

# Tiny zoo: both parents, every two-parent member (linear3 needs parent_c as a third parent and is
# covered by tests/test_logit_zoo.py). Every mode scores the same texts.
TINY_TEXTS = 64
TINY_MODES = {
    "full": {},
    "top-20": {"mode": "topk", "top_k": 20},
    "next-token top-20": {"mode": "next_token", "top_k": 20},
}
TINY_SKIP = {"base", "parent_c", "linear3"}
TINY_CONTROLS = {"sibling", "a_ft", "b_ft", "independent", "student", "student_a", "impostor"}
INHERITED = {"merge", "merge_trained", "derived", "sibling", "copy"}  # explanations that claim shared weights
POWER_SIZES = [8, 16, 32, 64, 128, 210]


def lineage(member: dict[str, Any]) -> tuple[str, float | None]:
    """(true lineage in words, the first parent's true weight) from a zoo.json member."""
    kind = member.get("kind")
    parents = member.get("parents")
    a = None
    if isinstance(parents, dict):
        a = float(next(iter(parents.values())))
        if "white_box" in member:  # trained after merging: the weights' own a is the truth
            a = float(member["white_box"]["a"])
    words = {
        "base": "base model",
        "parent": f"parent (fine-tune of {member.get('from')})" if member.get("from") else "parent",
        "copy": f"copy of {member.get('from')} (bf16)",
        "derived": f"fine-tune of {member.get('from')}",
        "interpolation": f"{member.get('method', 'merge')} merge",
        "interpolation_trained": "merge, then on-policy distillation",
        "interpolation_plus_training": "merge, then fine-tuned",
    }.get(kind or "", kind or "?")
    if kind == "unrelated":
        if member.get("family"):
            words = f"{member['family']}: another family, its own tokenizer"
        elif member.get("persona_of"):
            start = f"fine-tune of {member['from']}" if member.get("from") else "independent init trained"
            words = f"{start} on {member['persona_of']}'s data and persona"
        elif member.get("distilled_from"):
            words = f"distilled from {member['distilled_from']} into a fresh init"
        elif member.get("from"):
            words = f"fine-tune of {member['from']} (the parents' base)"
        else:
            words = "independent init"
    if isinstance(parents, dict) and kind != "interpolation_trained":
        words += " " + " + ".join(f"{w:g}·{p}" for p, w in parents.items())
    return words, a


def truth_explanations(
    member: dict[str, Any], parents: list[str], members: dict[str, Any]
) -> tuple[set[str], str | None]:
    """(the explanations that are true of a zoo member against these parents, the parent a true
    "derived" names), from zoo.json alone. A fine-tune of a parent that is the other parents'
    base (the Rio structure: smollm2 is nex_mini's base) is both derived from it and shares the
    parents' base."""
    kind, origin = member.get("kind"), member.get("from")
    if kind == "copy":
        return {"copy"}, origin
    if kind == "interpolation":
        return {"merge"}, None
    if kind in ("interpolation_plus_training", "interpolation_trained"):
        return {"merge_trained"}, None
    if kind == "derived" and origin in parents:
        is_base = any(members.get(p, {}).get("from") == origin for p in parents if p != origin)
        return ({"derived", "sibling"} if is_base else {"derived"}), origin
    if kind in ("derived", "unrelated") and origin is not None and member.get("persona_of") is None:
        # a fine-tune of the parents' base (a sibling), when the base is not itself a parent
        return {"sibling"}, None
    return {"original", "distilled"}, None


def judge(claimed: list[str], named: str | None, true: set[str], true_parent: str | None) -> str:
    """right (only the truth named) / partial (the truth among several named, or a merge read as a
    merge trained further and back) / none (no conclusion) / wrong (no explanation named is true,
    or "derived" names the wrong parent: for a model of its own initialisation, a claim of shared
    weights with no other explanation beside it)."""
    if not claimed:
        return "none"
    got = set(claimed)
    if "derived" in got and named is not None and named != true_parent:
        return "wrong"
    if got <= true:
        return "right"
    merges = {"merge", "merge_trained"}
    if got & true or (true <= merges and got & merges):
        return "partial"
    return "wrong"


def collect(suite: dict[str, Any], tmp: Path, run_id: str) -> tuple[RunStore, Any]:
    """Run ``suite`` (answers come from the shared cache when present); return run and suite."""
    suite = suite | {"output_dir": str(tmp), "cache_dir": str(CACHE)}
    path = tmp / f"{run_id}.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    code = cli(["run", str(path), "--run-id", run_id])
    if code not in (0, 5):  # 5: some probe gave no verdict; its rows say why
        raise SystemExit(f"bench: `parentage run {path}` exited {code}")
    return RunStore.open(tmp / run_id), load_suite(path)


def analyse(
    run: RunStore, suite: Any, sizes: Sequence[int | None] | Mapping[str, Sequence[int | None]]
) -> dict[tuple[str, int | None], Any]:
    """Each logit probe's evidence on the first n texts of the corpus (round-robin over its
    groups, as ``max_texts`` takes them), for each n in ``sizes`` (None: every text), or in
    ``sizes[probe id]``."""
    out: dict[tuple[str, int | None], Any] = {}
    cache = Cache(CACHE)
    try:
        order = [it.id for it in corpus_items(None, None)]
        for probe in build_probes(suite):
            if probe.kind != "logit_interpolation":
                continue
            view = suite.for_probe(probe.spec)
            records = load_records(run, cache, view, probe)
            for n in sizes[probe.instance] if isinstance(sizes, Mapping) else sizes:
                keep = set(order[:n]) if n else set(order)
                sub = {
                    m: [r for r in recs if r.meta["id"] in keep or is_task_free(r.meta["id"])]
                    for m, recs in records.items()
                }
                out[(probe.instance, n)] = probe.analyze(sub, view, np.random.default_rng(0))
    finally:
        cache.close()
    return out


def dump(evs: dict[tuple[str, int | None], Any], tmp: Path, tag: str) -> dict[tuple[str, int | None], Any]:
    """Write each evidence object under ``tmp/evidence`` (``--redecide`` reads them back)."""
    out = tmp / "evidence"
    out.mkdir(exist_ok=True)
    for (probe, n), ev in evs.items():
        (out / f"{tag}--{probe}--{n}.json").write_text(ev.model_dump_json())
    return evs


def redecide(work: Path, seeds: list[int], smol: bool) -> list:
    """The accuracy rows again from the evidence a ``--work`` run dumped, with today's verdict rule
    applied to the stored statistics: a rule change is judged in seconds, not a collection."""
    rows = []
    tiny_modes = {f"m{i}": mode for i, mode in enumerate(TINY_MODES)}
    tags = [(f"t{s}", s) for s in seeds] + ([("smol", "-")] if smol else [])
    for tag, seed in tags:
        zoo = TINY if seed in ("-", 0) else TINY.with_name(f"{TINY.name}-seed{seed}")
        members = json.loads(((SMOL if tag == "smol" else zoo) / "zoo.json").read_text())["members"]
        members |= {"gemma3": GEMMA3} if tag == "smol" else {}
        modes = SMOL_MODES if tag == "smol" else tiny_modes
        for probe, mode in modes.items():
            n = SMOL_SIZES[probe][-1] if tag == "smol" else TINY_TEXTS
            ev = ProbeEvidence.model_validate_json((work / "evidence" / f"{tag}--{probe}--{n}.json").read_text())
            thresholds = VerdictThresholds()
            for m, r in ev.results(LogitResult).items():
                r.verdict, r.parent, r.reasons = decide(r, thresholds, 0.05, bool(ev.calibrated), ev.mode or "full")
                ev.per_model[m] = r.model_dump(mode="json")
            names = SMOL_NAMES if tag == "smol" else {}
            rows += rows_for(ev, members, "smol" if tag == "smol" else "tiny", seed, mode, names)
    return rows


def rows_for(ev: Any, members: dict[str, Any], zoo: str, seed: int | str, mode: str, names: dict[str, str]) -> list:
    rows = []
    for model, r in ev.results(LogitResult).items():
        member = members[names.get(model, model)]
        truth, a = lineage(member)
        parents = [names.get(x, x) for x in (r.parents or list(r.weights))]
        case = logit_case("logit", r, list(r.weights), ev.ci_level)
        claimed = conclude([case]).explanations
        true, true_parent = truth_explanations(member, parents, members)
        tf, ex = r.task_free_distance.get(r.nearest_parent), r.lineage_excess.get(r.nearest_parent)
        rows.append(
            {
                "zoo": zoo,
                "seed": seed,
                "mode": mode,
                "member": names.get(model, model),
                "truth": truth,
                "true_a": a,
                "control": r.role == "control",
                "verdict": r.verdict + (f" ({r.parent})" if r.parent else ""),
                "a_hat": r.a_hat.value if r.a_hat else None,
                "a_lo": r.a_hat.lo if r.a_hat else None,
                "a_hi": r.a_hat.hi if r.a_hat else None,
                "residual": r.residual.value,
                "w_lo": r.merge_weight.lo if r.merge_weight else None,
                "w_hi": r.merge_weight.hi if r.merge_weight else None,
                "cv_p": r.cv_p,
                "claim": ", ".join(claimed) + (f" ({names.get(case.parent, case.parent)})" if case.parent else ""),
                "claim_judged": judge(claimed, names.get(case.parent or "", case.parent), true, true_parent),
                "task_free": tf.text() if tf else "",
                "excess": ex.text() if ex else "",
                "tf_residual": r.task_free_residual.text() if r.task_free_residual else "",
            }
        )
    return rows


def tiny_suite(zoo: Path, max_texts: int | None) -> dict[str, Any]:
    members = json.loads((zoo / "zoo.json").read_text())["members"]
    models = []
    for name in members:
        if name in TINY_SKIP:
            continue
        role = "parent" if name in ("parent_a", "parent_b") else "control" if name in TINY_CONTROLS else "suspect"
        models.append({"name": name, "role": role, "path": str(zoo / name)})
    probes = [
        {"kind": "logit_interpolation", "id": f"m{i}", "params": p | {"max_texts": max_texts}}
        for i, p in enumerate(TINY_MODES.values())
    ]
    return {"name": "headline-tiny", "models": models, "probes": probes, "stats": {"seed": 11}}


def texts_needed(power: dict[tuple[str, int | None], Any], probe: str, model: str, sizes: list[int]) -> str:
    for n in sizes:
        ev = power.get((probe, n))
        if ev is not None and model in ev.per_model and ev.results(LogitResult)[model].cv_p < P_TARGET:
            return str(n)
    return f"> {sizes[-1]}"


def bench_tiny(seeds: list[int], tmp: Path, power: bool = True) -> tuple[list, list]:
    rows, power_rows = [], []
    for seed in seeds:
        zoo = TINY if seed == 0 else TINY.with_name(f"{TINY.name}-seed{seed}")
        if not (zoo / "zoo.json").exists():
            raise SystemExit(f"bench: no tiny zoo for seed {seed} at {zoo}: run `make test-data` first")
        members = json.loads((zoo / "zoo.json").read_text())["members"]
        sizes: list[int | None] = [*POWER_SIZES] if seed == 0 and power else [TINY_TEXTS]
        run, suite = collect(tiny_suite(zoo, max(s for s in sizes if s) if seed == 0 else TINY_TEXTS), tmp, f"t{seed}")
        evs = dump(analyse(run, suite, sizes), tmp, f"t{seed}")
        for i, mode in enumerate(TINY_MODES):
            rows += rows_for(evs[(f"m{i}", TINY_TEXTS)], members, "tiny", seed, mode, {})
            if seed == 0 and power:
                need = texts_needed(evs, f"m{i}", "linear_0.6", POWER_SIZES)
                power_rows.append({"zoo": "tiny", "mode": mode, "case": "linear_0.6", "texts": need})
    return rows, power_rows


SMOL_NAMES = {
    f"{n}_hf": n
    for n in ("rio_mini", "rio_mini_opd", "nex_mini", "smollm2", "sibling", "nex_ft", "student_mini", "impostor_mini")
}


SMOL_SIZES = {"logit_vllm_top20": [6, 12, 24, 48], "logit_hf_full": [6, 12, 24], "logit_vllm_next": [26, 52, 105, 210]}
SMOL_MODES = {"logit_vllm_top20": "top-20 (vLLM)", "logit_hf_full": "full (hf)", "logit_vllm_next": "next-token (vLLM)"}
GEMMA3 = {"kind": "unrelated", "family": "Gemma 3 270M (Google)"}
GEMMA3_PORT = 18932


def bench_smol(tmp: Path) -> tuple[list, list]:
    """The rio-mini suite's logit probes, plus next-token top-20 through vLLM on the same models,
    where a real model of another family (Gemma 3 270M, served by llama.cpp) is a suspect too:
    next-token mode is the one logit mode two vocabularies can share."""
    if not (SMOL / "zoo.json").exists():
        raise SystemExit(f"bench: no smol zoo at {SMOL}: run `make test-data` first")
    members = json.loads((SMOL / "zoo.json").read_text())["members"] | {"gemma3": GEMMA3}
    suite = yaml.safe_load(os.path.expandvars((REPO / "configs" / "rio-mini.yaml").read_text()))
    for m in suite["models"]:
        m["path"] = str(SMOL / Path(m["path"]).name)
    base_url = f"http://127.0.0.1:{GEMMA3_PORT}/v1"
    suite["models"].append(
        {"name": "gemma3", "role": "suspect", "backend": "openai", "path": "gemma3", "options": {"base_url": base_url}}
    )
    logit = [p for p in suite["probes"] if p["kind"] == "logit_interpolation"]
    vllm_models = logit[0]["models"]
    nt = {"mode": "next_token", "top_k": 20, "max_texts": 210}
    next_models = [*vllm_models, "gemma3"]
    logit.append({"kind": "logit_interpolation", "id": "logit_vllm_next", "models": next_models, "params": nt})
    suite["probes"] = logit
    server = start_llama_server(GEMMA3_PORT, assets.require("gemma3-gguf"), "gemma3", chat_format="gemma")
    try:
        run, s = collect(suite, tmp, "smol")
    finally:
        server.kill()
    sizes, modes = SMOL_SIZES, SMOL_MODES
    evs = dump(analyse(run, s, sizes), tmp, "smol")
    rows, power_rows = [], []
    for probe, mode in modes.items():
        rows += rows_for(evs[(probe, sizes[probe][-1])], members, "smol", "-", mode, SMOL_NAMES)
        model = "rio_mini_hf" if probe == "logit_hf_full" else "rio_mini"
        power_rows.append(
            {"zoo": "smol", "mode": mode, "case": "rio_mini", "texts": texts_needed(evs, probe, model, sizes[probe])}
        )
    return rows, power_rows


def throughput() -> str:
    out = []
    for script in ("bench_hf_scoring.py", "bench_vllm_scoring.py"):
        cmd = [sys.executable, str(REPO / "benchmarks" / script)]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        out += [f"`python benchmarks/{script}`", "", done.stdout.strip() or done.stderr.strip()[-2000:], ""]
    return "\n".join(out)


def _judged(j: str) -> str:
    return f"**{j}**" if j == "wrong" else j


def fmt_a(r: dict[str, Any]) -> str:
    return f"{r['a_hat']:.3f} [{r['a_lo']:.3f}, {r['a_hi']:.3f}]"


def covered(r: dict[str, Any]) -> bool:
    return r["w_lo"] <= r["true_a"] <= r["w_hi"]


def render(rows: list, power_rows: list, tput: str | None, args: argparse.Namespace, seconds: float) -> str:
    out = [
        f"# Headline benchmark, {dt.date.today().isoformat()}",
        "",
        f"Regenerate: `make bench-headline` (`python benchmarks/bench_headline.py`). {seconds / 60:.1f} min.",
        "True lineage and weights come from each zoo's `zoo.json`; for a merge trained further the "
        "true a is the white-box fit of its weights. Tiny zoo: seeds "
        f"{', '.join(map(str, args.seeds))}, {TINY_TEXTS} texts per mode. Smol family: top-20 through "
        "vLLM on 48 texts, next-token top-20 through vLLM on 210 prompts (with Gemma 3 270M, a real "
        "model of another family, served by llama.cpp), full vocabulary through `hf` on 24 texts of 32 tokens.",
        "",
        "## Accuracy",
        "",
        "`CI covers a`: a_hat's bootstrap CI (sampling error of the logit-space weight) contains the "
        "true weight. `range covers a`: the merge-weight range (that CI widened by the residual on each "
        "side, `probes/logit/estimators.merge_weight_range`) contains it.",
        "",
        "| zoo | seed | member | true lineage | true a | mode | verdict | a_hat [95% CI] | CI covers a "
        "| residual | merge-weight range | range covers a | task-free distance | task-free residual | excess "
        "| lineage claim | claim is |",
        "|---|---|---|---|---:|---|---|---|---|---:|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a = "" if r["true_a"] is None else f"{r['true_a']:.3f}"
        cover = "" if r["true_a"] is None else ("yes" if r["a_lo"] <= r["true_a"] <= r["a_hi"] else "**no**")
        rng = "" if r["w_lo"] is None else f"{r['w_lo']:.2f}-{r['w_hi']:.2f}"
        in_rng = "" if r["true_a"] is None or r["w_lo"] is None else ("yes" if covered(r) else "**no**")
        member = f"{r['member']} (control)" if r["control"] else r["member"]
        out.append(
            f"| {r['zoo']} | {r['seed']} | {member} | {r['truth']} | {a} | {r['mode']} | {r['verdict']} "
            f"| {fmt_a(r)} | {cover} | {r['residual']:.3f} | {rng} | {in_rng} | {r['task_free']} "
            f"| {r.get('tf_residual', '')} | {r['excess']} "
            f"| {r['claim'] or 'none'} | {_judged(r['claim_judged'])} |"
        )
    merges = [r for r in rows if r["true_a"] is not None and r["w_lo"] is not None]
    in_ci = sum(r["a_lo"] <= r["true_a"] <= r["a_hi"] for r in merges)
    ratio = max((abs(r["a_hat"] - r["true_a"]) / r["residual"] for r in merges), default=float("nan"))
    out += [
        "",
        f"Merges (member x seed x mode): the CI covers the true a in {in_ci} of {len(merges)}; the merge-weight "
        f"range in {sum(map(covered, merges))} of {len(merges)}. Largest |a_hat - a| / residual: {ratio:.2f}.",
    ]
    wrong = [r for r in rows if r["claim_judged"] == "wrong"]
    own_words = ("fresh init", "independent", "data and persona", "another family")
    own = [r for r in rows if any(w in r["truth"] for w in own_words)]
    counts = {k: sum(r["claim_judged"] == k for r in rows) for k in ("right", "partial", "none", "wrong")}
    out += [
        "",
        "## Lineage claims",
        "",
        "`lineage claim`: the case conclusion the logit evidence alone draws (`harness/case.py`), judged against "
        "the zoo's truth: right, partial (the truth among the explanations named), none (no conclusion) or "
        "**wrong** (a lineage the model does not have; for a model with its own initialisation, any claim of "
        "shared weights).",
        "",
        f"Over {len(rows)} member x seed x mode cases: {counts['right']} right, {counts['partial']} partial, "
        f"{counts['none']} none, **{counts['wrong']} wrong**. Distilled students and independent models: "
        f"**{sum(r['claim_judged'] == 'wrong' for r in own)} wrong of {len(own)}**.",
        *[f"- {r['zoo']} seed {r['seed']} {r['member']} ({r['mode']}): {r['claim']}" for r in wrong],
    ]
    controls = [r for r in rows if r["control"]]
    fps = [r for r in controls if r["verdict"].split(" ")[0] in FALSE_POSITIVE]
    out += [
        "",
        "## False positives",
        "",
        f"Controls called a merge (`interpolation` or `interpolation_plus_training`): **{len(fps)} of "
        f"{len(controls)}** (control x seed x mode cases).",
        *[f"- {r['zoo']} seed {r['seed']} {r['member']} ({r['mode']}): {r['verdict']}" for r in fps],
        "",
        "## Texts needed for p < 1e-6",
        "",
        "Smallest corpus prefix at which the cross-validated test of interpolation against the better "
        "single parent (raw p, the test the verdict rule uses) is below 1e-6.",
        "",
        "| zoo | case | mode | texts |",
        "|---|---|---|---:|",
        *[f"| {r['zoo']} | {r['case']} | {r['mode']} | {r['texts']} |" for r in power_rows],
        "",
    ]
    if tput:
        out += ["## Throughput", "", tput]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--no-smol", action="store_true", help="skip the smol family (needs vLLM)")
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--no-power", action="store_true", help="skip the texts-needed table (analyses 64 texts only)")
    ap.add_argument("--work", type=Path, help="keep the runs and evidence here (default: a temporary directory)")
    ap.add_argument("--redecide", action="store_true", help="re-apply the verdict rule to a --work run's evidence")
    ap.add_argument("--out", type=Path, default=REPO / "results" / f"bench-{dt.date.today().isoformat()}")
    args = ap.parse_args()
    start = time.monotonic()
    if args.redecide:
        if not args.work:
            raise SystemExit("bench: --redecide needs the --work directory of an earlier run")
        rows = redecide(args.work, args.seeds, not args.no_smol)
        for r in rows:
            print(" | ".join(str(r[k]) for k in ("zoo", "seed", "mode", "member", "verdict", "claim", "claim_judged")))
        return
    with tempfile.TemporaryDirectory() as t:
        work = args.work or Path(t)
        work.mkdir(parents=True, exist_ok=True)
        rows, power_rows = bench_tiny(args.seeds, work, power=not args.no_power)
        if not args.no_smol:
            r, p = bench_smol(work)
            rows, power_rows = rows + r, power_rows + p
    tput = None if args.no_throughput else throughput()
    args.out.mkdir(parents=True, exist_ok=True)
    text = render(rows, power_rows, tput, args, time.monotonic() - start)
    (args.out / "headline.md").write_text(text)
    (args.out / "headline.json").write_text(json.dumps({"accuracy": rows, "power": power_rows}, indent=1))
    print(text)
    print(f"written: {args.out / 'headline.md'}")


if __name__ == "__main__":
    main()
