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

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from harness.backends.base import Capabilities, Capability, GenerateRequest, ScoreRequest, ScoreResult
from harness.case import ProbeCase
from harness.evidence import Estimate, ProbeEvidence
from harness.provenance import same_weight_files
from harness.stats import adjust, paired_bootstrap, percentile_ci, z_pvalue
from harness.suite import ModelSpec, Suite
from probes.base import Planned, Probe, ProbeParams, Record, Shortlist, Skip, uncalibrated_note
from probes.logit import render
from probes.logit.case import logit_case
from probes.logit.estimators import describe, merge_weight_range, summed_statistics
from probes.logit.interpolation import Layout, centred, cv_gain, sq_distance, text_stats, weighted_gram
from probes.logit.lineage import excess, is_task_free, relative_distances, task_free_items
from probes.logit.result import ControlCalibration, Interval, LogitResult
from probes.logit.selection import screen_order, select
from probes.logit.verdict import VerdictThresholds, decide
from probes.shared.align import align, as_kind, request_mode
from probes.shared.corpus import corpus_items

MODE_ORDER = {"full": 0, "topk": 1, "next_token": 2}
MERGE_VERDICTS = ("interpolation", "interpolation_plus_training")
POWER_NOTE = {
    "full": "full vocabulary at every position: the most powerful mode",
    "topk": "only tokens in every model's top-k (plus the actual token) at each position: fewer points per "
    "text, so wider intervals than full mode for the same texts",
    "next_token": "one position per prompt (the first token of the answer) with at most k tokens: by far the "
    "least data per prompt; expect wide intervals unless many prompts are used",
}


class LogitParams(ProbeParams):
    max_texts: int | None = Field(None, ge=4, description="Use N texts, taken round-robin across corpus groups.")
    max_tokens: int = Field(64, ge=4, description="Tokens scored per text.")
    mode: Literal["auto", "full", "topk", "next_token"] = Field(
        "auto", description="Data mode; 'auto' uses the richest mode every model supports."
    )
    top_k: int = Field(20, ge=2, le=1000, description="k for top-k and next-token modes.")
    vocab_sample: int = Field(
        4096,
        ge=0,
        description="Full mode: store this many vocabulary entries per scored token, a uniform sample drawn once "
        "per text and shared by every model, plus the vocab_head most likely tokens and the actual token; the "
        "statistics weight the sample by V / n (unbiased for the full-vocabulary sums). 0 stores the whole "
        "vocabulary (4 V bytes per token). A vocabulary no larger than vocab_sample + vocab_head is stored whole.",
    )
    vocab_head: int = Field(64, ge=1, description="Full mode, compact storage: the most likely tokens kept exactly.")
    parents: list[str] | None = Field(None, min_length=2, description="Parent model names; default: every parent.")
    candidates: list[str] = Field(
        default_factory=list,
        description="Models (of any role) that may be parents, besides those with role: candidate. With "
        "candidates, each suspect and control gets the subset of parents and candidates that explains it "
        "(probes/logit/selection.py).",
    )
    screen_texts: int | None = Field(
        None,
        ge=4,
        description="Screen the pool first: score each role-candidate model on the first N texts only, rank the "
        "candidates per suspect on them, and score in full only each suspect's `shortlist` best (a second "
        "load of each). None: every candidate is scored in full.",
    )
    shortlist: int = Field(
        6, ge=2, description="With screen_texts: the candidates per suspect that go on to full scoring."
    )
    task_free_texts: int = Field(
        24,
        ge=0,
        description="Task-free inputs (shuffled words, word salad, random characters; probes/logit/lineage.py) "
        "scored besides the corpus in teacher-forced modes: the lineage signal that tells inherited weights from "
        "imitation. Without them (0, or next-token mode) no verdict that claims or denies shared weights short of "
        "a merge or a copy (derived, sibling, related, unrelated) is drawn.",
    )
    disagreement_tau: float = Field(1.0, gt=0, description="Parents 'disagree' where centred log-probs differ by more.")
    cv_splits: int = Field(50, ge=5, description="Random half splits of the cross-validated test.")
    noise_replicate: bool = Field(True, description="Score each parent twice (batch order reversed): noise floor.")
    verdict: VerdictThresholds = Field(default_factory=VerdictThresholds)

    @model_validator(mode="after")
    def _screen_within_texts(self) -> LogitParams:
        if self.screen_texts is not None and self.max_texts is not None and self.screen_texts > self.max_texts:
            raise ValueError(
                f"screen_texts ({self.screen_texts}) is more than max_texts ({self.max_texts}): the screen would "
                "score every text; set screen_texts below max_texts, or leave it out"
            )
        return self


@dataclass(frozen=True)
class _Data:
    """What analysis works on: parents, the models placed against them, answers by text id
    (first scoring and the parents' replicate), the data mode and the texts all models answered."""

    parents: list[str]
    others: list[str]
    main: dict[str, dict[str, Record]]
    reps: dict[str, dict[str, Record]]
    mode: str
    ids: list[str]
    candidates: list[str] = field(default_factory=list)  # a pool to select parents from, per model
    task_free: list[str] = field(default_factory=list)  # ids of the task-free inputs every model answered
    screened_out: dict[str, str] = field(default_factory=dict)  # candidates not shortlisted, with why


class LogitInterpolationProbe(Probe):
    kind: ClassVar[str] = "logit_interpolation"
    version: ClassVar[str] = "2"
    description: ClassVar[str] = "teacher-forced log-probs: is the suspect an interpolation of the parents?"
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
        if mode == "next_token":  # no task-free inputs: a chat answer's first token is what training shaped
            k = min(p.top_k, caps.max_top_k) if caps.max_top_k else p.top_k
            return [
                Planned(
                    GenerateRequest(messages=[{"role": "user", "content": it.text}], max_new_tokens=1, top_logprobs=k),
                    {"id": it.id, "group": it.group},
                )
                for it in natural
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
        data = self._select(head, suite, self.new_evidence(suite))
        suspects = [m for m in (data.others if data else []) if suite.model(m).role == "suspect"]
        if data is None or not suspects:
            return Shortlist(kept=screened, why={m: "nothing to screen against: kept" for m in screened})
        pool_all = [*data.parents, *data.candidates]
        groups = self._tokenisation_groups(data, list(dict.fromkeys([*pool_all, *suspects])))
        group_of = {m: key for key, members in groups.items() for m in members}
        kept: set[str] = set()
        why: dict[str, list[str]] = {m: [] for m in screened}
        for s in suspects:
            members = groups[group_of[s]]
            pool = [c for c in pool_all if c != s and c in members]
            for c in screened:
                if c not in members:
                    why[c].append(f"{s}: tokenises the texts differently")
            if not pool:
                continue
            idx = [members.index(x) for x in (s, *pool)]
            g = self._pool_gram(data, members)[:, idx][:, :, idx]
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

    # ------------------------------------------------------------------ analysis
    def _parents(self, suite: Suite) -> list[str]:
        return self.params.parents or [m.name for m in suite.by_role("parent")]

    def _candidates(self, suite: Suite) -> list[str]:
        """The pool beyond the known parents: role candidate, and params.candidates (which may
        name controls: each is then a candidate for the other models, and a subject itself)."""
        named = [m.name for m in suite.by_role("candidate")]
        return [*named, *(c for c in self.params.candidates if c not in named)]

    def analyze(self, records: dict[str, list[Record]], suite: Suite, rng: np.random.Generator) -> ProbeEvidence:
        """Select the data, reduce each text to sufficient statistics, refuse degenerate parents,
        estimate with paired bootstrap CIs, calibrate against controls, correct and decide."""
        ev = self.new_evidence(suite)
        short = self.shortlist(suite, records)
        out: dict[str, str] = {}
        if short is not None:  # the pool is what collect scored in full: screened-out candidates leave it
            out = {
                m: f"screened out on the first {len(self._items()[: self.params.screen_texts])} texts ({w})"
                for m, w in short.why.items()
            }
            out = {m: w for m, w in out.items() if m not in short.kept}
            records = {m: r for m, r in records.items() if m not in out}
        data = self._select(records, suite, ev)
        if data is None:
            return ev
        data = replace(data, screened_out=out)
        ev.notes.append(f"Data mode '{data.mode}': {POWER_NOTE[data.mode]}.")
        if data.mode == "full":
            ev.notes += self._storage_note(data)
        controls = [m for m in data.others if suite.model(m).role == "control"]
        ev.calibrated = bool(controls)
        if not controls:
            ev.notes.append(uncalibrated_note(suite, "nothing anchors what a 'low' residual means"))
        if data.candidates:
            pooled = self._select_from_pool(data, suite, rng, ev)
            if pooled is None:
                return ev
            results = pooled
        else:
            fitted = self._fit(data, suite, rng, ev)
            if fitted is None:
                return ev
            results = fitted
            self._drop_unsupported_parents(results, data, suite, rng, ev)
        ev.per_model = {m: r.model_dump(mode="json") for m, r in results.items()}
        ev.summary = render.summary(results, ev.ci_level, suite, data.parents, len(data.ids))
        return ev

    def _fit(
        self, data: _Data, suite: Suite, rng: np.random.Generator, ev: ProbeEvidence
    ) -> dict[str, LogitResult] | None:
        """Every model placed against ``data.parents``: per-text statistics, the noise floor,
        estimates with CIs, calibration against the controls and the verdict; None (the reason in
        ``ev``) when the texts or the parents allow no analysis."""
        per_text = self._per_text_statistics(data, ev)
        if per_text is None:
            return None
        noise, same = self._noise_floor(data.main, data.reps, data.parents, data.ids, data.mode, self.params.top_k)
        if same is not None:  # the parents' line is (almost) a point
            ev.status = "skipped"
            ev.reason = (
                f"parents '{same[0]}' and '{same[1]}' are the same model within the noise floor (their "
                f"distance is less than 3x the difference between two scorings of one parent): there is no "
                "line between them to place a suspect on"
            )
            ev.notes = []
            return None
        controls = [m for m in data.others if suite.model(m).role == "control"]
        results, point, boot = self._estimate(data, per_text, noise, suite, rng, ev)
        self._lineage_signal(results, data, point, boot, suite, rng, ev)
        self._calibrate(results, controls, boot, point)
        self._decide(results, ev, data, suite)
        return results

    def _select_from_pool(
        self, data: _Data, suite: Suite, rng: np.random.Generator, ev: ProbeEvidence
    ) -> dict[str, LogitResult] | None:
        """Per suspect and control: its pool (the known parents and candidates, less itself),
        screened by tokenisation, the subset ``selection.select`` chooses (selection half, then
        confirmed on held-out texts), and the probe's own verdict with that subset as the parents.
        Fewer than two confirmed members means no merge of the pool: the verdict is computed
        against the best pair for its numbers, and a merge verdict there is not drawn."""
        pool_all = [*data.parents, *data.candidates]
        involved = list(dict.fromkeys([*pool_all, *data.others]))
        groups = self._tokenisation_groups(data, involved)
        gram = {key: self._pool_gram(data, members) for key, members in groups.items()}
        group_of = {m: key for key, members in groups.items() for m in members}
        selections: dict[str, Any] = {}
        fit_sets: dict[tuple[str, ...], list[str]] = {}
        rows: list[dict[str, Any]] = []
        t = self.params.verdict
        for s in data.others:
            members = groups[group_of[s]]
            pool = [c for c in pool_all if c != s and c in members]
            excluded = {
                c: f"tokenises the texts differently from {s}: cannot be an element-wise merge parent"
                for c in pool_all
                if c != s and c not in members
            } | data.screened_out
            if len(pool) < 2:
                ev.notes.append(f"{s}: fewer than two candidates share its tokenisation; not analysed.")
                continue
            g = gram[group_of[s]]
            idx = [members.index(x) for x in (s, *pool)]
            sel = select(g[:, idx][:, :, idx], pool, rng, suite.stats.alpha, t.min_cv_gain, self.params.cv_splits)
            chosen = sorted(sel.selected, key=pool.index)
            if len(chosen) < 2:
                # No merge of the pool. The numbers are computed against its two nearest candidates,
                # so "derived" means much nearer to one candidate than to any other, and distances
                # are in units of the two nearest candidates' distance; no merge verdict is drawn.
                total = g[:, idx][:, :, idx].sum(axis=0)
                dist = {c: float(sq_distance(total, 0, i + 1)) for i, c in enumerate(pool)}
                chosen = sorted(sorted(pool, key=dist.__getitem__)[:2], key=pool.index)
            fit_sets.setdefault(tuple(chosen), []).append(s)
            selections[s] = sel
            rows.append(self._selection_row(s, sel, pool, excluded, t.min_cv_gain, suite.stats.alpha))
        results: dict[str, LogitResult] = {}
        for parents, members in fit_sets.items():
            # Placed against this set: its members, and for a selected set (a merge verdict is possible)
            # the controls too, whose residuals calibrate it; a nearest pair draws no merge verdict.
            selected = any(len(selections[m].selected) >= 2 for m in members)
            others = [
                x
                for x in data.others
                if x not in parents and (x in members or (selected and suite.model(x).role == "control"))
            ]
            fitted, scratch = self._refit(
                replace(data, parents=list(parents), others=others, candidates=[]), suite, rng, ev
            )
            if fitted is None:
                ev.notes.append(f"{', '.join(members)}: no analysis against {', '.join(parents)}: {scratch.reason}")
                continue
            for m in members:
                r = fitted[m]
                r.parents = list(parents)
                sel = selections[m]
                if len(sel.selected) < 2:
                    if r.verdict in MERGE_VERDICTS:
                        r.reasons.append(
                            "the pool selection confirmed fewer than two parents on held-out texts, so no merge "
                            "verdict is drawn from the nearest pair"
                        )
                        r.verdict = "inconclusive"
                    floor = 2.0**-sel.n_select  # the one-sided signed-rank test's smallest p on n texts
                    why = (
                        "no merge of the pool (one candidate suffices)"
                        if floor < suite.stats.alpha
                        else f"no merge of the pool shown, and none could be: on the {sel.n_select} texts of the "
                        f"selection half the test's smallest possible p is {floor:.2g}, not below alpha "
                        f"{suite.stats.alpha:g}; use at least {2 * (math.floor(math.log2(1 / suite.stats.alpha)) + 1)} "
                        "texts"
                    )
                    if floor >= suite.stats.alpha:
                        ev.limitations.append(f"{m}: {why}")
                    r.reasons.insert(0, f"{why}; placed against its two nearest: " + ", ".join(parents))
                else:
                    r.reasons.insert(0, f"parents selected from the pool: {', '.join(parents)}")
                results[m] = r
                ev.estimates += [e for e in scratch.estimates if e.model == m]
        for row in rows:  # the parents found: a confirmed set on which the verdict is a merge
            res = results.get(row["model"])
            row["parents_found"] = row["selected"] if res is not None and res.verdict in MERGE_VERDICTS else []
            row["verdict"] = res.verdict if res is not None else None
        ev.tables["selection"] = rows
        return results

    def _tokenisation_groups(self, data: _Data, models: list[str]) -> dict[str, list[str]]:
        """Models with identical token ids on every text (teacher-forced modes), in order; in
        next-token mode answers are aligned by token string, so everyone is one group."""
        if data.mode == "next_token":
            return {"all": models}
        groups: dict[str, list[str]] = {}
        for m in models:
            h = hashlib.sha256()
            for t in data.ids:
                h.update(as_kind(data.main[m][t].result, ScoreResult).token_ids.astype(np.int64).tobytes())
            groups.setdefault(h.hexdigest(), []).append(m)
        return groups

    def _pool_gram(self, data: _Data, members: list[str]) -> np.ndarray:
        """(texts, M, M) inner products of centred log-probs of ``members`` on their shared support."""
        out = []
        for t in data.ids:  # one text at a time: answers are read from the cache and released
            lp, w = align([data.main[m][t].result for m in members], data.mode, self.params.top_k)
            c = centred(lp, w)
            out.append(np.einsum("pk,pkm,pkn->mn", w, c, c))
        return np.stack(out)

    @staticmethod
    def _selection_row(
        s: str, sel: Any, pool: list[str], excluded: dict[str, str], min_gain: float, alpha: float
    ) -> dict[str, Any]:
        why = dict(excluded)
        why |= sel.removed
        step_of = {c: st for st in sel.steps for c in st.members}
        for c in pool:
            if c not in sel.selected and c not in why:
                st = step_of.get(c)
                why[c] = (
                    f"in the best set of size {st.size}, which was not taken: CV gain {100 * st.cv_gain:.0f}% "
                    f"(needs >= {100 * min_gain:.0f}%), p {st.p:.2g} (needs < {alpha:g}) on the selection half"
                    if st is not None and st.size > len(sel.selected)
                    else "in no best set: adds no out-of-sample gain"
                )
        return {
            "model": s,
            "selected": sel.selected,
            "pool": pool,
            "texts": {"selection": sel.n_select, "test": sel.n_test},
            "steps": [
                {"size": st.size, "members": st.members, "residual": st.residual, "cv_gain": st.cv_gain, "p": st.p}
                for st in sel.steps
            ],
            "confirmed_p": sel.confirmed,
            "dropped": why,
            "near_equivalent": sel.equivalent,
            "swaps": sel.swaps,
        }

    def _refit(
        self, data: _Data, suite: Suite, rng: np.random.Generator, ev: ProbeEvidence
    ) -> tuple[dict[str, LogitResult] | None, ProbeEvidence]:
        """``_fit`` against another parent set, into a scratch evidence (calibrated like ``ev``)
        whose estimates the caller moves over for the models it keeps."""
        scratch = self.new_evidence(suite)
        scratch.calibrated = ev.calibrated
        return self._fit(data, suite, rng, scratch), scratch

    def _drop_unsupported_parents(
        self, results: dict[str, LogitResult], data: _Data, suite: Suite, rng: np.random.Generator, ev: ProbeEvidence
    ) -> None:
        """A listed parent the evidence gives no weight (its weight's CI lower bound at or below the
        margin, so the CI reaches 0) is reported as not supported, and the model's verdict is
        computed again on the parents that are: a superfluous parent must not make a genuine merge
        of the others inconclusive. The same rule for suspects and controls; the re-analysis places
        every model (controls included, for calibration) against the reduced set."""
        if len(data.parents) < 3:
            return
        margin = self.params.verdict.a_margin
        groups: dict[tuple[str, ...], list[str]] = {}
        for m, r in results.items():
            keep = tuple(x for x in data.parents if (r.weights[x].lo or 0.0) > margin)
            if 2 <= len(keep) < len(data.parents):
                groups.setdefault(keep, []).append(m)
        for keep, members in groups.items():
            reduced, scratch = self._refit(replace(data, parents=list(keep)), suite, rng, ev)
            if reduced is None:
                continue
            for m in members:
                dropped = {x: results[m].weights[x] for x in data.parents if x not in keep}
                r = reduced[m]
                r.parents = list(keep)
                r.unsupported = dropped
                r.reasons.insert(
                    0,
                    "not supported by the evidence: "
                    + ", ".join(f"{x} (weight {w.text()}, CI reaches {margin})" for x, w in dropped.items())
                    + f"; the verdict is computed on {', '.join(keep)}",
                )
                results[m] = r
                ev.estimates = [e for e in ev.estimates if e.model != m] + [
                    e for e in scratch.estimates if e.model == m
                ]

    def _select(self, records: dict[str, list[Record]], suite: Suite, ev: ProbeEvidence) -> _Data | None:
        """Parents (and candidates), the models placed against them, the data mode and the texts
        every model answered; None (with the reason in ``ev``) when there is nothing to analyse."""
        parents = self._parents(suite)
        candidates = [c for c in self._candidates(suite) if c not in parents]
        if len(parents) + len(candidates) < 2:
            ev.status, ev.reason = "skipped", "needs at least two parent (or candidate) models"
            return None
        missing = [x for x in (parents if not candidates else []) if not records.get(x)]
        if missing:
            ev.status, ev.reason = "skipped", f"no records for parent(s) {', '.join(missing)}"
            return None
        main = {m: {r.meta["id"]: r for r in recs if not r.meta.get("replicate")} for m, recs in records.items()}
        reps = {m: {r.meta["id"]: r for r in recs if r.meta.get("replicate")} for m, recs in records.items()}
        if candidates:  # every scored model of the pool; subjects are the suspects and controls
            dropped = [x for x in [*parents, *candidates] if not main.get(x)]
            if dropped:
                ev.notes.append(f"No records for {', '.join(dropped)}: left out of the pool.")
            parents = [x for x in parents if main.get(x)]
            candidates = [x for x in candidates if main.get(x)]
            others = [m.name for m in suite.models if m.role in ("suspect", "control") and main.get(m.name)]
        else:
            others = [m.name for m in suite.models if m.name not in parents and main.get(m.name)]
        if not others:
            ev.status, ev.reason = "skipped", "no suspect or control was scored"
            return None
        involved = list(dict.fromkeys([*parents, *candidates, *others]))
        modes = {request_mode(r.request) for m in involved for r in main[m].values()}
        if self.params.mode != "auto":
            modes.add(self.params.mode)
        if "next_token" in modes and modes != {"next_token"}:
            ev.status = "skipped"
            ev.reason = "models were probed in incompatible modes (teacher-forced vs next-token); pick one mode"
            return None
        mode = max(modes, key=lambda x: MODE_ORDER[x])
        ev.mode = mode
        answered = sorted(set.intersection(*(set(main[m]) for m in involved)))
        ids = [t for t in answered if not is_task_free(t)]
        if len(ids) < 4:
            ev.status, ev.reason = "skipped", f"only {len(ids)} texts were answered by every model"
            return None
        return _Data(parents, others, main, reps, mode, ids, candidates, [t for t in answered if is_task_free(t)])

    @staticmethod
    def _storage_note(data: _Data) -> list[str]:
        """Say so when full mode ran on compact storage: its divergences carry sampling noise."""
        first = as_kind(data.main[[*data.parents, *data.candidates][0]][data.ids[0]].result, ScoreResult)
        if first.sample_ids is None or first.topk_ids is None:
            return []
        return [
            f"Compact full-vocabulary storage: per scored token the {first.topk_ids.shape[1]} most likely tokens "
            f"and the actual one exactly, plus {len(first.sample_ids)} of the {first.vocab_size} vocabulary entries "
            "drawn at random per text and weighted by V / n (unbiased for every sum over the vocabulary). The "
            "distances, residual and a_hat agree with the whole vocabulary to about 0.002; KL, JS and TV are "
            "self-normalised estimates with sampling noise and a small bias (within about 15% at SmolLM2's "
            "vocabulary; `benchmarks/bench_full_storage.py`)."
        ]

    def _per_text_statistics(self, data: _Data, ev: ProbeEvidence) -> dict[str, np.ndarray] | None:
        """(texts, L) sufficient statistics per model placed against the parents; None (and the
        reason in ``ev``) when two models tokenise a text differently."""
        parents = data.parents
        per_text: dict[str, np.ndarray] = {}
        for m in data.others:
            rows = []
            for t in data.ids:  # one text at a time: answers are read from the cache and released
                results = [data.main[x][t].result for x in (m, *parents)]
                if data.mode != "next_token":  # teacher-forced: every model must have scored the same tokens
                    tokens = [as_kind(r, ScoreResult).token_ids for r in results]
                    bad = next((x for x, ids in zip((m, *parents), tokens) if not np.array_equal(ids, tokens[1])), None)
                    if bad is not None:
                        ev.status = "skipped"
                        ev.reason = (
                            f"models '{parents[0]}' and '{bad}' tokenise text {t} differently; logit interpolation "
                            "needs a shared tokenizer (a merge always has one: see the tokenizer probe)"
                        )
                        ev.notes = []
                        return None
                lp, weight = align(results, data.mode, self.params.top_k)
                rows.append(text_stats(lp, weight, self.params.disagreement_tau).vector())
            per_text[m] = np.stack(rows)
        return per_text

    def _estimate(
        self,
        data: _Data,
        per_text: dict[str, np.ndarray],
        noise: dict[str, float],
        suite: Suite,
        rng: np.random.Generator,
        ev: ProbeEvidence,
    ) -> tuple[dict[str, LogitResult], dict[str, dict[str, float]], dict[str, dict[str, np.ndarray]]]:
        """Every named estimate with its cluster-bootstrap CI, the cross-validated gain and the
        weights-inside test, per model; returns the typed results, the point estimates and the
        (paired) replicates."""
        p, parents, alpha, n_texts = self.params, data.parents, suite.stats.alpha, len(data.ids)
        layout = Layout(len(parents) + 1)
        # One set of resampled texts for every model: replicates are paired across models.
        boot = paired_bootstrap(per_text, lambda v: summed_statistics(v, layout, parents), suite.stats.bootstrap, rng)
        point: dict[str, dict[str, float]] = {}
        cv: dict[str, tuple[np.ndarray, float]] = {}
        for m in data.others:
            point[m] = {n: float(x) for n, x in summed_statistics(per_text[m].sum(0), layout, parents).items()}
            cv[m] = cv_gain(layout.get(per_text[m], "gram"), rng, p.cv_splits)
        results: dict[str, LogitResult] = {}
        for m in data.others:
            iv: dict[str, Interval] = {}
            for name, value in point[m].items():
                lo, hi = percentile_ci(boot[m][name], alpha)
                iv[name] = Interval(value=value, lo=lo, hi=hi)
                ev.estimates.append(
                    Estimate(
                        name=name,
                        model=m,
                        value=value,
                        ci_low=lo,
                        ci_high=hi,
                        ci_level=1 - alpha,
                        n=n_texts,
                        method=f"cluster bootstrap over texts ({suite.stats.bootstrap}); {describe(name)}",
                    )
                )
            gains, p_cv = cv[m]
            nearest = parents[int(np.argmin([point[m][f"distance[{x}]"] for x in parents]))]
            w_names = [f"weight[{x}]" for x in parents]
            tested = w_names[:1] if len(parents) == 2 else w_names
            # Weights inside (0, 1): z-tests with the bootstrap SE, the larger one-sided p (intersection-union).
            p_int = []
            for n in tested:
                se = float(np.nanstd(boot[m][n], ddof=1))
                p_int += [z_pvalue(point[m][n], 0.0, se, "greater"), z_pvalue(point[m][n], 1.0, se, "less")]
            r = LogitResult(
                role=suite.model(m).role,
                n_texts=n_texts,
                a_hat=iv.get("a_hat"),
                weights={x: iv[f"weight[{x}]"] for x in parents},
                residual=iv["residual"],
                nearest_parent_distance=iv["nearest_parent_distance"],
                nearest_parent=nearest,
                noise_floor=noise.get(nearest, 0.0),
                distance_ratio=iv.get("distance_ratio"),
                betweenness=iv.get("betweenness"),
                cv_gain=float(np.mean(gains)),
                cv_p=p_cv,
                p_weights_inside=max(p_int),
            )
            if r.a_hat is not None:
                ev.estimates.append(merge_weight_range(m, r, n_texts, 1 - alpha))
                e = ev.estimates[-1]
                r.merge_weight = Interval(value=e.value, lo=e.ci_low, hi=e.ci_high)
            ev.estimates.append(
                Estimate(
                    name="cv_gain",
                    model=m,
                    value=r.cv_gain,
                    p_value=p_cv,
                    n=len(gains),
                    null="the interpolation predicts held-out texts no better than the better single parent",
                    method=f"{p.cv_splits} random half splits; one-sided Wilcoxon signed-rank on per-text gains",
                )
            )
            results[m] = r
        return results, point, boot

    def _lineage_signal(
        self,
        results: dict[str, LogitResult],
        data: _Data,
        point: dict[str, dict[str, float]],
        boot: dict[str, dict[str, np.ndarray]],
        suite: Suite,
        rng: np.random.Generator,
        ev: ProbeEvidence,
    ) -> None:
        """Each model's distance to each parent on the task-free inputs, in units of the parents'
        own distance there, and its excess over the natural-text distance (``lineage.py``), with
        bootstrap CIs. The task-free texts are resampled on their own and paired replicate by
        replicate with the natural texts' replicates (``boot``): the two are independent samples."""
        if len(data.task_free) < 4 or data.mode == "next_token":  # see lineage.py: no signal from chat answers
            return
        parents, alpha = data.parents, suite.stats.alpha
        per_text: dict[str, np.ndarray] = {}
        for m in data.others:
            rows = []
            for t in data.task_free:
                results_t = [data.main[x][t].result for x in (m, *parents)]
                tokens = [as_kind(r, ScoreResult).token_ids for r in results_t]
                if any(not np.array_equal(ids, tokens[0]) for ids in tokens[1:]):
                    continue  # an input the models tokenise differently is left out
                lp, w = align(results_t, data.mode, self.params.top_k)
                rows.append(weighted_gram(centred(lp, w), w).ravel())
            if len(rows) >= 4:
                per_text[m] = np.stack(rows)
        if not per_text:
            return
        k = len(parents) + 1
        tf_boot = paired_bootstrap(
            per_text, lambda v: {"d": relative_distances(v.reshape(*v.shape[:-1], k, k))}, suite.stats.bootstrap, rng
        )
        for m, rows_m in per_text.items():
            r = results[m]
            tf_point = relative_distances(rows_m.sum(0).reshape(k, k))
            i = parents.index(r.nearest_parent)
            nat_point = np.array([point[m][f"distance[{x}]"] for x in parents])
            nat_rep = np.stack([boot[m][f"distance[{x}]"] for x in parents], axis=-1)
            ex_point = excess(nat_point, tf_point)
            ex_rep = excess(nat_rep, tf_boot[m]["d"])
            for j, x in enumerate(parents):
                lo, hi = percentile_ci(tf_boot[m]["d"][:, j], alpha)
                r.task_free_distance[x] = Interval(value=float(tf_point[j]), lo=lo, hi=hi)
                lo, hi = percentile_ci(ex_rep[:, j], alpha)
                r.lineage_excess[x] = Interval(value=float(ex_point[j]), lo=lo, hi=hi)
            r.n_task_free = len(rows_m)
            near = parents[i]
            for name, iv, how in (
                (
                    f"task_free_distance[{near}]",
                    r.task_free_distance[near],
                    "RMS distance of centred log-probs to the nearest parent on the task-free inputs, in units of "
                    "the parents' distance on the same inputs; cluster bootstrap over those inputs "
                    f"({suite.stats.bootstrap})",
                ),
                (
                    f"lineage_excess[{near}]",
                    r.lineage_excess[near],
                    "log(task-free distance / natural-text distance) to the nearest parent, each in units of the "
                    "parents' distance on the same inputs; independent cluster bootstraps over task-free inputs and "
                    f"natural texts ({suite.stats.bootstrap})",
                ),
            ):
                ev.estimates.append(
                    Estimate(
                        name=name,
                        model=m,
                        value=iv.value,
                        ci_low=iv.lo,
                        ci_high=iv.hi,
                        ci_level=1 - alpha,
                        n=len(rows_m),
                        method=how + "; probes/logit/lineage.py",
                    )
                )

    def _decide(self, results: dict[str, LogitResult], ev: ProbeEvidence, data: _Data, suite: Suite) -> None:
        """Multiple-comparison correction of each model's tests, then the verdict rule."""
        for m in data.others:
            r = results[m]
            tests = {"cv_p": r.cv_p, "p_weights_inside": r.p_weights_inside}
            if r.p_residual_below_controls is not None:
                tests["p_residual_below_controls"] = r.p_residual_below_controls
            adjusted = dict(zip(tests, adjust(list(tests.values()), suite.stats.correction)))
            r.cv_p_adjusted = adjusted["cv_p"]
            r.p_weights_inside_adjusted = adjusted["p_weights_inside"]
            r.p_residual_below_controls_adjusted = adjusted.get("p_residual_below_controls")
            for e in ev.estimates:
                if e.model == m and e.name == "cv_gain":
                    e.p_adjusted = r.cv_p_adjusted
            r.verdict, r.parent, r.reasons = decide(
                r, self.params.verdict, suite.stats.alpha, bool(ev.calibrated), data.mode
            )

    def _noise_floor(self, main, reps, parents, ids, mode, k) -> tuple[dict[str, float], tuple[str, str] | None]:
        """RMS difference between a parent scored twice, in parent-distance units (0 when not
        measured), and the first pair of parents that is one model within that noise.

        The unit is the mean squared distance over parent pairs, the one the estimates use. A pair
        is degenerate when either parent's replicate differs from itself by more than a third of
        the pair's distance (or the pair has no distance at all): with two such parents the line
        (or a simplex edge) is a point, and the weights between them are not identified.
        """
        n = len(parents)
        pair_sq = np.zeros((n, n))
        diff = np.zeros(n)
        for t in ids:
            lp, w = align([main[x][t].result for x in parents], mode, k)
            c = centred(lp, w)
            for i, j in itertools.combinations(range(n), 2):
                pair_sq[i, j] += float(np.sum(w * (c[..., i] - c[..., j]) ** 2))
            for i, x in enumerate(parents):
                if t in reps.get(x, {}):
                    lp2, w2 = align([main[x][t].result, reps[x][t].result], mode, k)
                    c2 = centred(lp2, w2)
                    diff[i] += float(np.sum(w2 * (c2[..., 0] - c2[..., 1]) ** 2))
        pairs = list(itertools.combinations(range(n), 2))
        scale = sum(pair_sq[i, j] for i, j in pairs) / len(pairs)
        noise = {x: float(np.sqrt(diff[i] / scale)) if scale > 0 else float("inf") for i, x in enumerate(parents)}
        same = next(
            (
                (parents[i], parents[j])
                for i, j in pairs
                if pair_sq[i, j] <= 0 or 9 * max(diff[i], diff[j]) > pair_sq[i, j]
            ),
            None,
        )
        return noise, same

    def _calibrate(self, results: dict[str, LogitResult], controls: list[str], boot, point) -> None:
        """Each model against the controls (leave-one-out for a control): empirical p, z-score, paired test."""

        def stat(r: LogitResult, name: str) -> float | None:
            x = {"residual": r.residual.value, "cv_gain": r.cv_gain}.get(name)
            return r.betweenness.value if name == "betweenness" and r.betweenness else x

        for m, r in results.items():
            ref = [c for c in controls if c != m]
            if not ref:
                continue
            for name, lower_is_merge_like in (("residual", True), ("betweenness", False), ("cv_gain", False)):
                # A statistic can be undefined (NaN: e.g. no CV gain against a copy-like model): such a
                # control is no reference for it, and an undefined value is not ranked.
                vals_of = {c: v for c in ref if (v := stat(results[c], name)) is not None and np.isfinite(v)}
                x = stat(r, name)
                if not vals_of or x is None or not np.isfinite(x):
                    continue
                vals = np.array(list(vals_of.values()))
                extreme = np.sum(vals <= x) if lower_is_merge_like else np.sum(vals >= x)
                sd = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
                r.calibration[name] = ControlCalibration(
                    value=x,
                    controls=vals_of,
                    empirical_p=float((1 + extreme) / (1 + len(vals))),
                    z=float((x - vals.mean()) / sd) if sd and np.isfinite(sd) and sd > 0 else None,
                )
            # Paired bootstrap z-test: residual below each control's (same resampled texts); worst control.
            # A control whose residual is undefined (next-token data sharing no token with the
            # parents' top-k) is no reference: it must not veto a merge verdict by comparing as NaN.
            ref = [c for c in ref if np.isfinite(point[c]["residual"])]
            if not ref or not np.isfinite(point[m]["residual"]):
                continue
            p_each = {}
            for c in ref:
                d = boot[c]["residual"] - boot[m]["residual"]
                p_each[c] = z_pvalue(
                    point[c]["residual"] - point[m]["residual"], 0.0, float(np.nanstd(d, ddof=1)), "greater"
                )
            worst = max(p_each, key=lambda c: p_each[c])
            r.p_residual_below_controls = p_each[worst]
            r.closest_control = worst
            r.residual_below_all_controls = all(point[c]["residual"] > point[m]["residual"] for c in ref)

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
        return render.figures(evidence, out_dir, self.params.verdict)
