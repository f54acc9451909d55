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

from harness import tokenizers as lib
from harness.backends.base import Capabilities, Capability, CountRequest
from harness.case import ProbeCase
from harness.data import Item, balanced_head, load_file, load_items
from harness.errors import InputError
from harness.evidence import ProbeEvidence
from harness.suite import ModelSpec, Suite
from probes.base import Planned, Probe, Record, Skip
from probes.tokenizer import render
from probes.tokenizer.analysis import TokenizerAnalysis
from probes.tokenizer.case import tokenizer_case
from probes.tokenizer.params import TokenizerParams
from probes.tokenizer.result import TokenizerResult

STRINGS = Path(__file__).parent / "data" / "tokenizer_strings.jsonl"


class TokenizerProbe(Probe):
    kind: ClassVar[str] = "tokenizer"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "tokenizer identity: token counts of diagnostic strings, and tokenizer-file hashes"
    key_params: ClassVar[tuple[str, ...]] = ("library",)
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
        return TokenizerAnalysis(self.params, suite, ev).run(records, self.strings(), self.candidate_paths())

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
