"""Identity-claim extraction: which labels (``nex: ["Nex", "Nex-AGI"]``) does a response claim?

Rules, chosen to be simple enough to audit by hand:

* Matching is case-insensitive. Patterns written in a script with spaces must sit on word
  boundaries ("Rio" does not match "Rioja"). Patterns containing CJK characters are matched as
  substrings, since those scripts have no spaces to bound a word.
* A mention is **negated**, and is not counted as a claim, when a negation cue appears in the
  same clause before it. A clause ends at . ! ? ; : , and their CJK forms. For spaced scripts,
  the cue must be within the 4 words before the mention: "I am not Qwen", "I'm not a Qwen
  model", "no soy Qwen", "não sou o Qwen". For CJK, the cue must be within the 4 characters
  before it: "我不是通义千问". "I'm not sure, but I am Qwen" counts as a claim, because the
  comma starts a new clause.
* Every response keeps its matches (label, pattern, position, negated), so a reader can audit
  each count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NEGATION_WORDS = {
    "not",
    "never",
    "no",
    "nor",
    "neither",
    "isn't",
    "aren't",
    "wasn't",
    "don't",
    "doesn't",
    "não",
    "nao",
    "nunca",
    "nem",
    "jamais",
    "ni",
    "tampoco",
}
NEGATION_CJK = ("不是", "并非", "并不是", "不", "非", "没有")
CLAUSE_END = re.compile(r"[.!?;:,。！？；：，、\n]")
WORD = re.compile(r"[\w'’-]+", re.UNICODE)
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


@dataclass(frozen=True)
class Match:
    label: str
    pattern: str
    start: int
    end: int
    negated: bool


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    if not pattern.strip():
        raise ValueError("empty pattern")
    escaped = re.escape(pattern.strip())
    if CJK.search(pattern):
        return re.compile(escaped, re.IGNORECASE)
    return re.compile(rf"(?<![\w]){escaped}(?![\w])", re.IGNORECASE)


def _negated(text: str, start: int) -> bool:
    clause_start = 0
    for m in CLAUSE_END.finditer(text, 0, start):
        clause_start = m.end()
    before = text[clause_start:start]
    if any(cue in before[-4:] for cue in NEGATION_CJK):
        return True
    words = [w.lower().replace("’", "'") for w in WORD.findall(before)][-4:]
    return any(w in NEGATION_WORDS or w.endswith("n't") for w in words)


class ClaimExtractor:
    """Compiled label patterns. ``labels`` maps a label to its aliases, e.g. ``{"qwen": ["Qwen", "通义"]}``."""

    def __init__(self, labels: dict[str, list[str]]):
        empty = [k for k, v in labels.items() if not v or not any(p.strip() for p in v)]
        if empty:
            raise ValueError(f"label(s) with no patterns: {', '.join(empty)}")
        self.labels = labels
        # Longer aliases first, so "Nex-AGI" is reported as that alias rather than as "Nex".
        self._compiled = [
            (label, p, _pattern_regex(p)) for label, pats in labels.items() for p in sorted(pats, key=len, reverse=True)
        ]

    def matches(self, text: str) -> list[Match]:
        found: list[Match] = []
        taken: list[tuple[int, int]] = []
        for label, pattern, rx in self._compiled:
            for m in rx.finditer(text):
                if any(m.start() < e and s < m.end() for s, e in taken):
                    continue  # inside a longer alias already matched
                taken.append((m.start(), m.end()))
                found.append(Match(label, pattern, m.start(), m.end(), _negated(text, m.start())))
        return sorted(found, key=lambda x: x.start)

    def claims(self, text: str) -> set[str]:
        """Labels the text claims (at least one non-negated mention)."""
        return {m.label for m in self.matches(text) if not m.negated}
