"""The logit probe's analysis: one object holding the suite, the parameters, the random
generator and the evidence it fills, and the chain of steps that reads the records.

The chain (:meth:`LogitAnalysis.run`): select the data (parents, the models placed against them,
the data mode, the texts every model answered), then either fit every model against the known
parents (:meth:`~LogitAnalysis.fit`: per-text sufficient statistics, the noise floor, estimates
with paired cluster-bootstrap CIs, the lineage signal on the task-free inputs, calibration
against the controls, multiple-comparison correction and the verdict), or, with a pool of
candidates, choose each subject's parents first (:meth:`~LogitAnalysis.select_from_pool`,
``selection.py``) and fit against those. Every step reads and writes the same object, so no step
passes the suite, the generator and the evidence to the next.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from harness.backends.base import ScoreResult
from harness.evidence import Estimate, ProbeEvidence
from harness.stats import adjust, paired_bootstrap, percentile_ci, z_pvalue
from harness.suite import Suite
from probes.base import Record, uncalibrated_note
from probes.logit import render
from probes.logit.estimators import describe, merge_weight_range, summed_statistics
from probes.logit.genealogy import genealogy, genealogy_rows, in_roots, merge_partners, partner_pair
from probes.logit.interpolation import Layout, centred, cv_gain, sq_distance, text_stats
from probes.logit.lineage import excess, is_task_free, line_fit, relative_distances, token_gram
from probes.logit.params import LogitParams
from probes.logit.power import controls_note, selection_note
from probes.logit.result import MERGE_VERDICTS, ControlCalibration, Interval, LogitResult
from probes.logit.selection import select, selection_row, suspect_pools
from probes.logit.verdict import decide
from probes.shared.align import align, as_kind, request_mode

MODE_ORDER = {"full": 0, "topk": 1, "next_token": 2}
POWER_NOTE = {
    "full": "full vocabulary at every position: the most powerful mode",
    "topk": "only tokens in every model's top-k (plus the actual token) at each position: fewer points per "
    "text, so wider intervals than full mode for the same texts",
    "next_token": "one position per prompt (the first token of the answer) with at most k tokens: by far the "
    "least data per prompt; expect wide intervals unless many prompts are used",
}


# In every report whose lineage signal was measured (README, "The logit-interpolation probe").
YARDSTICK_LIMIT = (
    "The lineage signal's yardstick is the parents' own distance on the task-free inputs. It is a unit of kinship "
    "only where the parents share weights, as a merge's parents do. Parents of separate initialisations make it "
    "a unit of strangers, within which a model trained on their kind of data reads as inherited, even a merge: "
    "tiny zoo, with parent_a and a model of its own initialisation given as the parents, a student distilled "
    "from parent_a read 'interpolation', and parent_b (a sibling of parent_a) 'derived from parent_a'. The "
    "behaviour alone cannot show which case holds; the weights probe, or the parents' model cards, can."
)


@dataclass(frozen=True)
class Data:
    """What analysis works on: parents, the models placed against them, answers by text id
    (first scoring and the parents' replicate), the data mode and the texts all models answered."""

    parents: list[str]
    others: list[str]
    main: dict[str, dict[str, Record]]
    reps: dict[str, dict[str, Record]]
    mode: str
    ids: list[str]
    candidates: list[str] = field(default_factory=list)  # a pool to select parents from, per model
    # ids of the task-free inputs every parent (and candidate) answered
    task_free: list[str] = field(default_factory=list)
    screened_out: dict[str, str] = field(default_factory=dict)  # candidates not shortlisted, with why


def pool_withdrawal(verdict: str, partnered: bool) -> str | None:
    """Why a pool subject that no merge of the pool explains does not keep ``verdict`` (None: it
    keeps it). It was placed against a pair that is no parent pair: its two nearest candidates,
    or (``partnered``) two roots a plain merge of the pool joins, which do share weights."""
    if verdict in MERGE_VERDICTS:
        return (
            "the pool selection confirmed fewer than two parents on held-out texts, so no merge verdict is drawn "
            "from the nearest pair"
        )
    if verdict in ("sibling", "related", "derived_from_one_parent") and not partnered:
        # Each reads the pair as the parents (their base, their distance as the unit), and the
        # nearest pair need not share weights at all: the tiny zoo's independent model read
        # "sibling" against a base and a model trained from scratch on its data (16 candidates,
        # seed 0), and its student "derived from" another student of its own initialisation (21).
        return f"'{verdict}' reads the pair as parents; a pool's nearest pair is no parent pair, so it is not drawn"
    if verdict == "unrelated":
        # The lineage signal's unit is the pair's own distance, and either pair can be far closer
        # than the subject's true relatives: with the parents screened out of a pool of 50, a_ft
        # (a fine-tune of parent_a) read "unrelated" against linear_0.25 and linear_0.75.
        return (
            "'unrelated' reads the task-free distance in units of the pair's own distance, and a pool's pair can be "
            "much closer than the subject's true relatives, so a claim of an initialisation of its own is not drawn"
        )
    return None


class LogitAnalysis:
    """One analysis of the logit probe's records into ``ev``. ``parents`` are the known parents
    (params.parents, or role parent), ``candidates`` the pool beyond them."""

    def __init__(
        self,
        params: LogitParams,
        suite: Suite,
        rng: np.random.Generator,
        ev: ProbeEvidence,
        parents: list[str],
        candidates: list[str],
    ):
        self.params = params
        self.suite = suite
        self.rng = rng
        self.ev = ev
        self.parents = parents
        self.candidates = candidates

    def run(self, records: dict[str, list[Record]], screened_out: dict[str, str]) -> ProbeEvidence:
        """Select the data, reduce each text to sufficient statistics, refuse degenerate parents,
        estimate with paired bootstrap CIs, calibrate against controls, correct and decide."""
        data = self.select(records)
        if data is None:
            return self.ev
        data = replace(data, screened_out=screened_out)
        self.ev.notes.append(f"Data mode '{data.mode}': {POWER_NOTE[data.mode]}.")
        if data.mode == "full":
            self.ev.notes += storage_note(data)
        controls = [m for m in data.others if self.suite.model(m).role == "control"]
        self.ev.calibrated = bool(controls)
        if not controls:
            self.ev.notes.append(uncalibrated_note(self.suite, "nothing anchors what a 'low' residual means"))
        elif (note := controls_note(len(controls), self.suite.stats.alpha)) is not None:
            self.ev.limitations.append(note)
        if data.candidates:
            results = self.select_from_pool(data)
        else:
            results = self.fit(data)
            if results is not None:
                self.drop_unsupported_parents(results, data)
        if results is None:
            return self.ev
        self.ev.per_model = {m: r.model_dump(mode="json") for m, r in results.items()}
        self.ev.summary = render.summary(results, self.ev.ci_level, self.suite, data.parents, len(data.ids))
        return self.ev

    def select(self, records: dict[str, list[Record]]) -> Data | None:
        """Parents (and candidates), the models placed against them, the data mode and the texts
        every model answered; None (with the reason in ``ev``) when there is nothing to analyse."""
        parents = self.parents
        candidates = [c for c in self.candidates if c not in parents]
        if len(parents) + len(candidates) < 2:
            self.ev.status, self.ev.reason = "skipped", "needs at least two parent (or candidate) models"
            return None
        missing = [x for x in (parents if not candidates else []) if not records.get(x)]
        if missing:
            self.ev.status, self.ev.reason = "skipped", f"no records for parent(s) {', '.join(missing)}"
            return None
        main = {m: {r.meta["id"]: r for r in recs if not r.meta.get("replicate")} for m, recs in records.items()}
        reps = {m: {r.meta["id"]: r for r in recs if r.meta.get("replicate")} for m, recs in records.items()}
        if candidates:  # every scored model of the pool; subjects are the suspects and controls
            dropped = [x for x in [*parents, *candidates] if not main.get(x)]
            if dropped:
                self.ev.notes.append(f"No records for {', '.join(dropped)}: left out of the pool.")
            parents = [x for x in parents if main.get(x)]
            candidates = [x for x in candidates if main.get(x)]
            others = [m.name for m in self.suite.models if m.role in ("suspect", "control") and main.get(m.name)]
        else:
            others = [m.name for m in self.suite.models if m.name not in parents and main.get(m.name)]
        if not others:
            self.ev.status, self.ev.reason = "skipped", "no suspect or control was scored"
            return None
        involved = list(dict.fromkeys([*parents, *candidates, *others]))
        modes = {request_mode(r.request) for m in involved for t, r in main[m].items() if not is_task_free(t)}
        if self.params.mode != "auto":
            modes.add(self.params.mode)
        if "next_token" in modes and modes != {"next_token"}:
            self.ev.status = "skipped"
            self.ev.reason = "models were probed in incompatible modes (teacher-forced vs next-token); pick one mode"
            return None
        mode = max(modes, key=lambda x: MODE_ORDER[x])
        self.ev.mode = mode
        answered = sorted(set.intersection(*(set(main[m]) for m in involved)))
        ids = [t for t in answered if not is_task_free(t)]
        if len(ids) < 4:
            self.ev.status, self.ev.reason = "skipped", f"only {len(ids)} texts were answered by every model"
            return None
        # The task-free inputs the parents (and candidates) all answered: a subject that answered none (a
        # backend that only chats) has no lineage signal, and does not take it from the others.
        task_free = sorted(set.intersection(*(set(main[m]) for m in [*parents, *candidates])))
        return Data(parents, others, main, reps, mode, ids, candidates, [t for t in task_free if is_task_free(t)])

    def fit(self, data: Data) -> dict[str, LogitResult] | None:
        """Every model placed against ``data.parents``: per-text statistics, the noise floor,
        estimates with CIs, calibration against the controls and the verdict; None (the reason in
        ``ev``) when the texts or the parents allow no analysis."""
        per_text = self.per_text_statistics(data)
        if per_text is None:
            return None
        noise, same = noise_floor(data.main, data.reps, data.parents, data.ids, data.mode, self.params.top_k)
        if same is not None:  # the parents' line is (almost) a point
            self.ev.status = "skipped"
            self.ev.reason = (
                f"parents '{same[0]}' and '{same[1]}' are the same model within the noise floor (their "
                f"distance is less than 3x the difference between two scorings of one parent): there is no "
                "line between them to place a suspect on"
            )
            self.ev.notes = []
            return None
        controls = [m for m in data.others if self.suite.model(m).role == "control"]
        results, point, boot = self.estimate(data, per_text, noise)
        self.lineage_signal(results, data)
        calibrate(results, controls, boot, point)
        self.decide(results, data)
        return results

    def select_from_pool(self, data: Data) -> dict[str, LogitResult] | None:
        """Per suspect and control: its pool (the known parents and candidates, less itself),
        screened by tokenisation, the subset ``selection.select`` chooses (selection half, then
        confirmed on held-out texts), and the probe's own verdict with that subset as the parents.
        Fewer than two confirmed members means no merge of the pool: the verdict is computed
        against the best pair for its numbers, and a merge verdict there is not drawn."""
        pools = suspect_pools(
            data.main, data.ids, data.mode, self.params.top_k, [*data.parents, *data.candidates], data.others
        )
        selections: dict[str, Any] = {}
        fit_sets: dict[tuple[str, ...], list[str]] = {}
        partnered: dict[str, tuple[str, str, list[str]]] = {}  # read against a pair the pool shows
        rows: list[dict[str, Any]] = []
        t = self.params.verdict
        alpha = self.suite.stats.alpha
        pool_all = [*data.parents, *data.candidates]
        # The pool's own genealogy: which candidates are merges of the others, and of which roots.
        # Its own random stream: the suspects' selections draw the same splits with or without it.
        rng = np.random.default_rng([self.suite.stats.seed, 32])
        lineage = genealogy(
            suspect_pools(data.main, data.ids, data.mode, self.params.top_k, pool_all, pool_all),
            rng,
            alpha,
            t.min_cv_gain,
            self.params.cv_splits,
            lambda c, members: self.verdict_against(data, c, members, rng),
        )
        self.ev.tables["genealogy"] = genealogy_rows(lineage)
        partners = merge_partners(lineage)
        for s in data.others:
            pool, g = pools[s].pool, pools[s].gram
            excluded = {
                c: f"tokenises the texts differently from {s}: cannot be an element-wise merge parent"
                for c in pools[s].other_tokenisation
            } | data.screened_out
            if len(pool) < 2 or g is None:
                self.ev.notes.append(f"{s}: fewer than two candidates share its tokenisation; not analysed.")
                continue
            sel = select(g, pool, self.rng, alpha, t.min_cv_gain, self.params.cv_splits)
            chosen = sorted(sel.selected, key=pool.index)
            row = selection_row(s, sel, pool, excluded, t.min_cv_gain, alpha)
            roots = (
                in_roots(g, pool, chosen, lineage, rng, alpha, t.min_cv_gain, self.params.cv_splits) if chosen else None
            )
            if roots is not None:
                row["roots"] = roots
                in_root_set = [c for c in pool if roots["refit"].get(c, 0.0) > 0]
                if len(in_root_set) >= 2:  # a merge of merges of the roots is a merge of the roots
                    chosen = sel.selected = in_root_set
            if len(chosen) < 2:
                # No merge of the pool. Where the candidate that explains it is a root of a plain
                # merge of the pool, it is read against that root and its partner, the pair the pool
                # shows to share weights (as were they given as parents). Otherwise the numbers are
                # computed against its two nearest candidates and no claim short of a merge is
                # drawn: two unrelated roots, a base and a model trained from scratch on its data,
                # make a unit in which a third such model reads as a sibling.
                pair = partner_pair(g, pool, chosen[0], partners, alpha) if chosen else None
                if pair is not None:
                    partnered[s] = pair
                    chosen = sorted(pair[:2], key=pool.index)
                else:
                    total = g.sum(axis=0)
                    dist = {c: float(sq_distance(total, 0, i + 1)) for i, c in enumerate(pool)}
                    chosen = sorted(sorted(pool, key=dist.__getitem__)[:2], key=pool.index)
            fit_sets.setdefault(tuple(chosen), []).append(s)
            selections[s] = sel
            rows.append(row)
        results: dict[str, LogitResult] = {}
        for parents, members in fit_sets.items():
            # Placed against this set: its members, and for a selected set (a merge verdict is possible)
            # the controls too, whose residuals calibrate it; a nearest pair draws no merge verdict.
            selected = any(len(selections[m].selected) >= 2 or m in partnered for m in members)
            others = [
                x
                for x in data.others
                if x not in parents and (x in members or (selected and self.suite.model(x).role == "control"))
            ]
            fitted, scratch = self.refit(replace(data, parents=list(parents), others=others, candidates=[]))
            if fitted is None:
                self.ev.notes.append(
                    f"{', '.join(members)}: no analysis against {', '.join(parents)}: {scratch.reason}"
                )
                continue
            for m in members:
                r = fitted[m]
                r.parents = list(parents)
                sel = selections[m]
                if len(sel.selected) < 2:
                    withdrawn = pool_withdrawal(r.verdict, m in partnered)
                    if withdrawn is not None:
                        r.reasons.append(withdrawn)
                        r.verdict, r.parent = "inconclusive", None
                    note = selection_note(sel.n_select, self.suite.stats.alpha)
                    why = "no merge of the pool (one candidate suffices)" if note is None else note
                    if note is not None:
                        self.ev.limitations.append(f"{m}: {why}")
                    if m in partnered:
                        x, y, joined = partnered[m]
                        r.reasons.insert(
                            0,
                            f"{why}; placed against {x} and {y}, a pair the pool shows to share weights (its plain "
                            f"merge(s) {', '.join(joined)}), as were they given as parents",
                        )
                    else:
                        r.reasons.insert(0, f"{why}; placed against its two nearest: " + ", ".join(parents))
                else:
                    r.reasons.insert(0, f"parents selected from the pool: {', '.join(parents)}")
                results[m] = r
                self.ev.estimates += [e for e in scratch.estimates if e.model == m]
        for row in rows:  # the parents found: a confirmed set on which the verdict is a merge
            res = results.get(row["model"])
            row["parents_found"] = res.parents if res is not None and res.verdict in MERGE_VERDICTS else []
            row["verdict"] = res.verdict if res is not None else None
        self.ev.tables["selection"] = rows
        return results

    def verdict_against(self, data: Data, model: str, parents: list[str], rng: np.random.Generator) -> str:
        """The probe's verdict on ``model`` with ``parents`` as its parents, calibrated by the
        controls (the pool's genealogy asks it of each candidate; its own ``rng``, so the
        suspects' analyses draw what they would without it)."""
        controls = [m for m in data.others if self.suite.model(m).role == "control" and m not in (model, *parents)]
        scratch = ProbeEvidence(
            probe=self.ev.probe, instance=self.ev.instance, version=self.ev.version, ci_level=self.ev.ci_level
        )
        chain = LogitAnalysis(self.params, self.suite, rng, scratch, parents, [])
        fitted = chain.fit(replace(data, parents=parents, others=[model, *controls], candidates=[]))
        return fitted[model].verdict if fitted and model in fitted else "not analysed"

    def refit(self, data: Data) -> tuple[dict[str, LogitResult] | None, ProbeEvidence]:
        """``fit`` against another parent set, into a scratch evidence (calibrated like ``ev``)
        whose estimates the caller moves over for the models it keeps."""
        scratch = ProbeEvidence(
            probe=self.ev.probe,
            instance=self.ev.instance,
            version=self.ev.version,
            ci_level=self.ev.ci_level,
            calibrated=self.ev.calibrated,
        )
        return LogitAnalysis(self.params, self.suite, self.rng, scratch, self.parents, self.candidates).fit(
            data
        ), scratch

    def drop_unsupported_parents(self, results: dict[str, LogitResult], data: Data) -> None:
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
            reduced, scratch = self.refit(replace(data, parents=list(keep)))
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
                self.ev.estimates = [e for e in self.ev.estimates if e.model != m] + [
                    e for e in scratch.estimates if e.model == m
                ]

    def per_text_statistics(self, data: Data) -> dict[str, np.ndarray] | None:
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
                        self.ev.status = "skipped"
                        self.ev.reason = (
                            f"models '{parents[0]}' and '{bad}' tokenise text {t} differently; logit interpolation "
                            "needs a shared tokenizer (a merge always has one: see the tokenizer probe)"
                        )
                        self.ev.notes = []
                        return None
                lp, weight = align(results, data.mode, self.params.top_k)
                rows.append(text_stats(lp, weight, self.params.disagreement_tau).vector())
            per_text[m] = np.stack(rows)
        return per_text

    def estimate(
        self,
        data: Data,
        per_text: dict[str, np.ndarray],
        noise: dict[str, float],
    ) -> tuple[dict[str, LogitResult], dict[str, dict[str, float]], dict[str, dict[str, np.ndarray]]]:
        """Every named estimate with its cluster-bootstrap CI, the cross-validated gain and the
        weights-inside test, per model; returns the typed results, the point estimates and the
        (paired) replicates."""
        p, parents, alpha, n_texts = self.params, data.parents, self.suite.stats.alpha, len(data.ids)
        layout = Layout(len(parents) + 1)
        # One set of resampled texts for every model: replicates are paired across models.
        boot = paired_bootstrap(
            per_text, lambda v: summed_statistics(v, layout, parents), self.suite.stats.bootstrap, self.rng
        )
        point: dict[str, dict[str, float]] = {}
        cv: dict[str, tuple[np.ndarray, float]] = {}
        for m in data.others:
            point[m] = {n: float(x) for n, x in summed_statistics(per_text[m].sum(0), layout, parents).items()}
            cv[m] = cv_gain(layout.get(per_text[m], "gram"), self.rng, p.cv_splits)
        results: dict[str, LogitResult] = {}
        for m in data.others:
            iv: dict[str, Interval] = {}
            for name, value in point[m].items():
                lo, hi = percentile_ci(boot[m][name], alpha)
                iv[name] = Interval(value=value, lo=lo, hi=hi)
                self.ev.estimates.append(
                    Estimate(
                        name=name,
                        model=m,
                        value=value,
                        ci_low=lo,
                        ci_high=hi,
                        ci_level=1 - alpha,
                        n=n_texts,
                        method=f"cluster bootstrap over texts ({self.suite.stats.bootstrap}); {describe(name)}",
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
                role=self.suite.model(m).role,
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
                self.ev.estimates.append(merge_weight_range(m, r, n_texts, 1 - alpha))
                e = self.ev.estimates[-1]
                r.merge_weight = Interval(value=e.value, lo=e.ci_low, hi=e.ci_high)
            self.ev.estimates.append(
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

    def lineage_signal(
        self,
        results: dict[str, LogitResult],
        data: Data,
    ) -> None:
        """Each model's distance to each parent on the task-free inputs, in units of the parents'
        own distance there, and its excess over the same distance on the natural texts
        (``lineage.py``), with cluster-bootstrap CIs. The statistic is the actual token's log-prob,
        which every teacher-forced scoring reports exactly, so it reads the same in every mode (in
        next-token mode the task-free inputs are still scored teacher-forced; the excess, which
        needs the natural texts' actual tokens, is left out there). The task-free inputs and the
        natural texts are resampled on their own (two independent samples) and their replicates
        paired by index for the excess."""
        if len(data.task_free) < 4:  # none scored: params.task_free_texts 0, or a backend that only chats
            return
        parents, alpha = data.parents, self.suite.stats.alpha
        k = len(parents) + 1
        if YARDSTICK_LIMIT not in self.ev.limitations:
            self.ev.limitations.append(YARDSTICK_LIMIT)

        def rows(m: str, ids: list[str]) -> np.ndarray | None:
            grams = [
                token_gram([as_kind(data.main[x][t].result, ScoreResult) for x in (m, *parents)])
                for t in ids
                if t in data.main[m]
            ]
            kept = [g for g in grams if g is not None]  # an input the models tokenise differently is left out
            return np.stack(kept) if len(kept) >= 4 else None

        def distances(v: np.ndarray) -> dict[str, np.ndarray]:
            g = v.reshape(*v.shape[:-1], k, k)
            out = {"d": relative_distances(g)}
            if k == 3:
                out["pos"], out["res"] = line_fit(g)
            return out

        def point_and_replicates(m: str, per_input: np.ndarray) -> tuple[dict, dict]:
            """{"d": (k-1,) distances to each parent; with two parents also "pos" and "res", the
            position on and residual off their line} over every input, and the same bootstrapped
            (replicates first)."""
            reps = paired_bootstrap({m: per_input}, distances, self.suite.stats.bootstrap, self.rng)[m]
            return distances(per_input.sum(0)), reps

        for m in data.others:
            tf_rows = rows(m, data.task_free)
            if tf_rows is None:
                continue
            r = results[m]
            tf, tf_reps = point_and_replicates(m, tf_rows)
            tf_point, tf_rep = tf["d"], tf_reps["d"]
            for j, x in enumerate(parents):
                lo, hi = percentile_ci(tf_rep[:, j], alpha)
                r.task_free_distance[x] = Interval(value=float(tf_point[j]), lo=lo, hi=hi)
            if len(parents) >= 2:  # the nearer parent (by the point estimate) over the next one, per replicate
                j, j2 = np.argsort(tf_point)[:2]
                with np.errstate(divide="ignore", invalid="ignore"):
                    lo, hi = percentile_ci(tf_rep[:, j] / tf_rep[:, j2], alpha)
                r.task_free_ratio = Interval(value=float(tf_point[j] / tf_point[j2]), lo=lo, hi=hi)
            if "res" in tf:
                lo, hi = percentile_ci(tf_reps["res"], alpha)
                r.task_free_residual = Interval(value=float(tf["res"]), lo=lo, hi=hi)
                lo, hi = percentile_ci(tf_reps["pos"], alpha)
                r.task_free_weight = Interval(value=float(tf["pos"]), lo=lo, hi=hi)
            # The excess needs the natural texts' actual tokens: teacher-forced modes only.
            nat_rows = rows(m, data.ids) if data.mode != "next_token" else None
            if nat_rows is not None:
                nat, nat_reps = point_and_replicates(m, nat_rows)
                ex_point, ex_rep = excess(nat["d"], tf_point), excess(nat_reps["d"], tf_rep)
                for j, x in enumerate(parents):
                    lo, hi = percentile_ci(ex_rep[:, j], alpha)
                    r.lineage_excess[x] = Interval(value=float(ex_point[j]), lo=lo, hi=hi)
            r.n_task_free = len(tf_rows)
            near = r.nearest_parent
            for name, iv, how in (
                (
                    f"task_free_distance[{near}]",
                    r.task_free_distance[near],
                    "RMS difference of the actual tokens' log-probs from the nearest parent's on the task-free inputs, "
                    "in units of the parents' difference on the same inputs; cluster bootstrap over those inputs "
                    f"({self.suite.stats.bootstrap})",
                ),
                (
                    "task_free_residual",
                    r.task_free_residual,
                    "distance from the line through the two parents on the task-free inputs (actual tokens' "
                    "log-probs), in units of the parents' distance there; reported, not read by the verdict; cluster "
                    f"bootstrap over those inputs ({self.suite.stats.bootstrap})",
                ),
                (
                    f"lineage_excess[{near}]",
                    r.lineage_excess.get(near),
                    "log(task-free distance / natural-text distance) to the nearest parent, both on the actual tokens' "
                    "log-probs in units of the parents' distance on the same inputs; independent cluster bootstraps "
                    f"over task-free inputs and natural texts ({self.suite.stats.bootstrap})",
                ),
            ):
                if iv is None:
                    continue
                self.ev.estimates.append(
                    Estimate(
                        name=name,
                        model=m,
                        value=iv.value,
                        ci_low=iv.lo,
                        ci_high=iv.hi,
                        ci_level=1 - alpha,
                        n=len(tf_rows),
                        method=how + "; probes/logit/lineage.py",
                    )
                )

    def decide(self, results: dict[str, LogitResult], data: Data) -> None:
        """Multiple-comparison correction of each model's tests, then the verdict rule."""
        for m in data.others:
            r = results[m]
            tests = {"cv_p": r.cv_p, "p_weights_inside": r.p_weights_inside}
            if r.p_residual_below_controls is not None:
                tests["p_residual_below_controls"] = r.p_residual_below_controls
            adjusted = dict(zip(tests, adjust(list(tests.values()), self.suite.stats.correction)))
            r.cv_p_adjusted = adjusted["cv_p"]
            r.p_weights_inside_adjusted = adjusted["p_weights_inside"]
            r.p_residual_below_controls_adjusted = adjusted.get("p_residual_below_controls")
            for e in self.ev.estimates:
                if e.model == m and e.name == "cv_gain":
                    e.p_adjusted = r.cv_p_adjusted
            r.verdict, r.parent, r.reasons = decide(
                r, self.params.verdict, self.suite.stats.alpha, bool(self.ev.calibrated), data.mode
            )


def noise_floor(main, reps, parents, ids, mode, k) -> tuple[dict[str, float], tuple[str, str] | None]:
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
        ((parents[i], parents[j]) for i, j in pairs if pair_sq[i, j] <= 0 or 9 * max(diff[i], diff[j]) > pair_sq[i, j]),
        None,
    )
    return noise, same


def calibrate(results: dict[str, LogitResult], controls: list[str], boot, point) -> None:
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


def storage_note(data: Data) -> list[str]:
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
