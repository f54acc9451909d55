"""Tokenizer: does the suspect tokenise like its claimed parents, or like something else?

A weight merge must share its parents' tokenizer exactly; an independently trained model
almost never does. Two complementary checks:

* **black box**: a shipped battery of diagnostic strings (runs of spaces, digit groups, CJK,
  emoji ZWJ sequences, code indentation, glitch tokens, ...) whose token counts separate
  tokenizer families. Counts come from whatever the backend offers (local tokenizer, a
  server's ``/tokenize``, or ``usage.prompt_tokens`` against an empty-message baseline). Each
  model's count vector is matched against the parents' and a candidate library; the output is
  the exact-match rate per candidate with a Wilson CI, the best candidate, and the set of
  candidates tied with it. Matching on every string is reported as "indistinguishable on N
  strings", never as proof of identity.
* **white box** (tokenizer files available): per-part hashes (vocabulary, merges, added
  tokens, normalizer, pre-tokenizer, post-processor, decoder, chat template) and a pairwise
  comparison of the suspect with each parent and control.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from harness import tokenizers as lib
from harness.backends.base import Capabilities, Capability, CountRequest, CountResult
from harness.case import ProbeCase
from harness.data import Item, balanced_head, load_file, load_items
from harness.errors import InputError
from harness.evidence import ProbeEvidence
from harness.stats import wilson
from harness.suite import ModelSpec, Suite
from probes.base import Planned, Probe, ProbeParams, Record, Skip
from probes.shared.tokenizer_files import compare, fingerprint
from probes.tokenizer import render
from probes.tokenizer.case import tokenizer_case
from probes.tokenizer.result import TokenizerResult

STRINGS = Path(__file__).parent / "data" / "tokenizer_strings.jsonl"


class TokenizerParams(ProbeParams):
    candidates: dict[str, str] = Field(
        default_factory=dict, description="Extra candidate tokenizers: name -> model dir, tokenizer.json or GGUF."
    )
    library: bool | list[str] = Field(
        True, description="Add the prepared library of real tokenizers (all, or these names); see `assets fetch`."
    )
    max_strings: int | None = Field(None, ge=1, description="Use only this many diagnostic strings (balanced).")
    white_box: bool = Field(True, description="Compare tokenizer files where models have them.")


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


class TokenizerProbe(Probe):
    kind: ClassVar[str] = "tokenizer"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "tokenizer identity: token counts of diagnostic strings, and tokenizer-file hashes"
    requires: ClassVar[tuple[Capability, ...]] = (Capability.TOKEN_COUNTS,)
    Params = TokenizerParams
    Result = TokenizerResult
    params: TokenizerParams
    path_params: ClassVar[tuple[str, ...]] = ("candidates",)
    example: ClassVar[dict[str, Any]] = {"library": False}

    def strings(self) -> list[Item]:
        items = (
            load_file(STRINGS, group_field="category")
            if self.spec.data is None
            else load_items(self.spec.data, STRINGS)
        )
        return balanced_head(items, self.params.max_strings)

    def plan(self, suite: Suite, model: ModelSpec, caps: Capabilities) -> list[Planned] | Skip:
        if not caps.has(Capability.TOKEN_COUNTS):
            return Skip(
                f"capability missing: backend '{model.backend}' of model '{model.name}' reports no token counts"
            )
        items = self.strings()
        if not items:
            raise InputError(f"probe '{self.instance}': no diagnostic strings")
        return [Planned(CountRequest(text=it.text), {"id": it.id, "category": it.group}) for it in items]

    def preflight(self, suite: Suite) -> list[tuple[tuple, str]]:
        """The library is read at analysis, after every model was collected: check it now."""
        if not self.params.library:
            return []
        try:
            self.candidate_paths()
        except InputError as e:
            return [(("library",), str(e).removeprefix(f"probe '{self.instance}': "))]
        return []

    # ------------------------------------------------------------------ analysis
    def candidate_paths(self) -> dict[str, str]:
        paths: dict[str, str] = {}
        if self.params.library:
            available = lib.library()
            wanted = available if self.params.library is True else self.params.library
            missing = [n for n in wanted if n not in available]
            if missing:
                raise InputError(
                    f"probe '{self.instance}': library tokenizer(s) {', '.join(missing)} not available; "
                    f"prepared: {', '.join(available)}"
                )
            paths |= {n: str(available[n]) for n in wanted}
        return paths | self.params.candidates

    def analyze(self, records: dict[str, list[Record]], suite: Suite, rng: np.random.Generator) -> ProbeEvidence:
        ev = self.new_evidence(suite, mode="token_counts")
        items = self.strings()
        ids = [it.id for it in items]
        texts = [it.text for it in items]
        model_vec: dict[str, np.ndarray] = {}
        methods: dict[str, str] = {}
        for m, recs in records.items():
            by_id = {r.meta["id"]: r.result_as(CountResult) for r in recs}
            if set(by_id) != set(ids):
                ev.notes.append(f"{m}: counts for {len(by_id)} of {len(ids)} strings; model left out of matching")
                continue
            model_vec[m] = np.array([by_id[i].n_tokens for i in ids])
            methods[m] = ",".join(sorted({by_id[i].method for i in ids}))
        cand_vec = {n: np.array(lib.count_tokens(p, texts)) for n, p in self.candidate_paths().items()}
        alpha = suite.stats.alpha
        for m, vec in model_vec.items():
            role = suite.model(m).role
            others = {f"model:{o}": v for o, v in model_vec.items() if o != m}
            table = match_table(cand_vec | others, vec, alpha)
            result = TokenizerResult(
                role=role,
                method=methods[m],
                n_strings=len(ids),
                matches=table,
                **identify([r for r in table if not r["candidate"].startswith("model:")]),
                vs_models=[r for r in table if r["candidate"].startswith("model:")],
            )
            ev.per_model[m] = result.model_dump(mode="json")
        ev.tables["candidate_separability"] = self._separability(cand_vec)
        if self.params.white_box:
            ev.tables["white_box"] = self._white_box(suite, records)
        ev.summary = self._summary(ev, suite)
        return ev

    def _summary(self, ev: ProbeEvidence, suite: Suite) -> str:
        """Per suspect: how it tokenises against the suite's parents first (what a merge needs), then
        the closest reference tokenizer, labelled as such (it read as the headline before)."""
        parents = [m.name for m in suite.by_role("parent")]
        lines = []
        for m, e in ev.results(TokenizerResult).items():
            if e.role != "suspect":
                continue
            case = tokenizer_case(self.instance, e, parents)
            library = f" Among the reference tokenizers: {e.verdict}." if e.verdict != "no candidates" else ""
            lines.append(f"{m}: {case.sentence if case else ''}{library}")
        return " ".join(lines)

    @staticmethod
    def _separability(cand_vec: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        """Groups of library candidates that no string separates: identification can't split them."""
        groups: dict[bytes, list[str]] = {}
        for n, v in cand_vec.items():
            groups.setdefault(v.tobytes(), []).append(n)
        return [{"indistinguishable": sorted(g)} for g in groups.values() if len(g) > 1]

    def _white_box(self, suite: Suite, records: dict[str, list[Record]]) -> list[dict[str, Any]]:
        paths = {}
        for m in suite.models:
            if m.name not in records:
                continue
            src = m.tokenizer or (m.path if m.path and Path(m.path).exists() else None)
            if src:
                paths[m.name] = src
        fps = {m: fingerprint(p) for m, p in paths.items()}
        out = []
        for s in (x.name for x in suite.by_role("suspect") if x.name in fps):
            for other in (x.name for x in suite.models if x.role in ("parent", "control") and x.name in fps):
                c = compare(fps[s], fps[other])
                out.append({"suspect": s, "other": other, "role": suite.model(other).role, **c})
        return out

    # ------------------------------------------------------------------ presentation (render.py)
    def case(self, evidence: ProbeEvidence, names: list[str], suite: Suite) -> ProbeCase | None:
        m = next((n for n in names if n in evidence.per_model), None)
        if evidence.status != "ok" or m is None:
            return None
        parents = [x.name for x in suite.for_probe(self.spec).by_role("parent")]
        return tokenizer_case(evidence.instance, evidence.results(TokenizerResult)[m], parents)

    def report_section(self, evidence: ProbeEvidence, suite: Suite) -> str:
        return render.report_section(evidence)

    def figures(self, evidence: ProbeEvidence, out_dir: Path) -> list[tuple[str, Path]]:
        return render.figures(evidence, out_dir)
