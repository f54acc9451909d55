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
* claims extracted by :mod:`harness.claims` (case-insensitive, word-bounded, negation-aware);
* Wilson CIs per model x condition x label; one-sided Fisher tests of "the suspect claims
  parent X's identity more often than the pooled controls", Holm-corrected; the per-language
  breakdown; verbatim reuse of each parent's responses (longest shared token run, share of
  responses with a run of at least ``ngram_threshold`` tokens, paired permutation p-value).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from harness.backends.base import Capabilities, Capability, GenerateRequest
from harness.claims import ClaimExtractor
from harness.config import ModelSpec, Suite
from harness.data import Item, balanced_head, load_file, load_items
from harness.errors import InputError
from harness.ngrams import NgramPool, reuse_permutation_test
from harness.stats import adjust, wilson
from probes.base import Planned, Probe, ProbeEvidence, ProbeParams, Record, Skip, save_figure, subplots

BANK = Path(__file__).parent / "data" / "identity_questions.jsonl"
Condition = Literal["none", "own", "neutral", "no_default_system"]


class IdentityParams(ProbeParams):
    labels: dict[str, list[str]] = Field(
        description="Identity label -> aliases, e.g. {nex: [Nex, Nex-AGI], qwen: [Qwen, 通义]}.", min_length=1
    )
    model_labels: dict[str, str] = Field(
        default_factory=dict, description="Model name -> the label of its own identity (e.g. parent_a: vireo)."
    )
    conditions: list[Condition] = Field(default_factory=lambda: ["none", "own"], min_length=1)
    neutral_system_prompt: str = "You are a helpful assistant."
    languages: list[str] | None = Field(None, description="Keep only these question languages (en, pt, es, zh).")
    max_questions: int | None = Field(None, ge=1)
    samples: int = Field(4, ge=1, description="Samples per question and condition.")
    greedy: bool = False
    temperature: float = Field(0.7, gt=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(64, ge=1)
    seed: int = 0
    ngram_threshold: int = Field(8, ge=2, description="Shared run (tokens) that counts as verbatim reuse.")

    @field_validator("labels")
    @classmethod
    def _patterns(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        ClaimExtractor(v)  # raises "label(s) with no patterns: ..."
        return v


class IdentityProbe(Probe):
    id: ClassVar[str] = "identity"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "identity questions with and without the system prompt: whose name does it claim?"
    requires: ClassVar[tuple[Capability, ...]] = (Capability.GENERATE,)
    Params = IdentityParams
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

    def preflight(self, suite: Suite) -> list[tuple[tuple, str]]:
        p = self.params
        problems: list[tuple[tuple, str]] = []
        models = {m.name for m in suite.models}
        for model, label in p.model_labels.items():
            if model not in models:
                problems.append((("model_labels", model), f"no model named '{model}' in this suite"))
            if label not in p.labels:
                problems.append((("model_labels", model), f"unknown label '{label}'; labels: {', '.join(p.labels)}"))
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
        from scipy import stats as sps  # imported here: `validate` stays fast

        ev = ProbeEvidence(probe=self.id, instance=self.instance, version=self.version, mode="generation")
        ex = ClaimExtractor(self.params.labels)
        labels = list(self.params.labels)
        responses: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        prompts: dict[tuple[str, str], str] = {}
        for m, recs in records.items():
            for r in recs:
                res = r.result
                key = (m, r.meta["condition"])
                prompts.setdefault(key, res.rendered_prompt or "")
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
        alpha = suite.stats.alpha
        controls = [m.name for m in suite.by_role("control") if any(k[0] == m.name for k in responses)]
        ev.calibrated = bool(controls)
        if not controls:
            ev.notes.append("UNCALIBRATED: no control models, so claim rates have no reference.")
        for (m, cond), rows in sorted(responses.items()):
            n = len(rows)
            entry: dict[str, Any] = {"role": suite.model(m).role, "condition": cond, "n": n, "labels": {}}
            for lab in labels:
                k = sum(lab in r["claims"] for r in rows)
                lo, hi = wilson(k, n, 1 - alpha)
                by_lang = defaultdict(lambda: [0, 0])
                for r in rows:
                    by_lang[r["lang"]][1] += 1
                    by_lang[r["lang"]][0] += lab in r["claims"]
                entry["labels"][lab] = {
                    "k": k,
                    "n": n,
                    "rate": k / n if n else float("nan"),
                    "ci": [lo, hi],
                    "by_language": {g: {"k": a, "n": b} for g, (a, b) in by_lang.items()},
                }
            entry["system_text_rendered"] = prompts.get((m, cond), "")
            entry["examples"] = [r for r in rows if r["claims"]][:3]
            ev.per_model[f"{m} | {cond}"] = entry

        # Suspect vs pooled controls, per parent identity: one-sided Fisher exact, Holm across the family.
        tests = []
        for s in (x.name for x in suite.by_role("suspect")):
            for cond in self.params.conditions:
                if (s, cond) not in responses:
                    continue
                for parent, lab in self.params.model_labels.items():
                    rows = responses[(s, cond)]
                    k_s = sum(lab in r["claims"] for r in rows)
                    ctl = [r for c in controls for r in responses.get((c, cond), [])]
                    if not ctl:
                        continue
                    k_c = sum(lab in r["claims"] for r in ctl)
                    p = sps.fisher_exact([[k_s, len(rows) - k_s], [k_c, len(ctl) - k_c]], alternative="greater").pvalue
                    tests.append(
                        {
                            "suspect": s,
                            "condition": cond,
                            "parent": parent,
                            "label": lab,
                            "k": k_s,
                            "n": len(rows),
                            "k_controls": k_c,
                            "n_controls": len(ctl),
                            "p": float(p),
                        }
                    )
        for t, pa in zip(tests, adjust([t["p"] for t in tests], suite.stats.correction)):
            t["p_adjusted"] = pa
        ev.tables["fisher_vs_controls"] = tests
        ev.tables["verbatim_reuse"] = self._reuse(responses, suite, controls, rng)
        ev.summary = self._summary(ev, suite)
        return ev

    def _reuse(self, responses, suite: Suite, controls: list[str], rng) -> list[dict[str, Any]]:
        """Verbatim reuse of each parent's (condition 'none') responses by the suspect, vs the controls'."""
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
                lc = [ctl_pool.longest_shared(r["text"]) for r in rows]
                ra, rc, p = reuse_permutation_test(
                    np.array([x[0] for x in la]), np.array([x[0] for x in lc]), thr, rng, 5000
                )
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

    def _summary(self, ev: ProbeEvidence, suite: Suite) -> str:
        lines = []
        for t in ev.tables["fisher_vs_controls"]:
            rate = t["k"] / t["n"] if t["n"] else float("nan")
            lo, hi = wilson(t["k"], t["n"])
            lines.append(
                f"{t['suspect']} ({t['condition']} system prompt): claims {t['label']} ({t['parent']}'s identity) "
                f"{t['k']}/{t['n']} ({100 * rate:.1f}%, 95% CI {100 * lo:.1f}-{100 * hi:.1f}) vs controls "
                f"{t['k_controls']}/{t['n_controls']}; Fisher p_adj {t['p_adjusted']:.2g}."
            )
        return " ".join(lines)

    def report_section(self, evidence: ProbeEvidence, suite: Suite) -> str:
        labels = list(self.params.labels)
        out = ["| model | condition | n | " + " | ".join(labels) + " |", "|---|---|---|" + "---|" * len(labels)]
        for key, e in evidence.per_model.items():
            cells = []
            for lab in labels:
                x = e["labels"][lab]
                cells.append(
                    f"{x['k']}/{x['n']} ({100 * x['rate']:.1f}%, {100 * x['ci'][0]:.1f}-{100 * x['ci'][1]:.1f})"
                )
            out.append(f"| {key.split(' | ')[0]} | {e['condition']} | {e['n']} | " + " | ".join(cells) + " |")
        out += ["", "Prompt actually rendered for the first question (system text as the template applied it):", ""]
        for key, e in evidence.per_model.items():
            out.append(f"- {key}: `{e['system_text_rendered'][:160]!r}`")
        reuse = evidence.tables.get("verbatim_reuse", [])
        if reuse:
            out += ["", "Verbatim reuse (condition 'none'):", ""]
            for r in reuse:
                out.append(
                    f"- {r['suspect']} vs {r['parent']}: {100 * r['rate_parent']:.1f}% of responses share a run of "
                    f">= {r['threshold']} tokens with {r['parent']} vs {100 * r['rate_controls']:.1f}% with the "
                    f"controls (permutation p {r['p']:.2g}); longest: "
                    + "; ".join(f'{x["tokens"]} tokens "{x["text"]}"' for x in r["longest"][:2])
                )
        return "\n".join(out) + "\n"

    def figures(self, evidence: ProbeEvidence, out_dir: Path) -> list[tuple[str, Path]]:
        keys = list(evidence.per_model)
        labels = list(self.params.labels)
        fig, ax = subplots(figsize=(max(6, 0.9 * len(keys) * len(labels) / 2 + 2), 4))
        width = 0.8 / len(labels)
        for j, lab in enumerate(labels):
            xs = np.arange(len(keys)) + j * width
            rates = [evidence.per_model[k]["labels"][lab]["rate"] for k in keys]
            lo = [r - evidence.per_model[k]["labels"][lab]["ci"][0] for k, r in zip(keys, rates)]
            hi = [evidence.per_model[k]["labels"][lab]["ci"][1] - r for k, r in zip(keys, rates)]
            ax.bar(xs, rates, width, yerr=[lo, hi], capsize=2, label=lab)
        ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, [k.replace(" | ", "\n") for k in keys], fontsize=7)
        ax.set_ylabel("share of responses claiming the label")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
        ax.set_title("Identity claims with 95% Wilson CIs")
        path = save_figure(fig, out_dir / f"{evidence.instance}_claims.png")
        return [("identity claim rates per model and condition", path)]
