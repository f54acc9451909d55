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
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.backends.base import Capabilities, Capability, GenerateRequest
from harness.case import ProbeCase
from harness.data import Item, balanced_head, load_file, load_items
from harness.errors import InputError
from harness.evidence import ProbeEvidence
from harness.stats import paired_floor, paired_units_for
from harness.suite import ModelSpec, Suite
from probes.base import Planned, Probe, Record, Skip
from probes.identity import render
from probes.identity.analysis import IdentityAnalysis
from probes.identity.case import identity_case
from probes.identity.params import IdentityParams
from probes.identity.result import IdentityResult

BANK = Path(__file__).parent / "data" / "identity_questions.jsonl"


class IdentityProbe(Probe):
    kind: ClassVar[str] = "identity"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "identity questions with and without the system prompt: whose name does it claim?"
    key_params: ClassVar[tuple[str, ...]] = ("max_questions", "samples", "conditions")
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

    def power(self, suite: Suite) -> list[str]:
        """The claims test is an exact sign-flip over questions: its p cannot go below 2^-questions,
        and Holm multiplies the smallest by the number of tests (suspects x labelled parents x
        conditions)."""
        alpha, q = suite.stats.alpha, len(self._questions())
        floor = paired_floor(q)
        parents = [m.name for m in suite.by_role("parent") if m.name in self.params.model_labels]
        tests = len(suite.by_role("suspect")) * len(parents) * len(self.params.conditions)
        adjusted = min(1.0, floor * tests) if suite.stats.correction == "holm" else floor
        if adjusted < alpha or not parents or not suite.by_role("control"):
            return []  # without controls there is no test (the report says it is uncalibrated)
        after = f", and {adjusted:.2g} after Holm's correction over its {tests} tests" if adjusted > floor else ""
        need = paired_units_for(alpha, tests if adjusted > floor else 1)
        return [
            f"the claims test runs over {q} question{'s' if q != 1 else ''}: its smallest possible p is {floor:.2g}"
            f"{after}, not below alpha {alpha:g}, so no claim can be significant; use at least {need} questions "
            "(max_questions, languages)"
        ]

    def preflight(self, suite: Suite) -> list[tuple[tuple, str]]:
        p = self.params
        problems: list[tuple[tuple, str]] = []
        models = {m.name for m in suite.models}
        for model, label in p.model_labels.items():
            if model not in models:
                problems.append((("model_labels", model), f"no model named '{model}' in this suite"))
            if label not in p.labels:
                problems.append((("model_labels", model), f"unknown label '{label}'; labels: {', '.join(p.labels)}"))
        parents = [m.name for m in suite.models if m.role == "parent"]
        if parents and not any(x in p.model_labels for x in parents):
            # The test compares the suspect's claims of each parent's identity with the controls':
            # without a parent's label it would run, cost its requests, and test nothing.
            example = ", ".join(f"{x}: <label>" for x in parents[:2])
            problems.append(
                (
                    ("model_labels",),
                    f"no parent has a label, so no claim of a parent's identity can be tested; add model_labels: "
                    f"{{{example}}} with each parent's own label from labels ({', '.join(p.labels)})",
                )
            )
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
        return IdentityAnalysis(self.params, suite, rng, self.new_evidence(suite, mode="generation")).run(records)

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
