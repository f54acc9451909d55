"""``parentage compare RUN_A RUN_B``: the key figures of two runs side by side.

What a user re-runs to check a finding (more texts, another backend, another seed) should move
the numbers inside their intervals and leave the conclusions alone; this table shows whether it
did. It reads each run's evidence.json and run.jsonl only, like the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import case
from harness.analyze import build_probes, suite_of
from harness.evidence import Estimate, ProbeEvidence, load_evidence
from harness.format import fmt_ci
from harness.report import subjects
from harness.runstore import RunStore
from harness.suite import Suite
from probes.base import Probe

# The estimates worth a line of their own (any probe that reports them); every other number
# reaches the comparison through the probes' case sentences.
KEY_ESTIMATES = ("a_hat", "merge_weight", "residual", "nearest_parent_distance", "cv_gain")


@dataclass
class _Run:
    run: RunStore
    suite: Suite
    evidence: dict[str, Any]
    probes: dict[str, Probe]
    evs: dict[str, ProbeEvidence]

    def has(self, names: list[str]) -> bool:
        """Whether this run has the subject that goes by ``names`` at all."""
        return any(n in {m.name for m in self.suite.models} for n in names)

    def cases(self, names: list[str]) -> dict[str, case.ProbeCase]:
        """Each probe's stance on the subject that goes by ``names`` (those this run has)."""
        here = [n for n in names if n in {m.name for m in self.suite.models}]
        if not here:
            return {}
        return {i: c for i, ev in self.evs.items() if (c := self.probes[i].case(ev, here, self.suite)) is not None}


def _open(path: Path) -> _Run:
    run = RunStore.open(path)
    evidence = load_evidence(run.dir / "evidence.json")
    suite = suite_of(run)
    evs = {pe["instance"]: ProbeEvidence.model_validate(pe) for pe in evidence["probes"]}
    return _Run(run, suite, evidence, {p.instance: p for p in build_probes(suite)}, evs)


def compare_runs(path_a: Path, path_b: Path) -> str:
    """Markdown: the two runs, each suspect's conclusion, each probe's verdicts and key estimates."""
    a, b = _open(path_a), _open(path_b)
    out = ["# parentage compare", "", "| | A | B |", "|---|---|---|"]
    for label, get in (
        ("run", lambda r: f"`{r.run.dir}`"),
        ("suite", lambda r: r.suite.name),
        ("analysed", lambda r: r.evidence["created"]),
        ("collection complete", lambda r: "yes" if r.evidence["collection_complete"] else "no (partial)"),
        ("statistics", lambda r: "alpha {alpha}, {bootstrap} replicates, seed {seed}".format(**r.evidence["stats"])),
        ("models", lambda r: ", ".join(f"{m.name} ({m.backend})" for m in r.suite.models)),
    ):
        out.append(f"| {label} | {get(a)} | {get(b)} |")
    out += ["", "## Conclusions", "", "| suspect | A | B | same |", "|---|---|---|---|"]
    subs = {**subjects(b.suite), **subjects(a.suite)}
    for subject, names in subs.items():
        ca, cb = (_conclusion(r, names) for r in (a, b))
        absent = [label for label, r in (("A", a), ("B", b)) if not r.has(names)]
        same = f"n/a (not in {' or '.join(absent)})" if absent else "yes" if ca == cb else "**no**"
        out.append(f"| {subject} | {ca} | {cb} | {same} |")
    shared = [i for i in a.evs if i in b.evs]
    only = sorted(set(a.evs) ^ set(b.evs))
    for inst in shared:
        out += _probe_rows(inst, a.evs[inst], b.evs[inst], a, b, subs)
    if only:
        out += ["", "Probes in one run only: " + ", ".join(f"`{i}`" for i in only) + "."]
    return "\n".join(out) + "\n"


def _conclusion(r: _Run, names: list[str]) -> str:
    cases = list(r.cases(names).values())
    if not r.has(names):
        return "n/a (not in this run)"
    return case.conclude(cases).text if cases else "n/a (no evidence)"


def _probe_rows(
    inst: str, ea: ProbeEvidence, eb: ProbeEvidence, a: _Run, b: _Run, subs: dict[str, list[str]]
) -> list[str]:
    status = f"A: {ea.status}, mode {ea.mode or '-'}; B: {eb.status}, mode {eb.mode or '-'}."
    out = ["", f"## Probe `{inst}`", "", status]
    rows = []
    for m in [x for x in ea.per_model if x in eb.per_model]:
        va, vb = ea.per_model[m].get("verdict"), eb.per_model[m].get("verdict")
        if va is not None or vb is not None:
            rows.append(f"| {m} | verdict | {va} | {vb} | | {'yes' if va == vb else '**no**'} |")
        for name in KEY_ESTIMATES:
            xa, xb = _find(ea, name, m), _find(eb, name, m)
            if xa is None or xb is None or xa.value is None or xb.value is None:
                continue
            overlap = _overlap(xa, xb)
            rows.append(
                f"| {m} | {name} | {fmt_ci(xa)} | {fmt_ci(xb)} | {xb.value - xa.value:+.3f} | "
                f"{'' if overlap is None else 'yes' if overlap else '**no**'} |"
            )
    if rows:
        out += ["", "| model | figure | A | B | B - A | agree |", "|---|---|---|---|---:|---|", *rows]
    for subject, names in subs.items():
        ca, cb = a.cases(names).get(inst), b.cases(names).get(inst)
        if ca or cb:
            out += [
                "",
                f"- {subject}, A: {ca.sentence if ca else 'n/a'}",
                f"- {subject}, B: {cb.sentence if cb else 'n/a'}",
            ]
    return out


def _find(ev: ProbeEvidence, name: str, model: str) -> Estimate | None:
    return next((e for e in ev.estimates if e.name == name and e.model == model), None)


def _overlap(x: Estimate, y: Estimate) -> bool | None:
    """Verdicts agree when equal; estimates 'agree' when their intervals overlap (None: no CI)."""
    if None in (x.ci_low, x.ci_high, y.ci_low, y.ci_high):
        return None
    return bool(x.ci_low <= y.ci_high and y.ci_low <= x.ci_high)  # type: ignore[operator]
