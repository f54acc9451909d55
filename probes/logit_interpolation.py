"""Logit interpolation: does the suspect's next-token distribution sit between the parents'?

For models fine-tuned from a shared base, a linear weight merge ``a*A + (1-a)*B`` has logits
close to ``a*zA + (1-a)*zB``. Teacher-forcing the same texts through every model and
regressing the suspect's centred log-probs on the parents' gives an estimate of ``a``:

    x = c_A - c_B,   y = c_S - c_B,   a_hat = <x, y> / <x, x>,
    unexplained = |y - a_hat x|^2 / |y|^2

where ``c`` are log-probs centred over the vocabulary (which removes the per-position
normaliser) and the inner products run over every scored position and vocabulary entry.
Texts are the resampling unit of a cluster bootstrap, so the CI reflects variation between
texts rather than pretending tokens are independent.

This version works in full-vocabulary mode (exact teacher-forced log-probs, e.g. the ``hf``
backend) and analyses the suspect and every control against the first two parents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from harness.backends.base import Capabilities, Capability, ScoreRequest, ScoreResult
from harness.config import ModelSpec, Suite
from harness.data import load_items
from harness.stats import bootstrap_weights, cluster_bootstrap
from probes.base import Estimate, Planned, Probe, ProbeEvidence, ProbeParams, Record, Skip

CORPUS = Path(__file__).parent / "data" / "corpus.jsonl"

# Per-text sufficient statistics, in this column order.
XX, XY, YY, DA, KLA, KLB, NTOK = range(7)


class LogitParams(ProbeParams):
    max_texts: int | None = Field(None, ge=4, description="Use the first N texts of the corpus.")
    max_tokens: int = Field(64, ge=4, description="Tokens scored per text.")
    mode: Literal["auto", "full"] = Field("auto", description="Data mode; 'auto' picks the richest available.")
    parents: list[str] | None = Field(
        None, min_length=2, max_length=2, description="The two parent model names; default: the first two parents."
    )


def _per_text(a: ScoreResult, b: ScoreResult, s: ScoreResult) -> np.ndarray:
    """Sufficient statistics of one text for suspect ``s`` against parents ``a`` and ``b``."""
    la, lb, ls = (r.full.astype(np.float64) for r in (a, b, s))
    ca, cb, cs = (lp - lp.mean(axis=-1, keepdims=True) for lp in (la, lb, ls))
    x, y = ca - cb, cs - cb
    ps = np.exp(ls)
    return np.array(
        [
            np.sum(x * x),
            np.sum(x * y),
            np.sum(y * y),
            np.sum((cs - ca) ** 2),
            np.sum(ps * (ls - la)),
            np.sum(ps * (ls - lb)),
            ls.shape[0],
        ]
    )


def _a_hat(s: np.ndarray) -> np.ndarray:
    return s[..., XY] / s[..., XX]


def _unexplained(s: np.ndarray) -> np.ndarray:
    return 1.0 - s[..., XY] ** 2 / (s[..., XX] * s[..., YY])


def _nearest_parent_distance(s: np.ndarray) -> np.ndarray:
    """RMS distance to the nearer parent, in units of the distance between the parents."""
    return np.sqrt(np.minimum(s[..., DA], s[..., YY]) / s[..., XX])


def _kl_a(s: np.ndarray) -> np.ndarray:
    return s[..., KLA] / s[..., NTOK]


def _kl_b(s: np.ndarray) -> np.ndarray:
    return s[..., KLB] / s[..., NTOK]


STATISTICS = {
    "a_hat": (_a_hat, "logit-space interpolation weight of parent A (centred log-prob regression)"),
    "unexplained": (_unexplained, "fraction of the suspect's deviation from B not explained by the A-B direction"),
    "nearest_parent_distance": (_nearest_parent_distance, "RMS distance to the nearer parent / distance A-B"),
    "kl_to_a": (_kl_a, "KL(suspect || A) per token, nats"),
    "kl_to_b": (_kl_b, "KL(suspect || B) per token, nats"),
}


class LogitInterpolationProbe(Probe):
    id: ClassVar[str] = "logit_interpolation"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "teacher-forced log-probs: estimate the merge weight a between two parents"
    requires: ClassVar[tuple[Capability, ...]] = (Capability.FULL_LOGPROBS,)
    Params = LogitParams
    params: LogitParams

    def _items(self):
        items = load_items(self.spec.data, CORPUS)
        return items[: self.params.max_texts] if self.params.max_texts else items

    def plan(self, suite: Suite, model: ModelSpec, caps: Capabilities) -> list[Planned] | Skip:
        if not caps.has(Capability.FULL_LOGPROBS):
            return Skip(f"backend '{model.backend}' offers no full-vocabulary teacher-forced log-probs")
        return [
            Planned(
                ScoreRequest(text=it.text, mode="full", max_tokens=self.params.max_tokens),
                {"id": it.id, "group": it.group},
            )
            for it in self._items()
        ]

    def _parents(self, suite: Suite) -> list[str]:
        return self.params.parents or [m.name for m in suite.by_role("parent")][:2]

    def analyze(self, records: dict[str, list[Record]], suite: Suite, rng: np.random.Generator) -> ProbeEvidence:
        ev = ProbeEvidence(probe=self.id, instance=self.instance, version=self.version, mode="full")
        parents = self._parents(suite)
        if len(parents) < 2:
            ev.status, ev.reason = "skipped", "needs two parent models"
            return ev
        missing = [p for p in parents if not records.get(p)]
        if missing:
            ev.status, ev.reason = "skipped", f"no full-vocabulary records for parent(s) {', '.join(missing)}"
            return ev
        by_text = {m: {r.meta["id"]: r.result for r in recs} for m, recs in records.items()}
        others = [m.name for m in suite.models if m.name not in parents and by_text.get(m.name)]
        ids = sorted(set.intersection(*(set(by_text[m]) for m in [*parents, *others])))
        if len(ids) < 4:
            ev.status, ev.reason = "skipped", f"only {len(ids)} texts were scored by every model"
            return ev
        for m in [parents[1], *others]:
            for t in ids:
                if not np.array_equal(by_text[m][t].token_ids, by_text[parents[0]][t].token_ids):
                    ev.status = "skipped"
                    ev.reason = (
                        f"models '{parents[0]}' and '{m}' tokenise text {t} differently; logit interpolation "
                        "needs a shared tokenizer (a merge always has one: see the tokenizer probe)"
                    )
                    return ev

        a_name, b_name = parents
        weights = bootstrap_weights(len(ids), suite.stats.bootstrap, rng)
        controls = [m for m in others if suite.model(m).role == "control"]
        ev.calibrated = bool(controls)
        replicates: dict[str, np.ndarray] = {}
        for m in others:
            per_text = np.stack([_per_text(by_text[a_name][t], by_text[b_name][t], by_text[m][t]) for t in ids])
            summary: dict[str, Any] = {"role": suite.model(m).role, "n_texts": len(ids)}
            for stat, (fn, desc) in STATISTICS.items():
                iv = cluster_bootstrap(per_text, fn, rng, alpha=suite.stats.alpha, weights=weights)
                ev.estimates.append(
                    Estimate(
                        name=stat,
                        model=m,
                        value=iv.value,
                        ci_low=iv.low,
                        ci_high=iv.high,
                        ci_level=1 - suite.stats.alpha,
                        n=len(ids),
                        method=f"cluster bootstrap over texts ({suite.stats.bootstrap} replicates); {desc}",
                    )
                )
                summary[stat] = iv.value
                if stat == "unexplained":
                    replicates[m] = iv.replicates
            ev.per_model[m] = summary

        if controls:
            # Calibration: is this model's unexplained fraction below every control's? The bootstrap
            # replicates are paired (same resampled texts), so the p-value against control c is the
            # share of replicates where the model explains no better than c; we report the worst c.
            for m in others:
                ref = [c for c in controls if c != m]
                if not ref:
                    continue
                u = ev.per_model[m]["unexplained"]
                p_each = {c: (1 + np.sum(replicates[m] >= replicates[c])) / (1 + len(replicates[m])) for c in ref}
                worst = max(p_each, key=p_each.get)
                ev.per_model[m] |= {
                    "controls_at_or_below": sum(ev.per_model[c]["unexplained"] <= u for c in ref),
                    "controls_compared": len(ref),
                    "p_below_all_controls": float(p_each[worst]),
                    "closest_control": worst,
                }
                e = ev.estimate("unexplained", m)
                e.p_value = float(p_each[worst])
                e.null = f"unexplained fraction >= that of some control (closest: {worst})"
        else:
            ev.notes.append("UNCALIBRATED: the suite has no control models, so nothing anchors what 'low' means.")
        ev.summary = self._summary(ev, suite, parents, len(ids))
        return ev

    def _summary(self, ev: ProbeEvidence, suite: Suite, parents: list[str], n: int) -> str:
        lines = []
        for m in (s.name for s in suite.by_role("suspect")):
            if m not in ev.per_model:
                continue
            a = ev.estimate("a_hat", m)
            u = ev.estimate("unexplained", m)
            lines.append(
                f"{m}: a_hat = {a.value:.3f} (95% CI {a.ci_low:.3f}-{a.ci_high:.3f}) towards {parents[0]} "
                f"vs {parents[1]}; {100 * u.value:.1f}% of its deviation unexplained "
                f"(CI {100 * u.ci_low:.1f}-{100 * u.ci_high:.1f}%), over {n} texts."
            )
        return " ".join(lines)

    def report_section(self, evidence: ProbeEvidence, suite: Suite) -> str:
        from harness.report import fmt_ci, fmt_p

        if evidence.status != "ok":
            return f"_{evidence.status}: {evidence.reason}_\n"
        rows = [
            "| model | role | a_hat [95% CI] | unexplained [95% CI] | p (unexplained below every control) | "
            "nearest-parent distance | KL to A | KL to B |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m, s in evidence.per_model.items():
            e = {n: evidence.estimate(n, m) for n in STATISTICS}
            rows.append(
                f"| {m} | {s['role']} | {fmt_ci(e['a_hat'])} | {fmt_ci(e['unexplained'])} | "
                f"{fmt_p(e['unexplained'].p_value)} | {fmt_ci(e['nearest_parent_distance'])} | "
                f"{fmt_ci(e['kl_to_a'])} | {fmt_ci(e['kl_to_b'])} |"
            )
        return "\n".join(rows) + "\n"

    def figures(self, evidence: ProbeEvidence, out_dir: Path) -> list[tuple[str, Path]]:
        if evidence.status != "ok" or not evidence.per_model:
            return []
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        models = list(evidence.per_model)
        colours = {"suspect": "tab:red", "control": "tab:blue", "parent": "tab:green"}
        fig, axes = plt.subplots(1, 2, figsize=(10, 0.45 * len(models) + 1.5), sharey=True)
        for ax, stat, label in (
            (axes[0], "a_hat", "a_hat (weight of parent A)"),
            (axes[1], "unexplained", "unexplained fraction"),
        ):
            for i, m in enumerate(models):
                e = evidence.estimate(stat, m)
                c = colours[evidence.per_model[m]["role"]]
                ax.errorbar(e.value, i, xerr=[[e.value - e.ci_low], [e.ci_high - e.value]], fmt="o", color=c, capsize=3)
            ax.set_xlabel(label)
            ax.grid(axis="x", alpha=0.3)
        axes[0].axvline(0, color="grey", lw=0.8)
        axes[0].axvline(1, color="grey", lw=0.8)
        axes[0].set_yticks(range(len(models)), models)
        axes[0].invert_yaxis()
        fig.suptitle("Logit interpolation: estimates with 95% cluster-bootstrap CIs (red: suspect, blue: controls)")
        fig.tight_layout()
        path = out_dir / f"{evidence.instance}_forest.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return [("a_hat and unexplained fraction per model", path)]
