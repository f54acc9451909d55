"""Request throughput of the ``openai`` backend against a bare httpx loop, and cache replay.

Both clients talk to the same real llama.cpp server (SmolLM2-135M-Instruct, started here on
127.0.0.1) with the same concurrency and the same request bodies, alternating so that server
warm-up and machine noise hit both alike. The ratio isolates the backend's own overhead:
pydantic requests, retry bookkeeping, usage accounting and result packaging. The replay line
times reading the same answers back from the response cache, which is what a resumed or
re-analysed run pays instead of the server.

    python benchmarks/bench_openai_throughput.py [--requests 48] [--concurrency 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from harness import assets
from harness.backends.base import GenerateRequest, ModelRef
from harness.backends.openai import OpenAIBackend
from harness.cache import Cache, cache_key

QUESTIONS = ["Who are you?", "Name a colour.", "What is 2+2?", "Say hello.", "Name a fruit.", "What day is it?"]


def start_llama_server(
    port: int, gguf: Path | None = None, alias: str = "smollm2", chat_format: str | None = None
) -> subprocess.Popen:
    """llama.cpp's server (llama-cpp-python[server]) on 127.0.0.1:``port`` serving ``gguf``
    (default: SmolLM2); ``chat_format`` for a GGUF without a chat template."""
    gguf = gguf or assets.require("smollm2-gguf")
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", alias]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", "--seed", "0"]
    cmd += ["--chat_format", chat_format] if chat_format else []
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("llama.cpp server did not start")


def bare(url: str, bodies: list[dict], concurrency: int) -> None:
    async def go() -> None:
        sem = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(timeout=120) as client:

            async def one(b: dict) -> None:
                async with sem:
                    r = await client.post(f"{url}/chat/completions", json=b)
                    r.raise_for_status()
                    r.json()

            await asyncio.gather(*(one(b) for b in bodies))

    asyncio.run(go())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--port", type=int, default=18931)
    args = ap.parse_args()

    reqs = [
        GenerateRequest(messages=[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}], max_new_tokens=8, seed=i)
        for i in range(args.requests)
    ]
    bodies = [
        {"model": "smollm2", "messages": r.messages, "max_tokens": 8, "temperature": 0.0, "top_p": 1.0, "seed": r.seed}
        for r in reqs
    ]
    proc = start_llama_server(args.port)
    url = f"http://127.0.0.1:{args.port}/v1"
    try:
        spec = ModelRef(
            name="smollm2",
            path="smollm2",
            options={"base_url": url, "concurrency": args.concurrency, "probe_capabilities": False},
        )
        backend = OpenAIBackend(spec)
        backend.load()
        bare(url, bodies[:4], args.concurrency)  # warm-up
        t_backend, t_bare = [], []
        results = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            results = backend.generate(reqs)
            t_backend.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            bare(url, bodies, args.concurrency)
            t_bare.append(time.perf_counter() - t0)
    finally:
        proc.terminate()
        proc.wait(15)

    with tempfile.TemporaryDirectory() as tmp:
        cache = Cache(Path(tmp))
        keys = [cache_key("bench", "identity", "1", r) for r in reqs]
        for k, res in zip(keys, results):
            cache.put(k, res, "bench", "identity")
        t_replay = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for k in keys:
                cache.get(k)
            t_replay.append(time.perf_counter() - t0)
        cache.close()

    n = args.requests
    rb, rr = n / statistics.median(t_backend), n / statistics.median(t_bare)
    rc = n / statistics.median(t_replay)
    print(f"\n{n} chat requests (8 new tokens), concurrency {args.concurrency}, median of {args.repeats}")
    print("| path | requests/s | ratio to bare httpx |")
    print("|---|---|---|")
    print(f"| bare httpx loop | {rr:.2f} | 1.000 |")
    print(f"| openai backend | {rb:.2f} | {rb / rr:.3f} |")
    print(f"| cache replay | {rc:.0f} | {rc / rr:.0f} |")


if __name__ == "__main__":
    main()
