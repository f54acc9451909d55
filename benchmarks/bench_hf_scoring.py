"""Scoring throughput of the ``hf`` backend against a bare transformers forward loop.

Both run in this process, on the same model object and the same batches (length-sorted,
right-padded), so the ratio isolates the backend's own overhead: tokenisation, bookkeeping,
top-k extraction and result packaging. The baseline does the minimum needed for the same
numbers: forward, log_softmax, gather of the actual tokens.

    python benchmarks/bench_hf_scoring.py [--texts 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from harness import assets
from harness.backends.base import ModelRef, ScoreRequest
from harness.backends.hf import HFBackend

REPO = Path(__file__).resolve().parent.parent


def corpus(n: int) -> list[str]:
    lines = (REPO / "probes" / "shared" / "data" / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(x)["text"] for x in lines[:n]]


def bare_loop(model, tokenizer, texts: list[str], batch_size: int, max_tokens: int) -> int:
    encoded = [tokenizer(t)["input_ids"][:max_tokens] for t in texts]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    pad = tokenizer.pad_token_id
    tokens = 0
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        width = len(encoded[idx[0]])
        ids = torch.full((len(idx), width), pad)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, : len(encoded[i])] = torch.tensor(encoded[i])
            mask[r, : len(encoded[i])] = 1
        with torch.inference_mode():
            lp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
            lp.gather(-1, ids[:, 1:].unsqueeze(-1))
        tokens += sum(len(encoded[i]) - 1 for i in idx)
    return tokens


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--texts", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()
    zoo = Path(os.environ.get("PARENTAGE_ZOO", REPO / ".cache" / "zoo" / "tiny"))
    models = {"tiny parent_a": zoo / "parent_a", "SmolLM2-135M (GGUF)": assets.require("smollm2-gguf")}
    texts = corpus(args.texts)
    rows = []
    for label, path in models.items():
        b = HFBackend(ModelRef(name="bench", path=str(path), options={"batch_size": args.batch_size}))
        b.load()
        tokens = bare_loop(b.model, b.tokenizer, texts, args.batch_size, args.max_tokens)  # also a warm-up
        t_bare = timed(
            lambda b=b: bare_loop(b.model, b.tokenizer, texts, args.batch_size, args.max_tokens), args.repeats
        )
        for mode, k in (("full", 0), ("topk", 20)):
            reqs = [ScoreRequest(text=t, mode=mode, top_k=k, max_tokens=args.max_tokens) for t in texts]
            b.score(reqs)  # warm-up
            t_backend = timed(lambda reqs=reqs, b=b: b.score(reqs), args.repeats)
            rows.append((label, mode, tokens, tokens / t_backend, tokens / t_bare, t_bare / t_backend))
        b.close()
    print(
        f"hf backend scoring vs bare transformers forward loop ({args.texts} texts, batch {args.batch_size}, "
        f"<= {args.max_tokens} tokens, median of {args.repeats}, torch threads {torch.get_num_threads()})"
    )
    print(f"| {'model':<22} | {'mode':<4} | {'tokens':>6} | {'backend tok/s':>13} | {'bare tok/s':>10} | ratio |")
    print(f"|{'-' * 24}|{'-' * 6}|{'-' * 8}|{'-' * 15}|{'-' * 12}|-------|")
    for label, mode, tokens, tb, tr, ratio in rows:
        print(f"| {label:<22} | {mode:<4} | {tokens:>6} | {tb:>13.0f} | {tr:>10.0f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
