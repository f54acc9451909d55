"""Merge artifacts left in a checkpoint's repository: each a finding with where it was found.

Circumstantial (a recipe can be copied into an unrelated repository, and removed from a real
merge), so they are listed, never scored: a ``mergekit_config.yml`` naming the parents, a model
card that says "merge", safetensors metadata, and files identical to a parent's (config,
generation config, tokenizer) are what an analyst checks by hand first.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from probes.weights.checkpoint import Checkpoint

CARD_WORDS = re.compile(
    r"\b(merge[ds]?|mergekit|slerp|ties|dare|task[_ ]arithmetic|model[_ ]stock|linear merge)\b", re.I
)
COMPARED = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model")
DIMENSIONS = ("architectures", "model_type", "hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size")


def _sha(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def artifacts(subject: str, ckpt: Checkpoint, others: dict[str, Checkpoint]) -> list[dict[str, Any]]:
    root = ckpt.root
    out: list[dict[str, Any]] = []

    def add(kind: str, where: str, finding: str) -> None:
        out.append({"subject": subject, "kind": kind, "where": where, "finding": finding})

    for f in sorted([*root.glob("*.yml"), *root.glob("*.yaml")]):
        try:
            recipe = yaml.safe_load(f.read_text())
        except (yaml.YAMLError, UnicodeDecodeError):
            continue
        if isinstance(recipe, dict) and "merge_method" in recipe:
            models = sorted({Path(str(m)).name for m in re.findall(r"model:\s*(\S+)", f.read_text())})
            add(
                "merge recipe",
                f.name,
                f"merge_method {recipe['merge_method']!r}"
                + (f", base_model {Path(str(recipe['base_model'])).name}" if recipe.get("base_model") else "")
                + (f", models {', '.join(models)}" if models else ""),
            )
    for card in sorted(root.glob("README*")):
        for no, line in enumerate(card.read_text(errors="replace").splitlines(), 1):
            if CARD_WORDS.search(line):
                add("model card", f"{card.name}:{no}", line.strip()[:160])
                if sum(a["kind"] == "model card" for a in out) >= 5:
                    break
    for shard, meta in ckpt.metadata.items():
        extra = {k: v for k, v in meta.items() if k != "format"}
        if extra:
            add("safetensors metadata", shard, json.dumps(extra)[:300])
    cfg = root / "config.json"
    if cfg.is_file():
        mine = json.loads(cfg.read_text())
        add("config", "config.json", ", ".join(f"{k}={mine.get(k)}" for k in DIMENSIONS if k in mine))
    for name in COMPARED:
        h = _sha(root / name)
        if h is None:
            continue
        same = [o for o, c in others.items() if _sha(c.root / name) == h]
        add(
            "file identity",
            name,
            f"sha256 {h[:12]}: identical to {', '.join(same)}" if same else f"sha256 {h[:12]}: matches no parent's",
        )
    return out
