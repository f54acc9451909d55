"""Text-only evidence with the parents served by vLLM against the parents in process (issue 29).

Runs ``configs/text-rio-mini.yaml`` (parents scored by ``hf``, full vocabulary in compact
storage) and ``configs/text-rio-mini-vllm.yaml`` (parents scored by their vLLM servers, top-20
prompt log-probs after the server's own chat prompt), or reads two finished runs, and prints:

* each model's fitted weight of nex_mini with its CI, T, held-out gain and verdict, side by side;
* the log-probs both parents gave the *same answers* (rio_mini's, identical in both runs: same
  server, same seeds), hf against vLLM: the largest absolute difference over every token;
* the wall time of each run.

    python benchmarks/bench_text_vllm.py [--hf-run DIR --vllm-run DIR] [--out FILE]

Needs ``make test-data`` (the smol zoo, .venv-vllm). Both suites take about 10 minutes each on
two cores.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import date, datetime
from pathlib import Path

import numpy as np

from harness.analyze import run_records
from harness.backends.base import GenerateRequest, GenerateResult, ScoreRequest, ScoreResult
from harness.cli import main as parentage

REPO = Path(__file__).resolve().parent.parent
SUITES = {"hf": REPO / "configs" / "text-rio-mini.yaml", "vllm": REPO / "configs" / "text-rio-mini-vllm.yaml"}
PARENTS = ("nex_mini", "smollm2")


def run_suite(suite: Path, results: Path, run_id: str) -> Path:
    os.environ["PARENTAGE_RESULTS"] = str(results)
    if parentage(["run", str(suite), "--run-id", run_id]) != 0:
        raise SystemExit(f"{suite} did not finish")
    return results / run_id


def scores_of(run_dir: Path, model: str) -> dict[str, dict[tuple[str, str], ScoreResult]]:
    """Each parent's scoring of ``model``'s answers, by (prompt id, answer text)."""
    _, records, cache = run_records(run_dir)
    try:
        answers = {
            (r.meta["id"], t)
            for r in records[model]
            if isinstance(r.request, GenerateRequest)
            for t in r.result_as(GenerateResult).texts
        }
        return {
            p: {
                (r.meta["id"], r.request.text): r.result_as(ScoreResult)
                for r in records[p]
                if isinstance(r.request, ScoreRequest) and (r.meta["id"], r.request.text) in answers
            }
            for p in PARENTS
        }
    finally:
        cache.close()


def agreement(hf_run: Path, vllm_run: Path, model: str = "rio_mini") -> tuple[int, int, float, float]:
    """(answers, tokens, max |diff|, mean |diff|) of the parents' log-probs of the same answers."""
    a, b = scores_of(hf_run, model), scores_of(vllm_run, model)
    diffs, answers = [], 0
    for p in PARENTS:
        for key in sorted(set(a[p]) & set(b[p])):
            x, y = a[p][key], b[p][key]
            if x.token_ids.tolist() != y.token_ids.tolist():
                raise SystemExit(f"{p} tokenised answer {key} differently in the two runs")
            diffs.append(np.abs(x.token_logprobs.astype(np.float64) - y.token_logprobs))
            answers += 1
    d = np.concatenate(diffs)
    return answers, int(d.size), float(d.max()), float(d.mean())


def wall_s(run_dir: Path) -> float:
    times = [json.loads(x)["time"] for x in (run_dir / "run.jsonl").read_text().splitlines() if x.strip()]
    return (datetime.fromisoformat(times[-1]) - datetime.fromisoformat(times[0])).total_seconds()


def table(hf_run: Path, vllm_run: Path) -> str:
    per = {}
    for key, run in (("hf", hf_run), ("vllm", vllm_run)):
        ev = json.loads((run / "evidence.json").read_text())["probes"][0]
        per[key] = ev["per_model"]
    rows = [
        "| model | parents | weight of nex_mini [95% CI] | T | held-out gain (p) | scored tokens | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in per["vllm"]:
        for key in ("hf", "vllm"):
            r = per[key].get(m)
            if r is None:
                continue
            w, t = r["weights"]["nex_mini"], r["temperature"]
            rows.append(
                f"| {m} | {key} | {w['value']:.3f} [{w['lo']:.3f}, {w['hi']:.3f}] | {t['value']:.2f} | "
                f"{r['cv_gain']:.4f} ({r['cv_p']:.1e}) | {r['tokens']} | {r['verdict']} |"
            )
    answers, tokens, worst, mean = agreement(hf_run, vllm_run)
    rows += [
        "",
        f"The parents' log-probs of the same {answers} answers (rio_mini's, both parents), hf against vLLM: "
        f"{tokens} tokens, max |difference| {worst:.1e}, mean {mean:.1e}.",
        f"Wall time: hf parents {wall_s(hf_run):.0f} s, vLLM parents {wall_s(vllm_run):.0f} s.",
    ]
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hf-run", type=Path)
    ap.add_argument("--vllm-run", type=Path)
    ap.add_argument("--out", type=Path, default=REPO / "results" / f"bench-{date.today()}" / "text-vllm.md")
    args = ap.parse_args()
    results = args.out.parent / "runs"
    hf_run = args.hf_run or run_suite(SUITES["hf"], results, "text-hf")
    vllm_run = args.vllm_run or run_suite(SUITES["vllm"], results, "text-vllm")
    text = table(hf_run, vllm_run)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"# Text-only evidence, parents in process (hf) and served by vLLM\n\n{text}\n")
    print(text)


if __name__ == "__main__":
    main()
