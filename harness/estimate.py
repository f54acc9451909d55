"""``parentage run --estimate``: what a run would send, before anything is sent.

Each probe plans its requests for each model exactly as collect will, against the capabilities
the model's backend is expected to offer (``Backend.expected_capabilities``: a server is not
probed, nothing is loaded), so the request counts are those of the run whenever the expected
capabilities are the real ones (``hf``: always). Token counts are upper bounds: the tokens a
score request may score (``max_tokens``) and the new tokens a generation may produce
(``max_new_tokens`` x samples); prompts are counted in characters. Answers already in the cache
are not subtracted (their keys need the loaded model's fingerprint): a resumed or repeated run
sends fewer.

A model a probe stages (``Probe.staged``) gets two rows: stage one and what stage two adds
(planned without stage one's answers: placeholder texts as long as the answers may be). When the
probe shortlists (a screening of a pool), stage two's rows are 'if shortlisted' and not counted:
which models go on is known only after screening; their total is the bound with every one kept.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from harness.backends import backend_class
from harness.backends.base import ModelRef
from harness.suite import Suite
from probes.base import Planned, Probe, Skip


@dataclass
class Row:
    model: str
    backend: str
    probe: str
    requests: int = 0
    score_tokens: int = 0  # at most this many tokens scored
    new_tokens: int = 0  # at most this many tokens generated
    prompt_chars: int = 0
    skipped: str = ""
    # "": planned in full; "screen": a probe's screening stage; "if shortlisted": what a screened
    # model is asked on top if the screening shortlists it (not counted in the totals).
    stage: str = ""


def estimate(suite: Suite, probes: list[Probe]) -> list[Row]:
    rows: list[Row] = []
    for spec in suite.models:
        caps = backend_class(spec.backend).expected_capabilities(ModelRef(spec.name, spec.path, spec.options))
        for probe in probes:
            if not probe.needs_backend or (probe.spec.models is not None and spec.name not in probe.spec.models):
                continue
            row = Row(spec.name, spec.backend, probe.instance)
            if probe.requires and not any(caps.has(c) for c in probe.requires):
                row.skipped = "capability not expected"
                rows.append(row)
                continue
            view = suite.for_probe(probe.spec)
            staged = probe.staged(view, spec)
            first = probe.stage_one_plan(view, spec, caps) if staged else probe.plan(view, spec, caps)
            if isinstance(first, Skip):
                row.skipped = first.reason
                rows.append(row)
                continue
            if not staged:
                rows.append(_count(row, first))
                continue
            second = probe.stage_two_plan(view, spec, caps, None)
            rest = [p for p in second if p not in first] if not isinstance(second, Skip) else []
            rows.append(_count(replace(row, stage="stage 1"), first))
            rows.append(_count(replace(row, stage="if shortlisted" if probe.shortlists else "stage 2"), rest))
    return rows


def _count(row: Row, planned: list[Planned]) -> Row:
    for p in planned:
        cost = p.request.cost()
        row.requests += 1
        row.score_tokens += cost.score_tokens
        row.new_tokens += cost.new_tokens
        row.prompt_chars += cost.prompt_chars
    return row


def totals(rows: list[Row], stage: str | None = None) -> dict[str, Any]:
    """Sums over the rows certain to be sent (``stage`` None), or over the rows of one stage."""
    rows = [r for r in rows if (r.stage != "if shortlisted" if stage is None else r.stage == stage)]
    return {
        "requests": sum(r.requests for r in rows),
        "score_tokens": sum(r.score_tokens for r in rows),
        "new_tokens": sum(r.new_tokens for r in rows),
        "prompt_chars": sum(r.prompt_chars for r in rows),
    }
