"""Evidence from text alone: is a suspect that returns no log-probs an interpolation of its parents?

Many API models return text only. The parents of a merge case are usually open weights, so the
suspect's own samples are scored locally by each parent:

1. **Stage one.** Every model (suspect, controls, parents) answers ``prompts`` prompts of the
   corpus ``samples`` times, seeded, at the recorded ``temperature`` / ``top_p`` /
   ``max_new_tokens``: no log-probs needed, cached like every answer.
2. **Stage two** (``Probe.staged``: the parents, once stage one's answers exist). Each parent
   teacher-forces every other model's samples as the answer to their prompt, under its own chat
   template (``ScoreRequest.prompt``): full vocabulary in compact storage in process (``hf``), the
   top-k head through a vLLM server (``vllm``, ``openai``; the likelihood is then conditional on
   the parents' common head, see ``analysis.prompt_data``).
3. **Analysis.** Per model, the geometric interpolation ``p ∝ prod p_i^(w_i / T)`` is fitted by
   maximum likelihood of its samples (:mod:`probes.text.likelihood`: weights on the simplex,
   temperature T fitted jointly as the nuisance parameter), with cluster-bootstrap CIs over
   prompts; a cross-validated (over prompts) log-likelihood gain over the better single parent
   with a one-sided Wilcoxon test, calibrated against the controls' gains; and a prompt-stratified
   two-sample test against each parent's own samples (:mod:`probes.text.equality`) for "a copy
   of parent X".

Verdicts, in the logit probe's vocabulary where it applies (:func:`probes.text.verdict.decide`): ``copy``,
``interpolation``, ``derived_from_one_parent``, ``inconclusive``. Text alone cannot tell a
merge trained further from a merge, nor measure how far an unrelated model is: those verdicts
are not given here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.backends.base import (
    Capabilities,
    Capability,
    GenerateRequest,
    GenerateResult,
    ScoreRequest,
)
from harness.case import ProbeCase
from harness.errors import InputError
from harness.evidence import ProbeEvidence
from harness.stats import paired_floor, paired_units_for
from harness.suite import ModelSpec, Suite
from probes.base import Planned, Probe, Record, Skip
from probes.shared.corpus import corpus_items
from probes.shared.tokenizer_files import TokenizerFingerprint, fingerprint
from probes.text import render
from probes.text.analysis import TextAnalysis, sampled_ids
from probes.text.case import text_case
from probes.text.params import TextParams
from probes.text.result import TextResult

# What decides how a text is split into tokens (the chat template and decoder do not).
TOKENISATION = ("model_type", "vocab", "merges", "pre_tokenizer", "normalizer")


class TextInterpolationProbe(Probe):
    kind: ClassVar[str] = "text_interpolation"
    version: ClassVar[str] = "3"  # 2: sampled ids scored; 3: ids cut inside a character too, vLLM parents
    description: ClassVar[str] = (
        "sampled text only: the parents score the suspect's samples; interpolation likelihood and equality tests"
    )
    key_params: ClassVar[tuple[str, ...]] = ("prompts", "samples", "max_new_tokens")
    requires: ClassVar[tuple[Capability, ...]] = (Capability.GENERATE,)
    Params = TextParams
    Result = TextResult
    example: ClassVar[dict[str, Any]] = {"prompts": 8, "samples": 2}
    params: TextParams

    # ------------------------------------------------------------------ collection
    def _parents(self, suite: Suite) -> list[str]:
        return self.params.parents or [m.name for m in suite.by_role("parent")]

    def preflight(self, suite: Suite) -> list[tuple[tuple, str]]:
        """Parents whose tokenizer files differ cannot be merged token by token (their scores of one
        answer would not align): known from the files now, not after every request was sent."""
        seen: list[tuple[str, TokenizerFingerprint]] = []
        problems: list[tuple[tuple, str]] = []
        for name in self._parents(suite):
            m = next((x for x in suite.models if x.name == name), None)
            where = (m.tokenizer or m.path) if m is not None else None
            if where is None or not Path(where).exists():
                continue  # an API model without published tokenizer files: checked on the answers
            try:
                fp = fingerprint(where)
            except (InputError, OSError, ValueError):
                continue
            for other, ofp in seen:
                differ = [part for part in TOKENISATION if fp.hashes.get(part) != ofp.hashes.get(part)]
                if differ:
                    problems.append(
                        (
                            ("parents",) if self.params.parents else (),
                            f"parents '{other}' and '{name}' tokenise differently ({', '.join(differ)} differ): "
                            "their per-token scores of an answer cannot be merged (a merge has one tokenizer)",
                        )
                    )
            seen.append((name, fp))
        return problems

    def power(self, suite: Suite) -> list[str]:
        """The held-out gain and the comparison with the controls are signed-rank tests over
        prompts: below 2^-prompts no p can go."""
        alpha, n = suite.stats.alpha, len(self._prompts())
        floor = paired_floor(n)
        if floor < alpha:
            return []
        need = paired_units_for(alpha)
        return [
            f"the held-out gain is tested over {n} prompts, where its smallest possible p is {floor:.2g}, not below "
            f"alpha {alpha:g}: no merge verdict can be drawn; use at least {need} prompts"
        ]

    def _prompts(self) -> list[tuple[str, list[dict[str, str]]]]:
        items = corpus_items(self.spec.data, self.params.prompts)
        return [(it.id, [{"role": "user", "content": it.text[: self.params.prompt_chars]}]) for it in items]

    def plan(self, suite: Suite, model: ModelSpec, caps: Capabilities) -> list[Planned] | Skip:
        """The model's own samples: one seeded request of ``samples`` answers per prompt."""
        if not caps.has(Capability.GENERATE):
            return Skip(f"backend '{model.backend}' of model '{model.name}' cannot generate text")
        p = self.params
        return [
            Planned(
                GenerateRequest(
                    messages=msgs,
                    max_new_tokens=p.max_new_tokens,
                    temperature=p.temperature,
                    top_p=p.top_p,
                    n=p.samples,
                    # Independent draws per model and prompt: one seed for all would couple the
                    # models' samples (common random numbers) and blind the equality test.
                    seed=p.seed + int(hashlib.sha256(f"{model.name}/{pid}".encode()).hexdigest()[:7], 16),
                ),
                {"id": pid},
            )
            for pid, msgs in self._prompts()
        ]

    def staged(self, suite: Suite, model: ModelSpec) -> bool:
        return model.name in self._parents(suite)

    def stage_one_plan(self, suite: Suite, model: ModelSpec, caps: Capabilities) -> list[Planned] | Skip:
        return self.plan(suite, model, caps)

    def stage_two_plan(
        self, suite: Suite, model: ModelSpec, caps: Capabilities, records: dict[str, list[Record]] | None
    ) -> list[Planned] | Skip:
        """A parent's own samples, and its scoring of every model's samples, its own included (its
        own: how likely a parent finds its own answers, the yardstick of the excess below;
        deduplicated: an answer two models gave is scored once). Without records (the dry run),
        placeholders as long as an answer may be, one per sample of every model."""
        own = self.plan(suite, model, caps)
        if isinstance(own, Skip):
            return own
        p = self.params
        if caps.has(Capability.FULL_LOGPROBS) and caps.has(Capability.CHAT_SCORING):
            mode, top_k, vocab_sample = "full", p.vocab_head, p.vocab_sample
        elif caps.has(Capability.TOPK_LOGPROBS) and caps.has(Capability.CHAT_SCORING):
            mode, top_k, vocab_sample = "topk", min(p.vocab_head, caps.max_top_k), 0
        else:
            return Skip(
                f"parent '{model.name}' cannot score an answer after a chat prompt: it needs the hf backend, or a "
                "vLLM server (prompt log-probs and the prompt's token ids)"
            )
        prompts = dict(self._prompts())
        texts: dict[tuple[str, str], list[int] | None] = {}  # the first sampled ids of each answer
        for m in (x.name for x in suite.models):
            if records is None:
                for pid in prompts:
                    for j in range(p.samples):
                        texts[(pid, f"{m}/{pid}/{j} ".ljust(p.max_new_tokens, "x"))] = None
                continue
            for r in records.get(m, []):
                if isinstance(r.request, GenerateRequest) and r.meta["id"] in prompts:
                    res = r.result_as(GenerateResult)
                    ids = sampled_ids(res) if p.token_ids else [None] * len(res.texts)
                    for t, sampled in zip(res.texts, ids):
                        if t.strip() and texts.get((r.meta["id"], t)) is None:
                            texts[(r.meta["id"], t)] = sampled
        score = [
            Planned(
                ScoreRequest(
                    text=t,
                    prompt=prompts[pid],
                    reply_ids=ids,
                    mode=mode,
                    top_k=top_k,
                    vocab_sample=vocab_sample,
                ),
                {"id": pid, "scores": True},
            )
            for (pid, t), ids in texts.items()
        ]
        return [*own, *score]

    # ------------------------------------------------------------------ analysis
    def analyze(self, records: dict[str, list[Record]], suite: Suite, rng: np.random.Generator) -> ProbeEvidence:
        ev = self.new_evidence(suite, mode="text")
        return TextAnalysis(self.params, suite, rng, ev, self._parents(suite)).run(records)

    def case(self, evidence: ProbeEvidence, names: list[str], suite: Suite) -> ProbeCase | None:
        m = next((n for n in names if n in evidence.per_model), None)
        if evidence.status != "ok" or m is None:
            return None
        return text_case(evidence.instance, evidence.results(TextResult)[m], evidence.ci_level)

    def report_section(self, evidence: ProbeEvidence, suite: Suite) -> str:
        return render.report_section(evidence, self._parents(suite))

    def figures(self, evidence: ProbeEvidence, out_dir: Path) -> list[tuple[str, Path]]:
        return render.figures(evidence, out_dir)
