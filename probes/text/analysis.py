"""The text probe's analysis: one object holding the suite, the parameters, the random generator
and the evidence it fills, and the helpers that turn records into the likelihood's data.

Per subject (:meth:`TextAnalysis.run`): the answers every parent scored, by prompt
(:func:`scored_answers`, :func:`prompt_data`); the log-linear interpolation fitted by maximum
likelihood with cluster-bootstrap CIs over prompts, the held-out gain over the better single
parent, the information-matrix fit test, the excess over the parents' own answers, and the
prompt-stratified equality test against each parent. Then the calibration against the controls
(the gain above every control's, and the interpolation verdict withdrawn when a control meets it),
the verdict rule (``verdict.py``), the self-check and the cost table.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.backends.base import GenerateRequest, GenerateResult, ScoreRequest, ScoreResult
from harness.evidence import Estimate, Interval, ProbeEvidence
from harness.stats import adjust, cluster_bootstrap, wilcoxon_greater
from harness.suite import Suite
from probes.base import Record, uncalibrated_note
from probes.shared.align import align, align_topk_conditional
from probes.text import equality, likelihood, render
from probes.text.params import TextParams
from probes.text.result import Equality, TextResult
from probes.text.verdict import decide


class TextAnalysis:
    """One analysis of the text probe's records into ``ev``, against ``parents``."""

    def __init__(
        self, params: TextParams, suite: Suite, rng: np.random.Generator, ev: ProbeEvidence, parents: list[str]
    ):
        self.params = params
        self.suite = suite
        self.rng = rng
        self.ev = ev
        self.parents = parents
        self.yardstick = float("nan")  # parents_excess, set by run

    def run(self, records: dict[str, list[Record]]) -> ProbeEvidence:
        """Per subject the fit, the held-out gain, the equality tests and the yardstick; then the
        calibration against the controls, the verdicts, the self-check and the cost."""
        ev, suite, parents = self.ev, self.suite, self.parents
        missing = [x for x in parents if not any(r.meta.get("scores") for r in records.get(x, []))]
        if len(parents) < 2 or missing:
            ev.status = "skipped"
            ev.reason = f"needs two or more parents that scored the samples; missing: {', '.join(missing) or 'parents'}"
            return ev
        samples, scores = answers(records, parents)
        subjects = [m.name for m in suite.models if m.name not in parents and samples.get(m.name)]
        controls = [m for m in subjects if suite.model(m).role == "control"]
        ev.calibrated = bool(controls)
        if not controls:
            ev.notes.append(uncalibrated_note(suite, "the interpolation rule is not checked on a known non-merge"))
        p = self.params
        scored = {m: scored_answers(samples[m], scores, parents) for m in samples}
        self.yardstick = parents_excess(scored, parents)
        results: dict[str, TextResult] = {}
        gain_of: dict[str, dict[str, float]] = {}  # per model, per prompt: the held-out gain
        for s in subjects:
            fitted = self.subject(s, samples, scored)
            if fitted is not None:
                results[s], gain_of[s] = fitted
        self.calibrate(results, controls, gain_of)
        ev.tables["self_check"] = self.self_check(scored)
        ev.tables["cost"] = cost_table(records, scored, scores, parents)
        ev.per_model = {m: r.model_dump(mode="json") for m, r in results.items()}
        ev.summary = render.summary(results, ev.ci_level, suite)
        ev.notes.append(
            f"Temperature: fitted jointly with the weights (T = 1 / sum of the log-linear coefficients); the samples "
            f"were drawn at temperature {p.temperature}, top_p {p.top_p}"
            + ("" if p.top_p == 1 else " (top_p < 1 truncates the tail: the likelihood is then approximate)")
            + ". Answers whose sampled token ids came back (hf, vLLM) are scored as sampled; the others (an API's "
            "text) are re-tokenised by the parents, which may give other tokens than were sampled (see the cost table)."
        )
        return ev

    def subject(
        self,
        s: str,
        samples: dict[str, dict[str, list[str]]],
        scored: dict[str, dict[str, list[tuple[str, list[ScoreResult]]]]],
    ) -> tuple[TextResult, dict[str, float]] | None:
        """One subject: the fit with its CIs, the held-out gain (per prompt, returned for the
        calibration), the fit test, the excess over the parents' own answers and the equality tests;
        its estimates go to the evidence. None (with a note) when too few prompts were scored."""
        ev, suite, rng, parents, p, alpha = (
            self.ev,
            self.suite,
            self.rng,
            self.parents,
            self.params,
            self.suite.stats.alpha,
        )
        pids = [pid for pid in samples[s] if all(pid in samples[x] for x in parents)]
        data = [prompt_data(scored[s][pid], len(parents), pid, p.vocab_head) for pid in pids]
        if sum(d.tokens for d in data) == 0 or len(data) < 4:
            ev.notes.append(f"{s}: fewer than four prompts with scored answers; not analysed.")
            return None
        rows = [row for pid in pids for _, row in scored[s][pid]]
        if any(r.full is None and r.sample_ids is None for row in rows for r in row):
            total = sum(len(row[0].token_logprobs) for row in rows)
            ev.notes.append(
                f"{s}: the parents returned their top-k log-probs only (a server): the likelihood is conditional "
                f"on the parents' common top-k at each position, which holds {sum(d.tokens for d in data)} of the "
                f"{total} tokens of its answers; the others are left out of the fit."
            )
        f = likelihood.fit_with_ci(data, rng, p.bootstrap, alpha)
        gains, cv_p, nll = likelihood.cv_gain(data, rng, p.cv_splits)
        fit = likelihood.fit_test(f.beta, data)
        # The yardstick: how likely each parent finds its own answers to the same prompt,
        # weighted by the fitted weights (a copy of X is measured against X alone).
        own = np.array(
            [
                sum(wi * per_token(scored[x][pid], i) for i, (x, wi) in enumerate(zip(parents, f.weights)))
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
        a = [features(scored[s][pid]) for pid in pids]
        for x in parents:
            b = [features(scored[x][pid]) for pid in pids]
            stat, pv = equality.stratified_test(a, b, rng, p.permutations)
            _, pu = equality.unstratified_test(a, b, rng, p.permutations)
            eq[x] = Equality(statistic=stat, p=pv, p_unstratified=pu)
        for x, pa in zip(eq, adjust([e.p for e in eq.values()], "holm")):
            eq[x].p_adjusted = pa
        result = TextResult(
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
            parents_excess=self.yardstick,
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
        return result, {pid: float(g) for pid, g in zip(pids, gains) if np.isfinite(g)}

    def calibrate(
        self, results: dict[str, TextResult], controls: list[str], gain_of: dict[str, dict[str, float]]
    ) -> None:
        """Each model's gain against every control's, the verdict rule, and no merge verdict for
        anyone when a control meets the interpolation rule."""
        alpha, p = self.suite.stats.alpha, self.params
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

    def self_check(self, scored: dict[str, dict[str, list[tuple[str, list[ScoreResult]]]]]) -> list[dict[str, Any]]:
        """Each parent's own answers fitted like a suspect's: the weight it gets on itself (1 if
        the pipeline were exact) and the fitted temperature (the sampling one). What they miss by
        measures the pipeline's distortion: answers re-tokenised from text (a text-only API, or
        ``token_ids: false``) whose sampled tokens do not survive decoding and re-encoding are
        scored as other tokens (32 of 40 sampled answers on the tiny zoo's byte-level tokenizer, 2
        of 40 on SmolLM2's), and the compact storage estimates the normaliser from a sample."""
        parents, rng, alpha = self.parents, self.rng, self.suite.stats.alpha
        rows = []
        for i, x in enumerate(parents):
            data = [prompt_data(r, len(parents), pid, self.params.vocab_head) for pid, r in scored[x].items()]
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


def cost_table(
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
        sampled = {(pid, t): ids for pid, g in gens for t, ids in zip(g.texts, sampled_ids(g))}
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


def scored_answers(
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


def prompt_data(rows: list[tuple[str, list[ScoreResult]]], n_parents: int, pid: str, k: int) -> likelihood.TokenData:
    """One prompt's answers, as every parent scored them, stacked (supports padded with weight 0)."""
    actual, support, weight = [], [], []
    for _, results in rows:
        if any(not np.array_equal(r.token_ids, results[0].token_ids) for r in results):
            raise ValueError(f"prompt {pid}: the parents tokenise an answer differently; they cannot be merged")
        tokens = np.stack([r.token_logprobs for r in results], axis=-1)
        if all(r.full is not None or r.sample_ids is not None for r in results):
            lp, w = align(list(results), "full", k)
        else:  # a parent served by an API returned its top-k head only
            width = min(int(r.topk_ids.shape[1]) for r in results if r.topk_ids is not None)
            lp, w, keep = align_topk_conditional(list(results), min(k, width))
            tokens = tokens[keep]
        actual.append(tokens)
        support.append(lp)
        weight.append(w)
    if not actual:
        empty = np.zeros((0, 1, n_parents))
        return likelihood.TokenData(empty[:, 0], empty, np.zeros((0, 1)))
    width = max(x.shape[1] for x in support)
    support = [np.pad(x, ((0, 0), (0, width - x.shape[1]), (0, 0))) for x in support]
    weight = [np.pad(x, ((0, 0), (0, width - x.shape[1]))) for x in weight]
    return likelihood.TokenData(np.concatenate(actual), np.concatenate(support), np.concatenate(weight))


def sampled_ids(result: GenerateResult) -> list[list[int] | None]:
    """Each answer's sampled token ids, None where the backend returned text only."""
    return list(result.token_ids) if result.token_ids else [None] * len(result.texts)


def parents_excess(scored: dict[str, dict[str, list[tuple[str, list[ScoreResult]]]]], parents: list[str]) -> float:
    """The yardstick of ``excess``: how much less likely a parent finds another parent's answers
    than its own (nats per token, per prompt, averaged over the prompts both answered and over
    every ordered pair of parents). A model the interpolation explains worse than the parents
    explain each other is no mixture of them; NaN when no prompt has answers of two parents."""
    gaps = []
    for i, x in enumerate(parents):
        for y in parents:
            if y != x:
                common = [pid for pid in scored[x] if scored[x][pid] and scored[y].get(pid)]
                gaps += [per_token(scored[y][pid], i) - per_token(scored[x][pid], i) for pid in common]
    finite = [g for g in gaps if np.isfinite(g)]
    return float(np.mean(finite)) if finite else float("nan")


def features(rows: list[tuple[str, list[ScoreResult]]]) -> np.ndarray:
    """(answers, parents): each answer's mean log-prob per token under each parent."""
    return np.array([[float(np.mean(r.token_logprobs)) for r in results] for _, results in rows]).reshape(len(rows), -1)


def per_token(rows: list[tuple[str, list[ScoreResult]]], i: int) -> float:
    """Negative log-likelihood per token of these answers under parent i (NaN: no tokens)."""
    n = sum(len(results[i].token_logprobs) for _, results in rows)
    return -sum(float(results[i].token_logprobs.sum()) for _, results in rows) / n if n else float("nan")
