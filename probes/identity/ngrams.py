"""Verbatim reuse: the longest run of tokens a response shares with a pool of other responses.

Tokens are words in spaced scripts and single characters in CJK scripts, lower-cased, so the
measure works across the languages of the identity question bank without a model tokenizer.
"""

from __future__ import annotations

import re

import numpy as np

from harness.stats import permutation_pvalue

TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\u3040-\u30ff]|[^\W_]+", re.UNICODE)


def tokens(text: str) -> list[str]:
    return [t.lower() for t in TOKEN.findall(text)]


class NgramPool:
    """All n-grams of a pool of texts, built lazily per n, for longest-shared-run queries."""

    def __init__(self, texts: list[str]):
        self.docs = [tokens(t) for t in texts]
        self._sets: dict[int, set[tuple[str, ...]]] = {}

    def _grams(self, n: int) -> set[tuple[str, ...]]:
        if n not in self._sets:
            self._sets[n] = {tuple(d[i : i + n]) for d in self.docs for i in range(len(d) - n + 1)}
        return self._sets[n]

    def longest_shared(self, text: str) -> tuple[int, str]:
        """Length and text of the longest token run of ``text`` that occurs in the pool."""
        toks = tokens(text)
        best, where = 0, ""
        n = 1
        while n <= len(toks):
            grams = self._grams(n)
            hit = next((toks[i : i + n] for i in range(len(toks) - n + 1) if tuple(toks[i : i + n]) in grams), None)
            if hit is None:
                break  # no run of length n means none longer either
            best, where = n, " ".join(hit)
            n += 1
        return best, where


def reuse_permutation_test(
    lengths_a: np.ndarray, lengths_b: np.ndarray, threshold: int, rng: np.random.Generator, permutations: int = 10000
) -> tuple[float, float, float]:
    """Share of responses with a shared run >= ``threshold`` against pool A and against pool B.

    ``lengths_a[i]`` / ``lengths_b[i]`` are response i's longest shared runs with each pool. The
    one-sided p-value (A > B) comes from swapping the two labels within each response at
    random, a paired sign-flip permutation test. Returns (rate A, rate B, p).
    """
    a = (np.asarray(lengths_a) >= threshold).astype(float)
    b = (np.asarray(lengths_b) >= threshold).astype(float)
    observed = a.mean() - b.mean()
    d = a - b
    flips = rng.choice([-1.0, 1.0], size=(permutations, len(d)))
    null = (flips * d).mean(axis=1)
    return float(a.mean()), float(b.mean()), permutation_pvalue(observed, null)
