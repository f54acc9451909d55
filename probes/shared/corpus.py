"""The shipped corpus: mixed-domain natural texts in several languages, one JSON object a line.

The logit probe scores it, the text probe samples answers to its first texts, and the logit
probe's task-free inputs are made from its words. A suite overrides it with ``data:``.
"""

from __future__ import annotations

from pathlib import Path

from harness.data import Item, balanced_head, load_items
from harness.suite import DataSource

CORPUS = Path(__file__).parent / "data" / "corpus.jsonl"


def corpus_items(data: DataSource | None, limit: int | None) -> list[Item]:
    """The suite's texts (its ``data:`` or the shipped corpus), the first ``limit`` balanced over
    sources so a short run still sees every domain."""
    return balanced_head(load_items(data, CORPUS), limit)
