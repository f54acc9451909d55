"""The tokenizer probe's analysis: one object holding the suite, the parameters and the evidence
it fills. Token counts of the diagnostic strings are matched against the reference tokenizers and
the suite's other models (``verdict.py``), and tokenizer files are compared white-box
(``probes/shared/tokenizer_files.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness import tokenizers as lib
from harness.backends.base import CountResult
from harness.data import Item
from harness.evidence import ProbeEvidence
from harness.suite import Suite
from probes.base import Record
from probes.shared.tokenizer_files import compare, fingerprint
from probes.tokenizer import render
from probes.tokenizer.params import TokenizerParams
from probes.tokenizer.result import TokenizerResult
from probes.tokenizer.verdict import identify, match_table


class TokenizerAnalysis:
    """One analysis of the tokenizer probe's records into ``ev``."""

    def __init__(self, params: TokenizerParams, suite: Suite, ev: ProbeEvidence):
        self.params = params
        self.suite = suite
        self.ev = ev

    def run(self, records: dict[str, list[Record]], items: list[Item], candidates: dict[str, str]) -> ProbeEvidence:
        """Each model's token counts matched against the reference tokenizers' (``candidates``: name ->
        path) and every other model's; the groups no string separates; the tokenizer files compared."""
        ev, suite = self.ev, self.suite
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
        cand_vec = {n: np.array(lib.count_tokens(p, texts)) for n, p in candidates.items()}
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
        ev.tables["candidate_separability"] = separability(cand_vec)
        if self.params.white_box:
            ev.tables["white_box"] = self.white_box(records)
        ev.summary = render.summary(ev, [m.name for m in suite.by_role("parent")])
        return ev

    def white_box(self, records: dict[str, list[Record]]) -> list[dict[str, Any]]:
        """Each suspect's tokenizer files against each parent's and control's, where they have files."""
        suite = self.suite
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


def separability(cand_vec: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Groups of library candidates that no string separates: identification can't split them."""
    groups: dict[bytes, list[str]] = {}
    for n, v in cand_vec.items():
        groups.setdefault(v.tobytes(), []).append(n)
    return [{"indistinguishable": sorted(g)} for g in groups.values() if len(g) > 1]
