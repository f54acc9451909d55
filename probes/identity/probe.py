"""Identity: who does the model say it is, with its shipped system prompt and without?

The Rio model was exposed by removing its "You are Rio" system prompt and asking who it is:
it said "Nex" in 95 of 120 answers and repeated Nex's backstory word for word. This probe
makes that test reusable:

* a shipped bank of 153 identity questions in English, Portuguese, Spanish and Chinese
  (``data/identity_questions.jsonl``; a suite can supply its own);
* conditions: ``none`` (no system message: note that some templates inject a default one,
  and the rendered prompt is recorded), ``own`` (the model's system prompt from the suite),
  ``neutral`` and ``no_default_system`` (an empty system message that replaces a template's
  default);
* ``samples`` seeded samples per question (or greedy);
* claims extracted by :mod:`probes.identity.claims` (case-insensitive, word-bounded, negation-aware);
* Wilson CIs per model x condition x label, at the effective sample size of answers clustered
  by question; one-sided tests of "the suspect claims parent X's identity more often than the
  controls" with questions as the units (paired sign-flip permutation of question-level rates:
  samples of one question are correlated), Holm-corrected; the per-language
  breakdown; verbatim reuse of each parent's responses (longest shared token run, share of
  responses with a run of at least ``ngram_threshold`` tokens, paired permutation p-value).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from harness.backends.base import Capabilities, Capability, GenerateRequest, GenerateResult
from harness.case import ProbeCase
from harness.data import Item, balanced_head, load_file, load_items
from harness.errors import InputError
from harness.evidence import ProbeEvidence
from harness.stats import adjust, clustered_wilson, signflip_pvalue
from harness.suite import ModelSpec, Suite
from probes.base import Planned, Probe, ProbeParams, Record, Skip, uncalibrated_note
from probes.identity import render
from probes.identity.case import identity_case
from probes.identity.claims import ClaimExtractor
from probes.identity.ngrams import NgramPool, reuse_permutation_test
from probes.identity.result import Count, IdentityResult, LabelRate

BANK = Path(__file__).parent / "data" / "identity_questions.jsonl"
Condition = Literal["none", "own", "neutral", "no_default_system"]


class IdentityParams(ProbeParams):
    labels: dict[str, list[str]] = Field(
        description="Identity label -> aliases, e.g. {nex: [Nex, Nex-AGI], qwen: [Qwen, 通义]}.", min_length=1
    )
    model_labels: dict[str, str] = Field(
        default_factory=dict, description="Model name -> the label of its own identity (e.g. parent_a: vireo)."
    )
    conditions: list[Condition] = Field(default_factory=lambda: list[Condition](["none", "own"]), min_length=1)
    neutral_system_prompt: str = "You are a helpful assistant."
    languages: list[str] | None = Field(None, description="Keep only these question languages (en, pt, es, zh).")
    max_questions: int | None = Field(None, ge=1)
    samples: int = Field(4, ge=1, description="Samples per question and condition.")
    greedy: bool = False
    temperature: float = Field(0.7, gt=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(64, ge=1)
    seed: int = 0
    ngram_threshold: int = Field(8, ge=2, description="Shared run (tokens) that counts as verbatim reuse.")

    @field_validator("labels")
    @classmethod
    def _patterns(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        ClaimExtractor(v)  # raises "label(s) with no patterns: ..."
        return v


def question_counts(rows: list[dict[str, Any]], label: str) -> dict[str, tuple[int, int]]:
    """(answers claiming ``label``, answers) per question: the clusters of the CIs and tests."""
    counts: dict[str, tuple[int, int]] = {}
    for r in rows:
        k, n = counts.get(r["question"], (0, 0))
        counts[r["question"]] = (k + (label in r["claims"]), n + 1)
    return counts


def per_question(counts: dict[str, tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """``question_counts`` as (claims, answers) arrays, the clusters of ``clustered_wilson``."""
    pairs = np.array(list(counts.values()), dtype=float).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


class IdentityProbe(Probe):
    kind: ClassVar[str] = "identity"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "identity questions with and without the system prompt: whose name does it claim?"
    requires: ClassVar[tuple[Capability, ...]] = (Capability.GENERATE,)
    Params = IdentityParams
    Result = IdentityResult
    params: IdentityParams
    example: ClassVar[dict[str, Any]] = {"labels": {"nex": ["Nex", "Nex-AGI"], "qwen": ["Qwen", "通义"]}}

    def _questions(self) -> list[Item]:
        """The questions, language in ``group``; filtered and interleaved across languages."""
        if self.spec.data is None:
            items = load_file(BANK, group_field="lang")
        else:
            items = load_items(self.spec.data, BANK)
        if self.params.languages:
            items = [it for it in items if it.group in self.params.languages]
        return balanced_head(items, self.params.max_questions)

    def preflight(self, suite: Suite) -> list[tuple[tuple, str]]:
        p = self.params
        problems: list[tuple[tuple, str]] = []
        models = {m.name for m in suite.models}
        for model, label in p.model_labels.items():
            if model not in models:
                problems.append((("model_labels", model), f"no model named '{model}' in this suite"))
            if label not in p.labels:
                problems.append((("model_labels", model), f"unknown label '{label}'; labels: {', '.join(p.labels)}"))
        owner: dict[str, str] = {}
        for label, aliases in p.labels.items():
            for alias in aliases:
                first = owner.setdefault(alias.casefold(), label)
                if first != label:
                    problems.append((("labels", label), f"alias '{alias}' is also under label '{first}'"))
        if p.languages and self.spec.data is None:  # the shipped bank, read without `datasets` (fast)
            have = {json.loads(x)["lang"] for x in BANK.read_text(encoding="utf-8").splitlines() if x.strip()}
            if not have & set(p.languages):
                problems.append(
                    (
                        ("languages",),
                        f"no identity question left for {p.languages}; the bank has {', '.join(sorted(have))}",
                    )
                )
        return problems

    def _messages(self, condition: str, model: ModelSpec, question: str) -> list[dict[str, str]] | None:
        user = [{"role": "user", "content": question}]
        if condition == "none":
            return user
        if condition == "own":
            return None if model.system_prompt is None else [{"role": "system", "content": model.system_prompt}, *user]
        if condition == "neutral":
            return [{"role": "system", "content": self.params.neutral_system_prompt}, *user]
        return [{"role": "system", "content": ""}, *user]

    def plan(self, suite: Suite, model: ModelSpec, caps: Capabilities) -> list[Planned] | Skip:
        if not caps.has(Capability.GENERATE):
            return Skip(f"backend '{model.backend}' of model '{model.name}' cannot generate text")
        questions = self._questions()
        if not questions:
            raise InputError(f"probe '{self.instance}': no identity questions left (languages={self.params.languages})")
        p = self.params
        out = []
        for cond in p.conditions:
            for it in questions:
                msgs = self._messages(cond, model, it.text)
                if msgs is None:
                    continue  # 'own' for a model served without a system prompt
                seed = p.seed + int(hashlib.sha256(it.id.encode()).hexdigest()[:6], 16)
                req = GenerateRequest(
                    messages=msgs,
                    max_new_tokens=p.max_new_tokens,
                    temperature=0.0 if p.greedy else p.temperature,
                    top_p=1.0 if p.greedy else p.top_p,
                    n=1 if p.greedy else p.samples,
                    seed=seed,
                )
                out.append(Planned(req, {"id": it.id, "lang": it.group, "condition": cond}))
        return out

    # ------------------------------------------------------------------ analysis
    def analyze(self, records: dict[str, list[Record]], suite: Suite, rng: np.random.Generator) -> ProbeEvidence:
        """Extract claims from every answer, count them per model, condition and label (Wilson
        CIs), test each suspect against the pooled controls, and measure verbatim reuse."""
        ev = self.new_evidence(suite, mode="generation")
        responses, prompts = self._responses(records)
        controls = [m.name for m in suite.by_role("control") if any(k[0] == m.name for k in responses)]
        ev.calibrated = bool(controls)
        if not controls:
            ev.notes.append(uncalibrated_note(suite, "claim rates have no reference"))
        for (m, cond), rows in sorted(responses.items()):
            result = IdentityResult(
                role=suite.model(m).role,
                condition=cond,
                n=len(rows),
                labels=self._claim_rates(rows, suite.stats.alpha),
                system_text_rendered=prompts.get((m, cond), ""),
                examples=[r for r in rows if r["claims"]][:3],
            )
            ev.per_model[f"{m} | {cond}"] = result.model_dump(mode="json")
        ev.tables["claims_vs_controls"] = self._claims_vs_controls(responses, suite, controls, rng)
        ev.tables["verbatim_reuse"] = self._reuse(responses, suite, controls, rng)
        ev.summary = render.summary(ev)
        return ev

    def _responses(
        self, records: dict[str, list[Record]]
    ) -> tuple[dict[tuple[str, str], list[dict[str, Any]]], dict[tuple[str, str], str]]:
        """Every answer with the claims found in it, by (model, condition); and the prompt each
        (model, condition) was rendered with."""
        ex = ClaimExtractor(self.params.labels)
        responses: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        prompts: dict[tuple[str, str], str] = {}
        for m, recs in records.items():
            for r in recs:
                res = r.result_as(GenerateResult)
                key = (m, r.meta["condition"])
                if res.rendered_prompt is None:  # an API server applies the template and keeps the text
                    sent = [m["content"] for m in r.request.messages if m["role"] == "system"]  # type: ignore[union-attr]
                    what = f"system message sent: {sent[0]!r}" if sent else "no system message sent"
                    prompts.setdefault(key, f"(rendered by the server, not returned; {what})")
                else:
                    prompts.setdefault(key, res.rendered_prompt)
                for text in res.texts:
                    ms = ex.matches(text)
                    responses[key].append(
                        {
                            "text": text,
                            "lang": r.meta.get("lang", ""),
                            "question": r.meta["id"],
                            "claims": sorted({x.label for x in ms if not x.negated}),
                            "negated": sorted({x.label for x in ms if x.negated}),
                        }
                    )
        return responses, prompts

    def _claim_rates(self, rows: list[dict[str, Any]], alpha: float) -> dict[str, LabelRate]:
        """Per label: answers claiming it, the rate with its question-clustered Wilson CI, and
        counts by language."""
        n = len(rows)
        out: dict[str, LabelRate] = {}
        for lab in self.params.labels:
            k = sum(lab in r["claims"] for r in rows)
            kq, nq = per_question(question_counts(rows, lab))
            lo, hi = clustered_wilson(kq, nq, 1 - alpha)
            by_lang: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
            for row in rows:
                by_lang[row["lang"]][1] += 1
                by_lang[row["lang"]][0] += lab in row["claims"]
            out[lab] = LabelRate(
                k=k,
                n=n,
                questions=len(nq),
                rate=k / n if n else float("nan"),
                ci=(lo, hi),
                by_language={g: Count(k=a, n=b) for g, (a, b) in by_lang.items()},
            )
        return out

    def _claims_vs_controls(
        self,
        responses: dict[tuple[str, str], list[dict[str, Any]]],
        suite: Suite,
        controls: list[str],
        rng: np.random.Generator,
    ) -> list[dict[str, Any]]:
        """Suspect vs controls, per parent identity, with questions as the units: the samples of
        one question are correlated, so the test compares question-level claim rates (the
        suspect's minus the controls' mean, one difference per question both answered) by a
        one-sided paired sign-flip permutation; corrected across the family (Holm or BH)."""
        tests: list[dict[str, Any]] = []
        alpha = suite.stats.alpha
        for s in (x.name for x in suite.by_role("suspect")):
            for cond in self.params.conditions:
                if (s, cond) not in responses:
                    continue
                for parent, lab in self.params.model_labels.items():
                    if suite.model(parent).role != "parent":  # a control's own label is not lineage evidence
                        continue
                    rows = responses[(s, cond)]
                    ctl = {c: responses[(c, cond)] for c in controls if (c, cond) in responses}
                    if not ctl:
                        continue
                    counts_s = question_counts(rows, lab)
                    rate_s = {q: k / n for q, (k, n) in counts_s.items()}
                    rate_c = [{q: k / n for q, (k, n) in question_counts(r, lab).items()} for r in ctl.values()]
                    common = [q for q in rate_s if all(q in rc for rc in rate_c)]
                    d = np.array([rate_s[q] - np.mean([rc[q] for rc in rate_c]) for q in common])
                    kq, nq = per_question(counts_s)
                    all_ctl = [r for v in ctl.values() for r in v]
                    tests.append(
                        {
                            "suspect": s,
                            "condition": cond,
                            "parent": parent,
                            "label": lab,
                            "k": int(kq.sum()),
                            "n": int(nq.sum()),
                            "ci": list(clustered_wilson(kq, nq, 1 - alpha)),
                            "k_controls": sum(lab in r["claims"] for r in all_ctl),
                            "n_controls": len(all_ctl),
                            "questions": len(common),
                            "p": signflip_pvalue(d, rng),
                        }
                    )
        for t, pa in zip(tests, adjust([t["p"] for t in tests], suite.stats.correction)):
            t["p_adjusted"] = pa
        return tests

    def _reuse(self, responses, suite: Suite, controls: list[str], rng) -> list[dict[str, Any]]:
        """Verbatim reuse of each parent's (condition 'none') responses by the suspect, vs the controls'."""
        out = []
        thr = self.params.ngram_threshold
        ctl_pool = NgramPool([r["text"] for c in controls for r in responses.get((c, "none"), [])])
        for s in (x.name for x in suite.by_role("suspect")):
            rows = responses.get((s, "none"), [])
            if not rows:
                continue
            for parent in (x.name for x in suite.by_role("parent")):
                pool = NgramPool([r["text"] for r in responses.get((parent, "none"), [])])
                la = [pool.longest_shared(r["text"]) for r in rows]
                if controls:
                    lc = [ctl_pool.longest_shared(r["text"]) for r in rows]
                    ra, rc, p = reuse_permutation_test(
                        np.array([x[0] for x in la]), np.array([x[0] for x in lc]), thr, rng, 5000
                    )
                else:  # nothing to compare with: the rate alone, no test (it read "vs 0.0%, p 0.0002")
                    ra, rc, p = float(np.mean([x[0] >= thr for x in la])), None, None
                top = sorted(la, key=lambda x: -x[0])[:3]
                out.append(
                    {
                        "suspect": s,
                        "parent": parent,
                        "rate_parent": ra,
                        "rate_controls": rc,
                        "p": p,
                        "threshold": thr,
                        "longest": [{"tokens": n, "text": t} for n, t in top],
                    }
                )
        return out

    # ------------------------------------------------------------------ presentation (render.py)
    def case(self, evidence: ProbeEvidence, names: list[str], suite: Suite) -> ProbeCase | None:
        if evidence.status != "ok":
            return None
        parents = [m.name for m in suite.for_probe(self.spec).by_role("parent")]
        tests = evidence.tables.get("claims_vs_controls", [])
        return identity_case(evidence.instance, tests, names, parents, 1 - evidence.ci_level)

    def report_section(self, evidence: ProbeEvidence, suite: Suite) -> str:
        return render.report_section(evidence, list(self.params.labels))

    def figures(self, evidence: ProbeEvidence, out_dir: Path) -> list[tuple[str, Path]]:
        return render.figures(evidence, out_dir, list(self.params.labels))
