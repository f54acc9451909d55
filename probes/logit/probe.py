"""Logit interpolation: does the suspect's next-token distribution sit between the parents'?

For models fine-tuned from a shared base, a linear weight merge ``a*A + (1-a)*B`` has logits
close to ``a*zA + (1-a)*zB``. Teacher-forcing the same texts through every model and
regressing the suspect's centred log-probs on the parents' estimates ``a`` (and, with more
than two parents, non-negative weights on the simplex). Around that estimate the probe
reports, each with a cluster-bootstrap CI over texts (texts are the resampling unit):

* the weight in logit space (regression, and the KL-minimising geometric interpolation) and
  the arithmetic-mixture weight (what output-level distillation from both parents imitates),
  with which of the two fits better;
* the residual off the parents' line, the unexplained fraction of the suspect's deviation from
  each parent, and the distance to the nearest parent;
* KL / JS / total variation to each parent and KL to the fitted interpolation;
* the betweenness rate where the parents disagree;
* a cross-validated paired test that the interpolation predicts the suspect better than the
  better single parent, a copy test against the measured noise floor, and a calibration of
  every number against the suite's control models; Holm-corrected.

The verdict rule is in :mod:`probes.logit.verdict`. The maths is in :mod:`probes.logit.interpolation`,
the alignment of records by token id in :mod:`probes.shared.align`.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.backends.base import Capabilities, Capability, GenerateRequest, ScoreRequest
from harness.case import ProbeCase
from harness.evidence import ProbeEvidence
from harness.provenance import same_weight_files
from harness.suite import ModelSpec, Suite
from probes.base import Planned, Probe, Record, Shortlist, Skip
from probes.logit import render
from probes.logit.analysis import LogitAnalysis
from probes.logit.case import logit_case
from probes.logit.lineage import task_free_items
from probes.logit.params import LogitParams
from probes.logit.power import controls_note, cv_note, selection_note
from probes.logit.result import LogitResult
from probes.logit.selection import screen_order, suspect_pools
from probes.shared.corpus import corpus_items


class LogitInterpolationProbe(Probe):
    kind: ClassVar[str] = "logit_interpolation"
    version: ClassVar[str] = "2"
    description: ClassVar[str] = "teacher-forced log-probs: is the suspect an interpolation of the parents?"
    key_params: ClassVar[tuple[str, ...]] = ("mode", "max_texts", "max_tokens", "task_free_texts")
    requires: ClassVar[tuple[Capability, ...]] = (
        Capability.FULL_LOGPROBS,
        Capability.TOPK_LOGPROBS,
        Capability.NEXT_TOKEN_TOPK,
    )
    Params = LogitParams
    Result = LogitResult
    params: LogitParams

    # ------------------------------------------------------------------ collection
    def _items(self):
        return corpus_items(self.spec.data, self.params.max_texts)

    def _mode_for(self, caps: Capabilities) -> str | None:
        wanted = self.params.mode
        available = [
            m
            for m, cap in (
                ("full", Capability.FULL_LOGPROBS),
                ("topk", Capability.TOPK_LOGPROBS),
                ("next_token", Capability.NEXT_TOKEN_TOPK),
            )
            if caps.has(cap)
        ]
        if wanted == "auto":
            return available[0] if available else None
        if wanted == "topk" and "full" in available:
            return "topk"  # a full-vocabulary backend can always answer top-k
        return wanted if wanted in available else None

    def plan(self, suite: Suite, model: ModelSpec, caps: Capabilities) -> list[Planned] | Skip:
        mode = self._mode_for(caps)
        if mode is None:
            return Skip(f"backend '{model.backend}' offers no {self.params.mode} log-probs")
        natural = self._items()
        p = self.params
        if mode == "next_token":
            k = min(p.top_k, caps.max_top_k) if caps.max_top_k else p.top_k
            chat = [
                Planned(
                    GenerateRequest(messages=[{"role": "user", "content": it.text}], max_new_tokens=1, top_logprobs=k),
                    {"id": it.id, "group": it.group},
                )
                for it in natural
            ]
            # The lineage signal's task-free inputs are scored teacher-forced, never as chat
            # messages (a chat answer's first token is what training shaped; lineage.py), so only
            # where the backend can also score a prompt: the same requests top-k mode sends.
            if not (caps.has(Capability.TOPK_LOGPROBS) or caps.has(Capability.FULL_LOGPROBS)):
                return chat
            tf = {"mode": "topk", "top_k": k, "max_tokens": p.max_tokens}
            return chat + [
                Planned(ScoreRequest(text=it.text, **tf), {"id": it.id, "group": it.group})
                for it in task_free_items(p.task_free_texts)
            ]
        items = [*natural, *task_free_items(p.task_free_texts)]
        req: dict[str, Any] = {"mode": mode, "top_k": p.top_k if mode == "topk" else 0, "max_tokens": p.max_tokens}
        if mode == "full" and p.vocab_sample:
            req.update(top_k=p.vocab_head, vocab_sample=p.vocab_sample)
        plan = [Planned(ScoreRequest(text=it.text, **req), {"id": it.id, "group": it.group}) for it in items]
        if p.noise_replicate and model.role == "parent":
            # Reversed order: the runner batches different texts together, so padding and batch
            # composition differ from the first pass. The difference is the noise floor.
            plan += [
                Planned(
                    ScoreRequest(text=it.text, replicate=1, **req), {"id": it.id, "group": it.group, "replicate": 1}
                )
                for it in reversed(natural)
            ]
        return plan

    def staged(self, suite: Suite, model: ModelSpec) -> bool:
        """With ``screen_texts``: the role-candidate models (not known parents) are screened on
        the first texts, and scored in full only if shortlisted."""
        return (
            self.params.screen_texts is not None
            and model.role == "candidate"
            and model.name not in self._parents(suite)
        )

    @property
    def shortlists(self) -> bool:
        return self.params.screen_texts is not None

    def stage_one_plan(self, suite: Suite, model: ModelSpec, caps: Capabilities) -> list[Planned] | Skip:
        """The first ``screen_texts`` texts of the plan: a shortlisted candidate's full scoring
        reuses these answers, so screening costs the candidates screened out only."""
        planned = self.plan(suite, model, caps)
        if isinstance(planned, Skip):
            return planned
        first = {it.id for it in self._items()[: self.params.screen_texts]}
        return [x for x in planned if x.meta["id"] in first]

    def shortlist(self, suite: Suite, records: dict[str, list[Record]]) -> Shortlist | None:
        """Per suspect, the pool on the screening texts in ``selection.screen_order``; each
        suspect's ``shortlist`` best screened candidates are kept (the union over suspects).
        A candidate that tokenises the texts differently from every suspect is never kept."""
        if self.params.screen_texts is None:
            return None
        screened = [m.name for m in suite.models if self.staged(suite, m) and records.get(m.name)]
        first = {it.id for it in self._items()[: self.params.screen_texts]}
        head = {m: [r for r in recs if r.meta["id"] in first] for m, recs in records.items()}
        # Selecting the data draws nothing: the generator is a placeholder.
        data = self._analysis(suite, np.random.default_rng(0)).select(head)
        suspects = [m for m in (data.others if data else []) if suite.model(m).role == "suspect"]
        if data is None or not suspects:
            return Shortlist(kept=screened, why={m: "nothing to screen against: kept" for m in screened})
        pools = suspect_pools(
            data.main, data.ids, data.mode, self.params.top_k, [*data.parents, *data.candidates], suspects
        )
        kept: set[str] = set()
        why: dict[str, list[str]] = {m: [] for m in screened}
        for s in suspects:
            pool, g = pools[s].pool, pools[s].gram
            for c in screened:
                if c not in pools[s].members:
                    why[c].append(f"{s}: tokenises the texts differently")
            if not pool or g is None:
                continue
            ranked = [(c, w) for c, w in screen_order(g, pool) if c in screened]
            for rank, (c, w) in enumerate(ranked, 1):
                take = rank <= self.params.shortlist
                kept |= {c} if take else set()
                why[c].append(f"{s}: rank {rank} of {len(ranked)}, {w}" + ("" if take else " (not shortlisted)"))
        return Shortlist(kept=[m for m in screened if m in kept], why={m: "; ".join(w) for m, w in why.items()})

    def preflight(self, suite: Suite) -> list[tuple[tuple, str]]:
        problems: list[tuple[tuple, str]] = []
        by_name = {m.name: m for m in suite.models}
        for j, name in enumerate(self.params.parents or []):
            if name not in by_name:
                problems.append((("parents", j), f"no model named '{name}' in this suite"))
        for j, name in enumerate(self.params.candidates):
            if name not in by_name:
                problems.append((("candidates", j), f"no model named '{name}' in this suite"))
        parents = [n for n in self._parents(suite) if n in by_name]
        if len(parents) + len([c for c in self._candidates(suite) if c not in parents]) < 2:
            where = ("parents",) if self.params.parents else ()
            found = ", ".join(parents) or "none"
            problems.append(
                (where, f"needs at least two parent models (role: parent, or params.parents); found: {found}")
            )
        seen: dict[tuple, str] = {}
        for name in parents:  # the same weights twice: the parents' line is a point
            m = by_name[name]
            key = (m.backend, m.path, json.dumps(m.options, sort_keys=True, default=str))
            if m.path is not None and key in seen:
                problems.append(((), f"parents '{seen[key]}' and '{name}' are the same model (same backend and path)"))
            seen.setdefault(key, name)
        paths = {n: by_name[n].path for n in parents}
        local = [(n, Path(x)) for n, x in paths.items() if x is not None and Path(x).exists()]
        for (na, pa), (nb, pb) in itertools.combinations(local, 2):  # a copy under another path
            if pa.resolve() != pb.resolve() and same_weight_files(pa, pb):
                problems.append(
                    ((), f"parents '{na}' and '{nb}' are the same model: {pa} and {pb} hold identical weight files")
                )
        return problems

    def power(self, suite: Suite) -> list[str]:
        """The held-out gain test over the configured texts, pool selection on half of them, and
        the calibration's rank among the controls (``power.py``)."""
        alpha, n = suite.stats.alpha, len(self._items())
        controls = [m for m in suite.by_role("control") if m.name not in self._parents(suite)]
        notes = [cv_note(n, alpha), controls_note(len(controls), alpha)]
        if self._candidates(suite):
            notes.append(selection_note(n // 2, alpha))
        return [x for x in notes if x is not None]

    # ------------------------------------------------------------------ analysis
    def _parents(self, suite: Suite) -> list[str]:
        return self.params.parents or [m.name for m in suite.by_role("parent")]

    def _candidates(self, suite: Suite) -> list[str]:
        """The pool beyond the known parents: role candidate, and params.candidates (which may
        name controls: each is then a candidate for the other models, and a subject itself)."""
        named = [m.name for m in suite.by_role("candidate")]
        return [*named, *(c for c in self.params.candidates if c not in named)]

    def analyze(self, records: dict[str, list[Record]], suite: Suite, rng: np.random.Generator) -> ProbeEvidence:
        """The pool is what collect scored in full: screened-out candidates leave it; then the
        analysis chain (``analysis.py``)."""
        short = self.shortlist(suite, records)
        screened_out: dict[str, str] = {}
        if short is not None:
            n = len(self._items()[: self.params.screen_texts])
            screened_out = {
                m: f"screened out on the first {n} texts ({w})" for m, w in short.why.items() if m not in short.kept
            }
            records = {m: r for m, r in records.items() if m not in screened_out}
        return self._analysis(suite, rng).run(records, screened_out)

    def _analysis(self, suite: Suite, rng: np.random.Generator) -> LogitAnalysis:
        return LogitAnalysis(
            self.params, suite, rng, self.new_evidence(suite), self._parents(suite), self._candidates(suite)
        )

    # ------------------------------------------------------------------ presentation (render.py)
    def case(self, evidence: ProbeEvidence, names: list[str], suite: Suite) -> ProbeCase | None:
        m = next((n for n in names if n in evidence.per_model), None)
        if evidence.status != "ok" or m is None:
            return None
        parents = self._parents(suite.for_probe(self.spec))
        result = evidence.results(LogitResult)[m]
        return logit_case(f"{evidence.instance} ({evidence.mode})", result, parents, evidence.ci_level)

    def report_section(self, evidence: ProbeEvidence, suite: Suite) -> str:
        return render.report_section(evidence, self._parents(suite), self.params.verdict)

    def figures(self, evidence: ProbeEvidence, out_dir: Path) -> list[tuple[str, Path]]:
        return render.figures(evidence, out_dir, self.params.verdict) + render.genealogy_figure(evidence, out_dir)
