"""Power of text-only evidence: prompts x samples per prompt needed for p < 1e-6 on the 0.6 merge.

One run of the text probe on the tiny zoo (``linear_0.6`` against ``parent_a`` and
``parent_b``, 64 prompts x 16 sampled answers), then the held-out gain test (the interpolation
against the better single parent, one-sided Wilcoxon over prompts: the test the verdict uses)
on the first N prompts and the first m answers of each. The table gives its p per cell (with
the fitted weight, sampled tokens scored and text re-tokenised) and,
per m, the fewest prompts with p < 1e-6, next to the log-prob modes' figure from
``bench_headline.py`` (texts needed with full, top-20 and next-token log-probs). Written to
``results/bench-<date>/text-power.md``.

    python benchmarks/bench_text_power.py [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from harness.analyze import run_records
from harness.cli import main as cli
from probes.text import analysis, likelihood
from probes.text.probe import TextInterpolationProbe

REPO = Path(__file__).resolve().parents[1]
ZOO = Path(os.environ.get("PARENTAGE_ZOO", REPO / ".cache" / "zoo" / "tiny"))
PROMPTS, SAMPLES = [16, 24, 32, 48, 64], [2, 4, 8, 16]
LOGIT_TEXTS = {"full": 32, "top-20": 32, "next-token top-20": 32}  # results/bench-2026-11-30/headline.md


def collect(tmp: Path, token_ids: bool) -> Path:
    """The run; with ``token_ids`` false the parents re-tokenise the answers' text (what a
    text-only API allows). Both runs share the cache, so the answers are the same."""
    suite = yaml.safe_load((REPO / "configs" / "text-tiny.yaml").read_text())
    suite["models"] = [m for m in suite["models"] if m["name"] in ("linear_0.6", "parent_a", "parent_b")]
    for m in suite["models"]:
        m["path"] = str(ZOO / Path(m["path"]).name)
    params = {"prompts": max(PROMPTS), "samples": max(SAMPLES), "bootstrap": 20, "token_ids": token_ids}
    suite["probes"][0]["params"] |= params
    suite |= {"output_dir": str(tmp / "results"), "cache_dir": str(tmp / "cache")}
    run_id = "ids" if token_ids else "text"
    (tmp / f"{run_id}.yaml").write_text(yaml.safe_dump(suite))
    assert cli(["run", str(tmp / f"{run_id}.yaml"), "--run-id", run_id]) == 0
    return tmp / "results" / run_id


def grid(run_dir: Path) -> tuple[dict[tuple[int, int], float], dict[tuple[int, int], float]]:
    """Per (prompts N, answers m): the held-out gain's p and the fitted weight of parent_a."""
    probe, records, cache = run_records(run_dir)
    assert isinstance(probe, TextInterpolationProbe)
    parents = ["parent_a", "parent_b"]
    answers, scores = analysis.answers(records, parents)
    samples = answers["linear_0.6"]
    order = [pid for pid, _ in probe._prompts()]
    p_of: dict[tuple[int, int], float] = {}
    weight: dict[tuple[int, int], float] = {}
    for m in SAMPLES:
        scored = analysis.scored_answers({pid: samples[pid][:m] for pid in order}, scores, parents)
        data = [analysis.prompt_data(scored[pid], 2, pid, probe.params.vocab_head) for pid in order]
        for n in PROMPTS:
            rng = np.random.default_rng(0)
            _, p, _ = likelihood.cv_gain(data[:n], rng, 20)
            p_of[(n, m)] = p
            w, _ = likelihood.weights_and_temperature(likelihood.fit(data[:n]))
            weight[(n, m)] = float(w[0])
    cache.close()
    return p_of, weight


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "results" / f"bench-{dt.date.today().isoformat()}")
    args = ap.parse_args()
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as t:
        p_of, weight = grid(collect(Path(t), token_ids=True))
        _, weight_text = grid(collect(Path(t), token_ids=False))
    lines = [
        "# Text-only evidence: power on the tiny zoo's 0.6 merge",
        "",
        f"`python benchmarks/bench_text_power.py` ({time.monotonic() - start:.0f} s). Held-out gain test of the "
        "interpolation against the better single parent (one-sided Wilcoxon over prompts, 20 half splits), on "
        "the first N prompts and first m sampled answers (<= 32 new tokens) of `linear_0.6`; in brackets the "
        "fitted weight of parent_a (truth 0.6) with the sampled tokens scored, then with the answers' text "
        "re-tokenised by the parents (a text-only API: the tiny zoo's byte-level tokenizer does not give the "
        "sampled tokens back for most answers). The Wilcoxon test over N prompts cannot go below 2^-N, so "
        "p < 1e-6 needs at least 20 prompts whatever m is.",
        "",
        "| prompts N | " + " | ".join(f"m = {m}" for m in SAMPLES) + " |",
        "|---:|" + "---|" * len(SAMPLES),
    ]
    for n in PROMPTS:
        lines.append(
            f"| {n} | "
            + " | ".join(f"{p_of[(n, m)]:.2g} ({weight[(n, m)]:.2f}; {weight_text[(n, m)]:.2f})" for m in SAMPLES)
            + " |"
        )
    lines += ["", "Fewest prompts with p < 1e-6:", "", "| data | prompts (texts) needed |", "|---|---:|"]
    for m in SAMPLES:
        need = next((n for n in PROMPTS if p_of[(n, m)] < 1e-6), None)
        lines.append(f"| text only, {m} answers per prompt | {need if need else f'> {max(PROMPTS)}'} |")
    for mode, n in LOGIT_TEXTS.items():
        lines.append(f"| log-probs, {mode} (`bench_headline.py`) | {n} |")
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "text-power.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
