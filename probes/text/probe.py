"""Evidence from text alone: is a suspect that returns no log-probs an interpolation of its parents?

Many API models return text only. The parents of a merge case are usually open weights, so the
suspect's own samples are scored locally by each parent:

1. **Stage one.** Every model (suspect, controls, parents) answers ``prompts`` prompts of the
   corpus ``samples`` times, seeded, at the recorded ``temperature`` / ``top_p`` /
   ``max_new_tokens``: no log-probs needed, cached like every answer.
2. **Stage two** (``Probe.staged``: the parents, once stage one's answers exist). Each parent
   teacher-forces every other model's samples as the answer to their prompt, under its own chat
   template (``ScoreRequest.prompt``; the hf backend), full vocabulary in compact storage.
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
from pydantic import Field

from harness.backends.base import (
    Capabilities,
    Capability,
    GenerateRequest,
    GenerateResult,
    ScoreRequest,
    ScoreResult,
)
from harness.case import ProbeCase
from harness.errors import InputError
from harness.evidence import Estimate, Interval, ProbeEvidence
from harness.stats import adjust, cluster_bootstrap, wilcoxon_greater
from harness.suite import ModelSpec, Suite
from probes.base import Planned, Probe, ProbeParams, Record, Skip, uncalibrated_note
from probes.shared.align import align
from probes.shared.corpus import corpus_items
from probes.shared.tokenizer_files import TokenizerFingerprint, fingerprint
from probes.text import equality, likelihood, render
from probes.text.case import text_case
from probes.text.result import Equality, TextResult
from probes.text.verdict import decide

# What decides how a text is split into tokens (the chat template and decoder do not).
TOKENISATION = ("model_type", "vocab", "merges", "pre_tokenizer", "normalizer")


class TextParams(ProbeParams):
    prompts: int = Field(32, ge=4, description="Prompts of the corpus, taken round-robin across its groups.")
    samples: int = Field(4, ge=2, description="Sampled answers per prompt and model.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (recorded; fitted back as T).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling; 1 keeps the likelihood exact.")
    max_new_tokens: int = Field(32, ge=2)
    prompt_chars: int = Field(160, ge=20, description="A corpus text is cut to this many characters as the prompt.")
    seed: int = 0
    parents: list[str] | None = Field(None, min_length=2, description="Parent model names; default: every parent.")
    vocab_sample: int = Field(4096, ge=0, description="Compact full-vocabulary storage of the parents' scoring.")
    vocab_head: int = Field(64, ge=1)
    bootstrap: int = Field(200, ge=20, description="Cluster-bootstrap replicates (each refits the likelihood).")
    cv_splits: int = Field(20, ge=5, description="Random half splits of the prompts for the held-out gain.")
    permutations: int = Field(999, ge=99, description="Permutations of the stratified equality test.")
    a_margin: float = Field(0.05, ge=0, lt=0.5, description="Weights' CIs must lie inside (margin, 1 - margin).")
    token_ids: bool = Field(
        True,
        description="Score the token ids a model sampled where its backend returns them (hf) and the parent's "
        "tokenizer decodes them to the answer; false re-tokenises every answer's text, as a text-only API forces.",
    )


class TextInterpolationProbe(Probe):
    kind: ClassVar[str] = "text_interpolation"
    version: ClassVar[str] = "2"  # 2: sampled token ids kept and scored
    description: ClassVar[str] = (
        "sampled text only: the parents score the suspect's samples; interpolation likelihood and equality tests"
    )
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
        if not caps.has(Capability.FULL_LOGPROBS):
            return Skip(f"parent '{model.name}' must score the samples locally (hf backend, full log-probs)")
        p = self.params
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
                    ids = _sampled_ids(res) if p.token_ids else [None] * len(res.texts)
                    for t, sampled in zip(res.texts, ids):
                        if t.strip() and texts.get((r.meta["id"], t)) is None:
                            texts[(r.meta["id"], t)] = sampled
        score = [
            Planned(
                ScoreRequest(
                    text=t,
                    prompt=prompts[pid],
                    reply_ids=ids,
                    mode="full",
                    top_k=p.vocab_head,
                    vocab_sample=p.vocab_sample,
                ),
                {"id": pid, "scores": True},
            )
            for (pid, t), ids in texts.items()
        ]
        return [*own, *score]

    # ------------------------------------------------------------------ analysis
    def analyze(self, records: dict[str, list[Record]], suite: Suite, rng: np.random.Generator) -> ProbeEvidence:
        ev = self.new_evidence(suite, mode="text")
        parents = self._parents(suite)
        missing = [x for x in parents if not any(r.meta.get("scores") for r in records.get(x, []))]
        if len(parents) < 2 or missing:
            ev.status = "skipped"
            ev.reason = f"needs two or more parents that scored the samples; missing: {', '.join(missing) or 'parents'}"
            return ev
        samples, scores = self.answers(records, parents)
        subjects = [m.name for m in suite.models if m.name not in parents and samples.get(m.name)]
        controls = [m for m in subjects if suite.model(m).role == "control"]
        ev.calibrated = bool(controls)
        if not controls:
            ev.notes.append(uncalibrated_note(suite, "the interpolation rule is not checked on a known non-merge"))
        alpha, p = suite.stats.alpha, self.params
        scored = {m: self._scored(samples[m], scores, parents) for m in samples}
        results: dict[str, TextResult] = {}
        gain_of: dict[str, dict[str, float]] = {}  # per model, per prompt: the held-out gain
        for s in subjects:
            pids = [pid for pid in samples[s] if all(pid in samples[x] for x in parents)]
            data = [self._prompt_data(scored[s][pid], len(parents), pid, p.vocab_head) for pid in pids]
            if sum(d.tokens for d in data) == 0 or len(data) < 4:
                ev.notes.append(f"{s}: fewer than four prompts with scored answers; not analysed.")
                continue
            f = likelihood.fit_with_ci(data, rng, p.bootstrap, alpha)
            gains, cv_p, nll = likelihood.cv_gain(data, rng, p.cv_splits)
            fit = likelihood.fit_test(f.beta, data)
            gain_of[s] = {pid: float(g) for pid, g in zip(pids, gains) if np.isfinite(g)}
            # The yardstick: how likely each parent finds its own answers to the same prompt,
            # weighted by the fitted weights (a copy of X is measured against X alone).
            own = np.array(
                [
                    sum(wi * _per_token(scored[x][pid], i) for i, (x, wi) in enumerate(zip(parents, f.weights)))
                    for pid in pids
                ]
            )
            excess = nll - own
            ok = np.isfinite(excess)
            per_prompt = np.column_stack([excess[ok], np.ones(int(ok.sum()))])  # the mean over prompts
            lo = hi = float("nan")
            if ok.sum() > 1:
                mean = cluster_bootstrap(per_prompt, lambda v: v[..., 0] / v[..., 1], rng, p.bootstrap, alpha)
                lo, hi = mean.low, mean.high
            eq: dict[str, Equality] = {}
            a = [_features(scored[s][pid]) for pid in pids]
            for x in parents:
                b = [_features(scored[x][pid]) for pid in pids]
                stat, pv = equality.stratified_test(a, b, rng, p.permutations)
                _, pu = equality.unstratified_test(a, b, rng, p.permutations)
                eq[x] = Equality(statistic=stat, p=pv, p_unstratified=pu)
            for x, pa in zip(eq, adjust([e.p for e in eq.values()], "holm")):
                eq[x].p_adjusted = pa
            results[s] = TextResult(
                role=suite.model(s).role,
                prompts=len(data),
                samples=sum(len(scored[s][pid]) for pid in pids),
                tokens=sum(d.tokens for d in data),
                weights={
                    x: Interval(value=float(f.weights[i]), lo=f.weight_ci[i][0], hi=f.weight_ci[i][1])
                    for i, x in enumerate(parents)
                },
                temperature=Interval(value=f.temperature, lo=f.temperature_ci[0], hi=f.temperature_ci[1]),
                sampling_temperature=p.temperature,
                nll=float(np.nanmean(nll)),
                excess=Interval(value=float(np.mean(excess[ok])), lo=lo, hi=hi),
                excess_p=wilcoxon_greater(excess[ok]),
                cv_gain=float(np.nanmean(gains)),
                cv_p=cv_p,
                fit_statistic=fit.statistic,
                fit_df=fit.df,
                fit_p=fit.p,
                equality=eq,
            )
            for i, x in enumerate(parents):
                ev.estimates.append(
                    Estimate(
                        name=f"weight[{x}]",
                        model=s,
                        value=float(f.weights[i]),
                        ci_low=f.weight_ci[i][0],
                        ci_high=f.weight_ci[i][1],
                        ci_level=1 - alpha,
                        n=len(data),
                        method=f"maximum likelihood of the samples, one-step cluster bootstrap over prompts "
                        f"({p.bootstrap})",
                    )
                )
            ev.estimates.append(
                Estimate(
                    name="cv_gain",
                    model=s,
                    value=float(np.nanmean(gains)),
                    p_value=cv_p,
                    n=len(data),
                    method=f"held-out log-likelihood gain per token over the better single parent, {p.cv_splits} "
                    "half splits of the prompts; one-sided Wilcoxon over prompts",
                )
            )
        for s, r in results.items():
            # Calibration: the interpolation must explain this model better than it explains every
            # control (leave-one-out for a control): paired over prompts, the worst control's p.
            ref = [c for c in controls if c != s and c in results]
            if ref:
                ps = {}
                for c in ref:
                    common = [pid for pid in gain_of[s] if pid in gain_of[c]]
                    ps[c] = wilcoxon_greater(np.array([gain_of[s][pid] - gain_of[c][pid] for pid in common]))
                r.closest_control = max(ps, key=ps.__getitem__)
                r.p_gain_above_controls = ps[r.closest_control]
            r.verdict, r.parent, r.reasons = decide(r, alpha, p.a_margin)
        # Calibration: a control is no merge. If one meets the interpolation rule, the rule does not
        # tell merges from non-merges in this family, and no model gets the verdict from text.
        false = [c for c in controls if c in results and results[c].verdict == "interpolation"]
        if false:
            for r in results.values():
                if r.verdict == "interpolation":
                    r.verdict = "inconclusive"
                    r.reasons.append(
                        f"no merge verdict: control(s) {', '.join(false)} also meet the interpolation rule, so it "
                        "does not separate merges from non-merges here"
                    )
        ev.tables["self_check"] = self._self_check(scored, parents, rng, alpha)
        ev.tables["cost"] = self._cost(records, scored, scores, parents)
        ev.per_model = {m: r.model_dump(mode="json") for m, r in results.items()}
        ev.summary = render.summary(results, ev.ci_level, suite)
        ev.notes.append(
            f"Temperature: fitted jointly with the weights (T = 1 / sum of the log-linear coefficients); the samples "
            f"were drawn at temperature {p.temperature}, top_p {p.top_p}"
            + ("" if p.top_p == 1 else " (top_p < 1 truncates the tail: the likelihood is then approximate)")
            + ". Answers whose sampled token ids came back (hf) are scored as sampled; the others (an API's text) "
            "are re-tokenised by the parents, which may give other tokens than were sampled (see the cost table)."
        )
        return ev

    def _self_check(
        self, scored: dict[str, dict[str, list[tuple[str, list[ScoreResult]]]]], parents: list[str], rng, alpha: float
    ) -> list[dict[str, Any]]:
        """Each parent's own answers fitted like a suspect's: the weight it gets on itself (1 if
        the pipeline were exact) and the fitted temperature (the sampling one). What they miss by
        measures the pipeline's distortion: answers re-tokenised from text (a text-only API, or
        ``token_ids: false``) whose sampled tokens do not survive decoding and re-encoding are
        scored as other tokens (32 of 40 sampled answers on the tiny zoo's byte-level tokenizer, 2
        of 40 on SmolLM2's), and the compact storage estimates the normaliser from a sample."""
        rows = []
        for i, x in enumerate(parents):
            data = [self._prompt_data(r, len(parents), pid, self.params.vocab_head) for pid, r in scored[x].items()]
            if len(data) < 4 or not sum(d.tokens for d in data):
                continue
            f = likelihood.fit_with_ci(data, rng, self.params.bootstrap, alpha)
            rows.append(
                {
                    "parent": x,
                    "weight_on_itself": Interval(value=float(f.weights[i]), lo=f.weight_ci[i][0], hi=f.weight_ci[i][1]),
                    "temperature": Interval(value=f.temperature, lo=f.temperature_ci[0], hi=f.temperature_ci[1]),
                }
            )
        return [{k: v.model_dump() if isinstance(v, Interval) else v for k, v in r.items()} for r in rows]

    @staticmethod
    def _cost(
        records: dict[str, list[Record]],
        scored: dict[str, dict[str, list[tuple[str, list[ScoreResult]]]]],
        scores: dict[str, dict[tuple[str, str], Record]],
        parents: list[str],
    ) -> list[dict[str, Any]]:
        """What was bought and spent, per model: answers sampled, prompt tokens sent and answer
        tokens received (each sample is one request: its prompt is paid for each time); how many
        of its answers were scored as sampled (token ids known) rather than re-tokenised; and per
        parent, the answers it teacher-forced and the tokens it scored locally. From the scorings
        analysis already holds (``scored``), not read again."""
        forced: dict[tuple[str, str], list[ScoreResult]] = {
            (pid, t): results for by_prompt in scored.values() for pid, rows in by_prompt.items() for t, results in rows
        }
        rows = []
        for m, recs in records.items():
            gens = [(r.meta["id"], r.result_as(GenerateResult)) for r in recs if isinstance(r.request, GenerateRequest)]
            sampled = {(pid, t): ids for pid, g in gens for t, ids in zip(g.texts, _sampled_ids(g))}
            mine = [(pid, t, results) for pid, answers in scored.get(m, {}).items() for t, results in answers]
            row: dict[str, Any] = {
                "model": m,
                "answers": sum(len(g.texts) for _, g in gens),
                "prompt_tokens_sent": sum(g.prompt_tokens * len(g.texts) for _, g in gens),
                "answer_tokens_received": sum(sum(g.completion_tokens) for _, g in gens),
                # as sampled: the parents scored the very ids this model sampled
                "scored_as_sampled": sum(
                    sampled.get((pid, t)) is not None and list(results[0].token_ids[1:]) == sampled[(pid, t)]
                    for pid, t, results in mine
                ),
                "scored_answers": len(mine),
            }
            if m in parents:
                i = parents.index(m)
                row["teacher_forced"] = len(scores[m])
                row["tokens_scored"] = sum(max(len(results[i].token_ids) - 1, 0) for results in forced.values())
            rows.append(row)
        return rows

    @staticmethod
    def answers(
        records: dict[str, list[Record]], parents: list[str]
    ) -> tuple[dict[str, dict[str, list[str]]], dict[str, dict[tuple[str, str], Record]]]:
        """Each model's sampled answers by prompt id, and each parent's scorings by (prompt id,
        answer)."""
        samples = {
            m: {r.meta["id"]: r.result_as(GenerateResult).texts for r in recs if not r.meta.get("scores")}
            for m, recs in records.items()
        }
        scores = {
            x: {(r.meta["id"], r.request.text): r for r in records.get(x, []) if isinstance(r.request, ScoreRequest)}
            for x in parents
        }
        return samples, scores

    @staticmethod
    def _scored(
        samples: dict[str, list[str]], scores: dict[str, dict[tuple[str, str], Record]], parents: list[str]
    ) -> dict[str, list[tuple[str, list[ScoreResult]]]]:
        """Per prompt, each non-empty answer with every parent's scoring of it (answers a parent
        did not score, e.g. of a partial run, are left out)."""
        out: dict[str, list[tuple[str, list[ScoreResult]]]] = {}
        for pid, texts in samples.items():
            rows = []
            for t in texts:
                if t.strip() and all((pid, t) in scores[x] for x in parents):
                    rows.append((t, [scores[x][(pid, t)].result_as(ScoreResult) for x in parents]))
            out[pid] = rows
        return out

    @staticmethod
    def _prompt_data(
        rows: list[tuple[str, list[ScoreResult]]], n_parents: int, pid: str, k: int
    ) -> likelihood.TokenData:
        """One prompt's answers, as every parent scored them, stacked (supports padded with weight 0)."""
        actual, support, weight = [], [], []
        for _, results in rows:
            if any(not np.array_equal(r.token_ids, results[0].token_ids) for r in results):
                raise ValueError(f"prompt {pid}: the parents tokenise an answer differently; they cannot be merged")
            lp, w = align(list(results), "full", k)
            actual.append(np.stack([r.token_logprobs for r in results], axis=-1))
            support.append(lp)
            weight.append(w)
        if not actual:
            empty = np.zeros((0, 1, n_parents))
            return likelihood.TokenData(empty[:, 0], empty, np.zeros((0, 1)))
        width = max(x.shape[1] for x in support)
        support = [np.pad(x, ((0, 0), (0, width - x.shape[1]), (0, 0))) for x in support]
        weight = [np.pad(x, ((0, 0), (0, width - x.shape[1]))) for x in weight]
        return likelihood.TokenData(np.concatenate(actual), np.concatenate(support), np.concatenate(weight))

    def case(self, evidence: ProbeEvidence, names: list[str], suite: Suite) -> ProbeCase | None:
        m = next((n for n in names if n in evidence.per_model), None)
        if evidence.status != "ok" or m is None:
            return None
        return text_case(evidence.instance, evidence.results(TextResult)[m], evidence.ci_level)

    def report_section(self, evidence: ProbeEvidence, suite: Suite) -> str:
        return render.report_section(evidence, self._parents(suite))


def _sampled_ids(result: GenerateResult) -> list[list[int] | None]:
    """Each answer's sampled token ids, None where the backend returned text only."""
    return list(result.token_ids) if result.token_ids else [None] * len(result.texts)


def _features(rows: list[tuple[str, list[ScoreResult]]]) -> np.ndarray:
    """(answers, parents): each answer's mean log-prob per token under each parent."""
    return np.array([[float(np.mean(r.token_logprobs)) for r in results] for _, results in rows]).reshape(len(rows), -1)


def _per_token(rows: list[tuple[str, list[ScoreResult]]], i: int) -> float:
    """Negative log-likelihood per token of these answers under parent i (NaN: no tokens)."""
    n = sum(len(results[i].token_logprobs) for _, results in rows)
    return -sum(float(results[i].token_logprobs.sum()) for _, results in rows) / n if n else float("nan")
