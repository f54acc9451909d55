"""The tokenizer probe's rule: how many diagnostic strings a model tokenises exactly like each
candidate (a Wilson CI on the exact-match rate), the best candidate, its exact ties, and the
sentence the report uses."""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.stats import wilson


def match_table(vectors: dict[str, np.ndarray], target: np.ndarray, alpha: float = 0.05) -> list[dict[str, Any]]:
    """Exact-match rate of ``target`` against each candidate count vector, best first."""
    n = len(target)
    rows = []
    for name, v in vectors.items():
        k = int((v == target).sum())
        lo, hi = wilson(k, n, 1 - alpha)
        rows.append({"candidate": name, "k": k, "n": n, "rate": k / n, "ci": [lo, hi]})
    return sorted(rows, key=lambda r: (-r["k"], r["candidate"]))


def identify(table: list[dict[str, Any]]) -> dict[str, Any]:
    """Best candidate, the exact tie set, and the sentence a report should use."""
    if not table:
        return {"best": None, "ties": [], "verdict": "no candidates"}
    top = table[0]["k"]
    ties = [r["candidate"] for r in table if r["k"] == top]
    n = table[0]["n"]
    if top == n:
        verdict = f"indistinguishable on {n} strings from " + ", ".join(ties)
    else:
        verdict = f"closest: {', '.join(ties)} ({top}/{n} strings identical)"
    if len(ties) > 1:
        verdict += f" (ambiguous among {len(ties)})"
    return {"best": ties[0] if len(ties) == 1 else None, "ties": ties, "verdict": verdict}
