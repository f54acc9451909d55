"""White-box tokenizer fingerprints and pairwise comparison.

A weight merge copies its parents' tokenizer byte for byte; an independently trained model
almost never has the same vocabulary, let alone the same merge list. Hashing each part
separately says *which* parts agree: a model that kept a parent's vocabulary but changed its
chat template (common for rebrands) shows exactly that.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from harness.errors import InputError
from harness.tokenizers import tokenizer_dir

PARTS = ("model_type", "vocab", "merges", "added_tokens", "normalizer", "pre_tokenizer", "post_processor", "decoder")
ALL_PARTS = (*PARTS, "chat_template")


def _hash(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _merges(model: dict[str, Any]) -> list[str]:
    """Merges as "a b" strings: tokenizers writes either strings or [a, b] pairs."""
    return [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]


class TokenizerFingerprint(BaseModel):
    source: str
    hashes: dict[str, str]
    vocab_size: int
    n_merges: int
    special_tokens: list[str]
    chat_template: str | None

    # kept out of the JSON dump: large, only needed for comparison
    vocab: set[str] = set()
    merges: list[str] = []

    model_config = {"arbitrary_types_allowed": True}

    def summary(self) -> dict[str, Any]:
        return self.model_dump(exclude={"vocab", "merges"})


def _chat_template(folder: Path) -> str | None:
    cfg = folder / "tokenizer_config.json"
    if cfg.exists():
        tpl = json.loads(cfg.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(tpl, list):  # named templates: [{"name":..., "template":...}]
            tpl = {t["name"]: t["template"] for t in tpl}
        if tpl is not None:
            return tpl if isinstance(tpl, str) else json.dumps(tpl, sort_keys=True)
    jinja = folder / "chat_template.jinja"
    return jinja.read_text(encoding="utf-8") if jinja.exists() else None


def fingerprint(path: str | Path) -> TokenizerFingerprint:
    """Fingerprint a model dir, ``tokenizer.json`` or GGUF file (converted and cached)."""
    folder = tokenizer_dir(path)
    file = folder / "tokenizer.json"
    try:
        tj = json.loads(file.read_text(encoding="utf-8"))
        model = tj["model"]
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as e:
        raise InputError(f"{file}: not a tokenizers JSON file ({type(e).__name__}: {e})") from e
    vocab = model.get("vocab") or {}
    if isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        vocab = {piece: i for i, (piece, _score) in enumerate(vocab)}
    merges = _merges(model)
    added = sorted(
        (
            {"content": t["content"], "id": t["id"], "special": t.get("special", False)}
            for t in tj.get("added_tokens", [])
        ),
        key=lambda t: t["id"],
    )
    template = _chat_template(folder)
    parts = {
        "model_type": model.get("type"),
        "vocab": sorted(vocab.items(), key=lambda kv: kv[1]),
        "merges": merges,
        "added_tokens": added,
        "normalizer": tj.get("normalizer"),
        "pre_tokenizer": tj.get("pre_tokenizer"),
        "post_processor": tj.get("post_processor"),
        "decoder": tj.get("decoder"),
        "chat_template": template,
    }
    return TokenizerFingerprint(
        source=str(path),
        hashes={k: _hash(v) for k, v in parts.items()},
        vocab_size=len(vocab) + sum(1 for t in added if t["content"] not in vocab),
        n_merges=len(merges),
        special_tokens=[t["content"] for t in added if t["special"]],
        chat_template=template,
        vocab=set(vocab) | {t["content"] for t in added},
        merges=merges,
    )


def compare(a: TokenizerFingerprint, b: TokenizerFingerprint) -> dict[str, Any]:
    """Which parts are identical, vocabulary Jaccard, first differing merge rank, special-token
    differences and a unified diff of the chat templates."""
    identical = [p for p in ALL_PARTS if a.hashes[p] == b.hashes[p]]
    union = a.vocab | b.vocab
    first_diff = next((i for i, (x, y) in enumerate(zip(a.merges, b.merges)) if x != y), None)
    if first_diff is None and len(a.merges) != len(b.merges):
        first_diff = min(len(a.merges), len(b.merges))
    diff = list(
        difflib.unified_diff(
            (a.chat_template or "").splitlines(),
            (b.chat_template or "").splitlines(),
            fromfile=a.source,
            tofile=b.source,
            lineterm="",
        )
    )
    return {
        "identical_parts": identical,
        "differing_parts": [p for p in ALL_PARTS if p not in identical],
        "all_identical": len(identical) == len(ALL_PARTS),
        "vocab_jaccard": len(a.vocab & b.vocab) / len(union) if union else 1.0,
        "vocab_sizes": [a.vocab_size, b.vocab_size],
        "first_differing_merge_rank": first_diff,
        "special_only_in_a": sorted(set(a.special_tokens) - set(b.special_tokens)),
        "special_only_in_b": sorted(set(b.special_tokens) - set(a.special_tokens)),
        "chat_template_diff": "\n".join(diff),
    }
