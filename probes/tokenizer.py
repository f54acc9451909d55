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

from harness import tokenizer_library as lib
from harness.backends.base import Capabilities, Capability, CountRequest
from harness.config import ModelSpec, Suite
from harness.data import Item, balanced_head, load_file, load_items
from harness.errors import InputError
from harness.stats import wilson
from harness.tokenizer_fingerprint import compare, fingerprint
from probes.base import Planned, Probe, ProbeEvidence, ProbeParams, Record, Skip, save_figure, subplots

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
    id: ClassVar[str] = "tokenizer"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "tokenizer identity: token counts of diagnostic strings, and tokenizer-file hashes"
    requires: ClassVar[tuple[Capability, ...]] = (Capability.TOKEN_COUNTS,)
    Params = TokenizerParams
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
        ev = ProbeEvidence(probe=self.id, instance=self.instance, version=self.version, mode="token_counts")
        items = self.strings()
        ids = [it.id for it in items]
        texts = [it.text for it in items]
        model_vec: dict[str, np.ndarray] = {}
        methods: dict[str, str] = {}
        for m, recs in records.items():
            by_id = {r.meta["id"]: r.result for r in recs}
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
            ev.per_model[m] = {
                "role": role,
                "method": methods[m],
                "n_strings": len(ids),
                "matches": table,
                **identify([r for r in table if not r["candidate"].startswith("model:")]),
                "vs_models": [r for r in table if r["candidate"].startswith("model:")],
            }
        ev.tables["candidate_separability"] = self._separability(cand_vec)
        if self.params.white_box:
            ev.tables["white_box"] = self._white_box(suite, records)
        ev.summary = " ".join(f"{m}: {e['verdict']}." for m, e in ev.per_model.items() if e["role"] == "suspect")
        return ev

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

    # ------------------------------------------------------------------ report
    def report_section(self, evidence: ProbeEvidence, suite: Suite) -> str:
        out = ["| model | role | counts from | verdict | best exact-match rate (95% CI) |", "|---|---|---|---|---|"]
        for m, e in evidence.per_model.items():
            top = next((r for r in e["matches"] if not r["candidate"].startswith("model:")), None)
            best = f"{top['k']}/{top['n']} ({100 * top['ci'][0]:.1f}-{100 * top['ci'][1]:.1f}%)" if top else "-"
            out.append(f"| {m} | {e['role']} | {e['method']} | {e['verdict']} | {best} |")
        out += ["", "Agreement with the other models in this suite (identical counts / strings):", ""]
        for m, e in evidence.per_model.items():
            if e["role"] == "suspect":
                cells = [f"{r['candidate'].removeprefix('model:')} {r['k']}/{r['n']}" for r in e["vs_models"]]
                out.append(f"- {m}: " + ", ".join(cells))
        sep = evidence.tables.get("candidate_separability", [])
        if sep:
            out += [
                "",
                "Candidates no diagnostic string separates: "
                + "; ".join(", ".join(g["indistinguishable"]) for g in sep),
            ]
        wb = evidence.tables.get("white_box", [])
        if wb:
            out += [
                "",
                "White-box comparison of tokenizer files:",
                "",
                "| suspect | other | identical parts | differing parts | vocab Jaccard | first differing merge |",
                "|---|---|---|---|---|---|",
            ]
            for r in wb:
                out.append(
                    f"| {r['suspect']} | {r['other']} ({r['role']}) | {', '.join(r['identical_parts']) or '-'} | "
                    f"{', '.join(r['differing_parts']) or '-'} | {r['vocab_jaccard']:.3f} | "
                    f"{r['first_differing_merge_rank'] if r['first_differing_merge_rank'] is not None else '-'} |"
                )
            diffs = [r for r in wb if r["chat_template_diff"]]
            for r in diffs[:3]:
                out += [
                    "",
                    f"Chat template diff, {r['suspect']} vs {r['other']}:",
                    "",
                    "```diff",
                    r["chat_template_diff"][:3000],
                    "```",
                ]
        return "\n".join(out) + "\n"

    def figures(self, evidence: ProbeEvidence, out_dir: Path) -> list[tuple[str, Path]]:
        suspects = [m for m, e in evidence.per_model.items() if e["role"] == "suspect"]
        if not suspects:
            return []
        e = evidence.per_model[suspects[0]]
        rows = e["matches"][:15]
        fig, ax = subplots(figsize=(7, 0.3 * len(rows) + 1.5))
        rates = [r["rate"] for r in rows]
        err = [[r["rate"] - r["ci"][0] for r in rows], [r["ci"][1] - r["rate"] for r in rows]]
        ax.barh(range(len(rows)), rates, xerr=err, capsize=2)
        ax.set_yticks(range(len(rows)), [r["candidate"] for r in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.02)
        ax.set_xlabel(f"share of {e['n_strings']} diagnostic strings with identical token counts")
        ax.set_title(f"{suspects[0]}: tokenizer match (95% Wilson CIs)")
        path = save_figure(fig, out_dir / f"{evidence.instance}_matches.png")
        return [("tokenizer match rate of the suspect against each candidate", path)]
