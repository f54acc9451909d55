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

The verdict rule is in :mod:`probes.logit_verdict`. The maths is in :mod:`harness.interpolation`,
the alignment of records by token id in :mod:`probes.logit_align`.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from harness.backends.base import Capabilities, Capability, GenerateRequest, ScoreRequest
from harness.config import ModelSpec, Suite
from harness.data import balanced_head, load_items
from harness.interpolation import (
    GEO_GRID,
    MIX_GRID,
    Layout,
    centred,
    cv_gain,
    fit_simplex,
    fit_unconstrained,
    grid_min,
    parent_scale,
    sq_distance,
    text_stats,
)
from harness.provenance import same_weight_files
from harness.stats import adjust, paired_bootstrap, percentile_ci, z_pvalue
from probes.base import Estimate, Planned, Probe, ProbeEvidence, ProbeParams, Record, Skip, save_figure, subplots
from probes.logit_align import align, request_mode
from probes.logit_verdict import VerdictThresholds, decide

CORPUS = Path(__file__).parent / "data" / "corpus.jsonl"
MODE_ORDER = {"full": 0, "topk": 1, "next_token": 2}
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
    parents: list[str] | None = Field(None, min_length=2, description="Parent model names; default: every parent.")
    disagreement_tau: float = Field(1.0, gt=0, description="Parents 'disagree' where centred log-probs differ by more.")
    cv_splits: int = Field(50, ge=5, description="Random half splits of the cross-validated test.")
    noise_replicate: bool = Field(True, description="Score each parent twice (batch order reversed): noise floor.")
    verdict: VerdictThresholds = Field(default_factory=VerdictThresholds)


def summed_statistics(v: np.ndarray, layout: Layout, parents: list[str]) -> dict[str, np.ndarray]:
    """Every estimator as a function of summed per-text statistics ``v`` (..., L).

    Degenerate sums (no usable positions) give NaN, which the CIs skip and the report prints as n/a.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return _summed_statistics(v, layout, parents)


def _summed_statistics(v: np.ndarray, layout: Layout, parents: list[str]) -> dict[str, np.ndarray]:
    g = layout.get(v, "gram")
    k = len(parents)
    scale = parent_scale(g)
    out: dict[str, np.ndarray] = {}
    if k == 2:
        w, resid = fit_unconstrained(g)
        out["a_hat"] = w[..., 0]
    else:
        w, resid = fit_simplex(g)
    for i, p in enumerate(parents):
        out[f"weight[{p}]"] = w[..., i]
    out["residual"] = np.sqrt(resid / scale)
    d2 = np.stack([sq_distance(g, 0, i + 1) for i in range(k)], axis=-1)
    for i, p in enumerate(parents):
        out[f"distance[{p}]"] = np.sqrt(d2[..., i] / scale)
        out[f"unexplained_from[{p}]"] = resid / d2[..., i]
    out["nearest_parent_distance"] = np.sqrt(d2.min(axis=-1) / scale)
    positions = layout.get(v, "positions")
    for name in ("kl", "js", "tv"):
        vals = layout.get(v, name)
        for i, p in enumerate(parents):
            out[f"{name}[{p}]"] = vals[..., i] / positions
    if k == 2:
        srt = np.sort(d2, axis=-1)
        out["distance_ratio"] = np.sqrt(srt[..., 0] / srt[..., 1])
        out["betweenness"] = layout.get(v, "between") / layout.get(v, "disagree")
        ce_geo, ce_mix, ent = layout.get(v, "ce_geo"), layout.get(v, "ce_mix"), layout.get(v, "entropy")
        a_geo, ce_geo_min = grid_min(ce_geo, GEO_GRID)
        w_mix, ce_mix_min = grid_min(ce_mix, MIX_GRID)
        out["a_geometric"], out["w_mixture"] = a_geo, w_mix
        out["kl[geometric fit]"] = (ce_geo_min - ent) / positions
        out["kl[mixture fit]"] = (ce_mix_min - ent) / positions
        out["kl_geometric_minus_mixture"] = out["kl[geometric fit]"] - out["kl[mixture fit]"]
    return out


DESCRIPTIONS = {
    "a_hat": "logit-space weight of the first parent (centred log-prob regression)",
    "weight": "weight of this parent (non-negative, summing to 1 over parents)",
    "residual": "RMS distance off the parents' line/simplex, in units of the distance between parents",
    "distance": "RMS distance to this parent, in units of the distance between parents",
    "unexplained_from": "fraction of the suspect's deviation from this parent not explained by interpolation",
    "nearest_parent_distance": "RMS distance to the nearest parent (copy test), in parent-distance units",
    "kl": "KL(suspect || parent) per position on the support, nats",
    "js": "Jensen-Shannon divergence per position, nats",
    "tv": "total variation distance per position",
    "distance_ratio": "distance to the nearer parent / distance to the farther parent",
    "betweenness": "share of points where the parents disagree and the suspect lies between them",
    "a_geometric": "weight of the KL-minimising geometric (logit-space) interpolation",
    "w_mixture": "weight of the KL-minimising arithmetic (probability-space) mixture",
    "kl[geometric fit]": "KL(suspect || fitted geometric interpolation) per position",
    "kl[mixture fit]": "KL(suspect || fitted arithmetic mixture) per position",
    "kl_geometric_minus_mixture": "negative: the weight-merge (geometric) model fits better than output mixing",
}


def _describe(name: str) -> str:
    return DESCRIPTIONS.get(name) or DESCRIPTIONS.get(name.split("[")[0], "")


def cv_gain_text(s: dict[str, Any], p_text: str) -> str:
    """The CV gain as a percentage, or why it has none. Against a copy the better single parent
    already predicts the suspect to within the noise floor, so the relative gain is a ratio of
    noise to noise (values of 1e290 were printed): it is not a number to quote."""
    if s["verdict"] == "copy":
        return "n/a (a copy: nothing is left for an interpolation to explain)"
    gain = s["cv_gain"]
    if not np.isfinite(gain) or abs(gain) > 10:
        return "n/a (undefined: the better parent leaves almost nothing to explain)"
    return f"{100 * gain:.1f}% ({p_text})"


class LogitInterpolationProbe(Probe):
    id: ClassVar[str] = "logit_interpolation"
    version: ClassVar[str] = "2"
    description: ClassVar[str] = "teacher-forced log-probs: is the suspect an interpolation of the parents?"
    requires: ClassVar[tuple[Capability, ...]] = (
        Capability.FULL_LOGPROBS,
        Capability.TOPK_LOGPROBS,
        Capability.NEXT_TOKEN_TOPK,
    )
    Params = LogitParams
    params: LogitParams

    # ------------------------------------------------------------------ collection
    def _items(self):
        return balanced_head(load_items(self.spec.data, CORPUS), self.params.max_texts)

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
        items = self._items()
        p = self.params
        if mode == "next_token":
            k = min(p.top_k, caps.max_top_k) if caps.max_top_k else p.top_k
            return [
                Planned(
                    GenerateRequest(messages=[{"role": "user", "content": it.text}], max_new_tokens=1, top_logprobs=k),
                    {"id": it.id, "group": it.group},
                )
                for it in items
            ]
        req = {"mode": mode, "top_k": p.top_k if mode == "topk" else 0, "max_tokens": p.max_tokens}
        plan = [Planned(ScoreRequest(text=it.text, **req), {"id": it.id, "group": it.group}) for it in items]
        if p.noise_replicate and model.role == "parent":
            # Reversed order: the runner batches different texts together, so padding and batch
            # composition differ from the first pass. The difference is the noise floor.
            plan += [
                Planned(
                    ScoreRequest(text=it.text, replicate=1, **req), {"id": it.id, "group": it.group, "replicate": 1}
                )
                for it in reversed(items)
            ]
        return plan

    def preflight(self, suite: Suite) -> list[tuple[tuple, str]]:
        problems: list[tuple[tuple, str]] = []
        by_name = {m.name: m for m in suite.models}
        for j, name in enumerate(self.params.parents or []):
            if name not in by_name:
                problems.append((("parents", j), f"no model named '{name}' in this suite"))
        parents = [n for n in self._parents(suite) if n in by_name]
        if len(parents) < 2:
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
        local = [(n, Path(by_name[n].path)) for n in parents if by_name[n].path and Path(by_name[n].path).exists()]
        for (na, pa), (nb, pb) in itertools.combinations(local, 2):  # a copy under another path
            if pa.resolve() != pb.resolve() and same_weight_files(pa, pb):
                problems.append(
                    ((), f"parents '{na}' and '{nb}' are the same model: {pa} and {pb} hold identical weight files")
                )
        return problems

    # ------------------------------------------------------------------ analysis
    def _parents(self, suite: Suite) -> list[str]:
        return self.params.parents or [m.name for m in suite.by_role("parent")]

    def analyze(self, records: dict[str, list[Record]], suite: Suite, rng: np.random.Generator) -> ProbeEvidence:
        ev = ProbeEvidence(probe=self.id, instance=self.instance, version=self.version)
        parents = self._parents(suite)
        p = self.params
        if len(parents) < 2:
            ev.status, ev.reason = "skipped", "needs at least two parent models"
            return ev
        missing = [x for x in parents if not records.get(x)]
        if missing:
            ev.status, ev.reason = "skipped", f"no records for parent(s) {', '.join(missing)}"
            return ev
        main = {m: {r.meta["id"]: r for r in recs if not r.meta.get("replicate")} for m, recs in records.items()}
        reps = {m: {r.meta["id"]: r for r in recs if r.meta.get("replicate")} for m, recs in records.items()}
        others = [m.name for m in suite.models if m.name not in parents and main.get(m.name)]
        if not others:
            ev.status, ev.reason = "skipped", "no suspect or control was scored"
            return ev
        involved = [*parents, *others]
        modes = {request_mode(r.request) for m in involved for r in main[m].values()}
        if self.params.mode != "auto":
            modes.add(self.params.mode)
        if "next_token" in modes and modes != {"next_token"}:
            ev.status = "skipped"
            ev.reason = "models were probed in incompatible modes (teacher-forced vs next-token); pick one mode"
            return ev
        mode = max(modes, key=MODE_ORDER.get)
        ev.mode = mode
        ids = sorted(set.intersection(*(set(main[m]) for m in involved)))
        if len(ids) < 4:
            ev.status, ev.reason = "skipped", f"only {len(ids)} texts were answered by every model"
            return ev
        ev.notes.append(f"Data mode '{mode}': {POWER_NOTE[mode]}.")
        k = p.top_k

        layout = Layout(len(parents) + 1)
        per_text: dict[str, np.ndarray] = {}
        for m in others:
            rows = []
            for t in ids:  # one text at a time: answers are read from the cache and released
                results = [main[x][t].result for x in (m, *parents)]
                if mode != "next_token":
                    bad = next(
                        (
                            x
                            for x, r in zip((m, *parents), results)
                            if not np.array_equal(r.token_ids, results[1].token_ids)
                        ),
                        None,
                    )
                    if bad is not None:
                        ev.status = "skipped"
                        ev.reason = (
                            f"models '{parents[0]}' and '{bad}' tokenise text {t} differently; logit interpolation "
                            "needs a shared tokenizer (a merge always has one: see the tokenizer probe)"
                        )
                        ev.notes = []
                        return ev
                lp, mask = align(results, mode, k)
                rows.append(text_stats(lp, mask, p.disagreement_tau).vector())
            per_text[m] = np.stack(rows)
        noise, same = self._noise_floor(main, reps, parents, ids, mode, k)
        if same is not None:  # the parents' line is (almost) a point
            ev.status = "skipped"
            ev.reason = (
                f"parents '{same[0]}' and '{same[1]}' are the same model within the noise floor (their "
                f"distance is less than 3x the difference between two scorings of one parent): there is no "
                "line between them to place a suspect on"
            )
            ev.notes = []
            return ev

        alpha = suite.stats.alpha
        controls = [m for m in others if suite.model(m).role == "control"]
        ev.calibrated = bool(controls)
        if not controls:
            ev.notes.append("UNCALIBRATED: the suite has no control models, so nothing anchors what 'low' means.")
        point: dict[str, dict[str, float]] = {}
        cv: dict[str, tuple[np.ndarray, float]] = {}
        # One set of resampled texts for every model: replicates are paired across models.
        boot = paired_bootstrap(per_text, lambda v: summed_statistics(v, layout, parents), suite.stats.bootstrap, rng)
        for m in others:
            point[m] = {n: float(x) for n, x in summed_statistics(per_text[m].sum(0), layout, parents).items()}
            grams = layout.get(per_text[m], "gram")
            cv[m] = cv_gain(grams, rng, p.cv_splits)

        for m in others:
            s: dict[str, Any] = {"role": suite.model(m).role, "n_texts": len(ids)}
            for name, value in point[m].items():
                lo, hi = percentile_ci(boot[m][name], alpha)
                est = Estimate(
                    name=name,
                    model=m,
                    value=value,
                    ci_low=float(lo),
                    ci_high=float(hi),
                    ci_level=1 - alpha,
                    n=len(ids),
                    method=f"cluster bootstrap over texts ({suite.stats.bootstrap}); {_describe(name)}",
                )
                ev.estimates.append(est)
                s[name] = value
                s[f"{name}_lo"], s[f"{name}_hi"] = float(lo), float(hi)
            gains, p_cv = cv[m]
            s["cv_gain"], s["cv_p"] = float(np.mean(gains)), p_cv
            ev.estimates.append(
                Estimate(
                    name="cv_gain",
                    model=m,
                    value=float(np.mean(gains)),
                    p_value=p_cv,
                    n=len(gains),
                    null="the interpolation predicts held-out texts no better than the better single parent",
                    method=f"{p.cv_splits} random half splits; one-sided Wilcoxon signed-rank on per-text gains",
                )
            )
            nearest = int(np.argmin([point[m][f"distance[{x}]"] for x in parents]))
            s["nearest_parent"] = parents[nearest]
            s["noise_floor"] = noise.get(parents[nearest], 0.0)
            w_names = [f"weight[{x}]" for x in parents]
            s["weight_cis"] = [(s[f"{n}_lo"], s[f"{n}_hi"]) for n in (w_names[:1] if len(parents) == 2 else w_names)]
            # Weights inside (0, 1): z-tests with the bootstrap SE, the larger one-sided p (intersection-union).
            p_int = []
            for n in w_names[:1] if len(parents) == 2 else w_names:
                se = float(np.nanstd(boot[m][n], ddof=1))
                p_int += [z_pvalue(point[m][n], 0.0, se, "greater"), z_pvalue(point[m][n], 1.0, se, "less")]
            s["p_weights_inside"] = max(p_int)
            ev.per_model[m] = s

        self._calibrate(ev, others, controls, boot, point)
        for m in others:
            s = ev.per_model[m]
            names = ["cv_p", "p_weights_inside"] + (
                ["p_residual_below_controls"] if "p_residual_below_controls" in s else []
            )
            adjusted = adjust([s[n] for n in names], suite.stats.correction)
            for n, a in zip(names, adjusted):
                s[f"{n}_adjusted"] = a
            s["p_combined"] = max(adjusted)  # all of these must hold for "interpolation"
            for e in ev.estimates:
                if e.model == m and e.name == "cv_gain":
                    e.p_adjusted = s["cv_p_adjusted"]
            s.update(decide(s, p.verdict, alpha, ev.calibrated, mode))
        ev.summary = self._summary(ev, suite, parents, len(ids))
        return ev

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
            c = centred(*align([main[x][t].result for x in parents], mode, k))
            for i, j in itertools.combinations(range(n), 2):
                pair_sq[i, j] += float(np.sum((c[..., i] - c[..., j]) ** 2))
            for i, x in enumerate(parents):
                if t in reps.get(x, {}):
                    c2 = centred(*align([main[x][t].result, reps[x][t].result], mode, k))
                    diff[i] += float(np.sum((c2[..., 0] - c2[..., 1]) ** 2))
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

    def _calibrate(self, ev, others, controls, boot, point) -> None:
        """Each model against the controls (leave-one-out for a control): empirical p, z-score, paired test."""
        for m in others:
            ref = [c for c in controls if c != m]
            s = ev.per_model[m]
            if not ref:
                continue
            cal: dict[str, Any] = {}
            for stat, lower_is_merge_like in (("residual", True), ("betweenness", False), ("cv_gain", False)):
                if stat not in s:
                    continue
                vals = np.array([ev.per_model[c][stat] for c in ref])
                x = s[stat]
                extreme = np.sum(vals <= x) if lower_is_merge_like else np.sum(vals >= x)
                sd = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
                cal[stat] = {
                    "value": x,
                    "controls": dict(zip(ref, vals.tolist())),
                    "empirical_p": float((1 + extreme) / (1 + len(vals))),
                    "z": float((x - vals.mean()) / sd) if sd and np.isfinite(sd) and sd > 0 else None,
                }
            # Paired bootstrap z-test: residual below each control's (same resampled texts); worst control.
            p_each = {}
            for c in ref:
                d = boot[c]["residual"] - boot[m]["residual"]
                p_each[c] = z_pvalue(
                    point[c]["residual"] - point[m]["residual"], 0.0, float(np.nanstd(d, ddof=1)), "greater"
                )
            worst = max(p_each, key=p_each.get)
            s["p_residual_below_controls"] = p_each[worst]
            s["closest_control"] = worst
            s["residual_below_all_controls"] = all(point[c]["residual"] > point[m]["residual"] for c in ref)
            s["calibration"] = cal

    def _summary(self, ev: ProbeEvidence, suite: Suite, parents: list[str], n: int) -> str:
        lines = []
        for m in (x.name for x in suite.by_role("suspect")):
            s = ev.per_model.get(m)
            if s is None:
                continue
            if len(parents) == 2:
                weights = (
                    f"a_hat = {s['a_hat']:.3f} (95% CI {s['a_hat_lo']:.3f}-{s['a_hat_hi']:.3f}) towards {parents[0]}"
                )
            else:
                weights = ", ".join(f"{x} {s[f'weight[{x}]']:.2f}" for x in parents)
            lines.append(
                f"**{m}: {s['verdict'].replace('_', ' ')}**"
                + (f" ({s['parent']})" if s.get("parent") else "")
                + f". {weights}; residual off the parents' line {s['residual']:.3f} "
                f"(CI {s['residual_lo']:.3f}-{s['residual_hi']:.3f}); CV gain over the better parent "
                f"{cv_gain_text(s, 'p_adj ' + format(s['cv_p_adjusted'], '.2g'))}; over {n} texts."
            )
        return "\n\n".join(lines)

    # ------------------------------------------------------------------ presentation
    def report_section(self, evidence: ProbeEvidence, suite: Suite) -> str:
        from harness.report import fmt, fmt_ci, fmt_p

        parents = self._parents(suite)
        t = self.params.verdict
        out = [
            "| model | role | verdict | weights [95% CI] | residual [CI] | nearest parent [CI] | CV gain (p_adj) | "
            "betweenness [CI] | combined p |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for m, s in evidence.per_model.items():
            e = {x.name: x for x in evidence.estimates if x.model == m}
            if len(parents) == 2:
                w = fmt_ci(e["a_hat"])
            else:
                w = "; ".join(f"{x}: {fmt_ci(e[f'weight[{x}]'], 2)}" for x in parents)
            btw = fmt_ci(e["betweenness"]) if "betweenness" in e else "n/a"
            verdict = s["verdict"].replace("_", " ") + (f" ({s['parent']})" if s.get("parent") else "")
            out.append(
                f"| {m} | {s['role']} | **{verdict}** | {w} | {fmt_ci(e['residual'])} | "
                f"{s['nearest_parent']} {fmt_ci(e['nearest_parent_distance'])} | "
                f"{cv_gain_text(s, fmt_p(s['cv_p_adjusted']))} | {btw} | {fmt_p(s['p_combined'])} |"
            )
        out += ["", "**Why each verdict** (rule in `probes/logit_verdict.py`):", ""]
        for m, s in evidence.per_model.items():
            out.append(f"- {m}: " + "; ".join(s["reasons"]))
        out += [
            "",
            f"Thresholds: copy <= {t.copy_max_distance} (or 3x noise floor); CV gain >= {t.min_cv_gain}; "
            f"weight CIs inside ({t.a_margin}, "
            f"{1 - t.a_margin}); merge residual <= {t.merge_max_residual}; merge+training residual <= "
            f"{t.trained_max_residual}; derived ratio <= {t.derived_max_ratio}.",
            "",
        ]
        if len(parents) == 2:
            a, b = parents
            out += [
                "| model | KL to " + a + " | KL to " + b + " | JS to " + a + " | JS to " + b + " | a (geometric) | "
                "w (mixture) | KL geometric - KL mixture | unexplained from " + a + " | unexplained from " + b + " |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            for m in evidence.per_model:
                e = {x.name: x for x in evidence.estimates if x.model == m}
                out.append(
                    f"| {m} | {fmt_ci(e[f'kl[{a}]'])} | {fmt_ci(e[f'kl[{b}]'])} | {fmt_ci(e[f'js[{a}]'])} | "
                    f"{fmt_ci(e[f'js[{b}]'])} | {fmt_ci(e['a_geometric'])} | {fmt_ci(e['w_mixture'])} | "
                    f"{fmt_ci(e['kl_geometric_minus_mixture'], 4)} | {fmt_ci(e[f'unexplained_from[{a}]'])} | "
                    f"{fmt_ci(e[f'unexplained_from[{b}]'])} |"
                )
            out.append("")
        cal_rows = [(m, st, c) for m, s in evidence.per_model.items() for st, c in s.get("calibration", {}).items()]
        if cal_rows:
            out += [
                "Calibration against the controls (leave-one-out for controls):",
                "",
                "| model | statistic | value | controls | empirical p | z |",
                "|---|---|---|---|---|---|",
            ]
            for m, st, c in cal_rows:
                ctl = ", ".join(f"{k} {v:.3f}" for k, v in c["controls"].items())
                out.append(f"| {m} | {st} | {c['value']:.3f} | {ctl} | {c['empirical_p']:.3f} | {fmt(c['z'], 2)} |")
            out.append("")
        return "\n".join(out) + "\n"

    def figures(self, evidence: ProbeEvidence, out_dir: Path) -> list[tuple[str, Path]]:
        if not evidence.per_model:
            return []
        models = list(evidence.per_model)
        colours = {"suspect": "tab:red", "control": "tab:blue"}
        # Two parents: a_hat. More: the first parent's simplex weight (the table has all of them).
        first = next(e.name for e in evidence.estimates if e.name in ("a_hat",) or e.name.startswith("weight["))
        fig, axes = subplots(1, 2, figsize=(11, 0.45 * len(models) + 1.8), sharey=True)
        for ax, stat, label in ((axes[0], first, first), (axes[1], "residual", "residual off the parents' line")):
            for i, m in enumerate(models):
                e = evidence.estimate(stat, m)
                c = colours.get(evidence.per_model[m]["role"], "grey")
                ax.errorbar(e.value, i, xerr=[[e.value - e.ci_low], [e.ci_high - e.value]], fmt="o", color=c, capsize=3)
            ax.set_xlabel(label)
            ax.grid(axis="x", alpha=0.3)
        t = self.params.verdict
        axes[0].axvline(0, color="grey", lw=0.8)
        axes[0].axvline(1, color="grey", lw=0.8)
        axes[1].axvline(t.merge_max_residual, color="tab:green", ls="--", lw=0.8, label="merge threshold")
        axes[1].axvline(t.trained_max_residual, color="tab:orange", ls="--", lw=0.8, label="merge+training threshold")
        axes[1].legend(loc="upper right", fontsize=8)
        axes[0].set_yticks(
            range(len(models)), [f"{m} ({evidence.per_model[m]['verdict'].replace('_', ' ')})" for m in models]
        )
        axes[0].invert_yaxis()
        fig.suptitle("Logit interpolation, 95% cluster-bootstrap CIs (red: suspects, blue: controls)")
        path = save_figure(fig, out_dir / f"{evidence.instance}_forest.png")
        return [("weights and residual per model, with the verdict thresholds", path)]
