"""The identity probe's analysis: one object holding the suite, the parameters, the random
generator and the evidence it fills.

Every answer's claims (``claims.py``), counted per model, condition and label with
question-clustered Wilson CIs; each suspect against the pooled controls per parent identity
(a paired sign-flip permutation over questions, corrected); verbatim reuse of each parent's
answers (``ngrams.py``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from harness.backends.base import GenerateResult
from harness.evidence import ProbeEvidence
from harness.stats import adjust, clustered_wilson, effective_n, signflip_pvalue
from harness.suite import Suite
from probes.base import Record, uncalibrated_note
from probes.identity import render
from probes.identity.claims import ClaimExtractor
from probes.identity.ngrams import NgramPool, reuse_permutation_test
from probes.identity.params import IdentityParams
from probes.identity.result import Count, IdentityResult, LabelRate


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


class IdentityAnalysis:
    """One analysis of the identity probe's records into ``ev``."""

    def __init__(self, params: IdentityParams, suite: Suite, rng: np.random.Generator, ev: ProbeEvidence):
        self.params = params
        self.suite = suite
        self.rng = rng
        self.ev = ev

    def run(self, records: dict[str, list[Record]]) -> ProbeEvidence:
        """Extract claims from every answer, count them per model, condition and label (Wilson
        CIs), test each suspect against the pooled controls, and measure verbatim reuse."""
        ev, suite = self.ev, self.suite
        responses, prompts = self.responses(records)
        controls = [m.name for m in suite.by_role("control") if any(k[0] == m.name for k in responses)]
        ev.calibrated = bool(controls)
        if not controls:
            ev.notes.append(uncalibrated_note(suite, "claim rates have no reference"))
        for (m, cond), rows in sorted(responses.items()):
            result = IdentityResult(
                role=suite.model(m).role,
                condition=cond,
                n=len(rows),
                labels=self.claim_rates(rows),
                system_text_rendered=prompts.get((m, cond), ""),
                examples=[r for r in rows if r["claims"]][:3],
            )
            ev.per_model[f"{m} | {cond}"] = result.model_dump(mode="json")
        ev.tables["claims_vs_controls"] = self.claims_vs_controls(responses, controls)
        ev.tables["verbatim_reuse"] = self.reuse(responses, controls)
        ev.summary = render.summary(ev)
        return ev

    def responses(
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

    def claim_rates(self, rows: list[dict[str, Any]]) -> dict[str, LabelRate]:
        """Per label: answers claiming it, the rate with its question-clustered Wilson CI, and
        counts by language."""
        n, alpha = len(rows), self.suite.stats.alpha
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
                n_effective=effective_n(kq, nq),
                by_language={g: Count(k=a, n=b) for g, (a, b) in by_lang.items()},
            )
        return out

    def claims_vs_controls(
        self, responses: dict[tuple[str, str], list[dict[str, Any]]], controls: list[str]
    ) -> list[dict[str, Any]]:
        """Suspect vs controls, per parent identity, with questions as the units: the samples of
        one question are correlated, so the test compares question-level claim rates (the
        suspect's minus the controls' mean, one difference per question both answered) by a
        one-sided paired sign-flip permutation; corrected across the family (Holm or BH)."""
        tests: list[dict[str, Any]] = []
        suite, alpha = self.suite, self.suite.stats.alpha
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
                            "p": signflip_pvalue(d, self.rng),
                        }
                    )
        for t, pa in zip(tests, adjust([t["p"] for t in tests], suite.stats.correction)):
            t["p_adjusted"] = pa
        return tests

    def reuse(
        self, responses: dict[tuple[str, str], list[dict[str, Any]]], controls: list[str]
    ) -> list[dict[str, Any]]:
        """Verbatim reuse of each parent's (condition 'none') responses by the suspect, vs the controls'."""
        suite, rng = self.suite, self.rng
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
