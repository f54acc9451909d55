"""Evidence as stored in ``evidence.json``: numbers with their intervals, per probe.

Shared by every probe (which produces it), by analysis (which saves it) and by the report
(which reads it), so it lives in the core rather than with any one probe.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, Field, ValidationError

from harness.errors import InputError

R = TypeVar("R", bound=BaseModel)

# A number that can be undefined (NaN in analysis: e.g. no CV gain against a copy). JSON has no NaN,
# so evidence.json stores null; reading it back gives NaN again, and a probe's typed result
# (``Probe.Result``) sees one type.
Number = Annotated[float, BeforeValidator(lambda v: math.nan if v is None else v)]

# Version of evidence.json's layout. Bumped when a field is renamed or changes meaning (2: the
# logit probe's per-model results became typed, intervals nested; 3: the weights probe's copy
# check became beyond_conversion, with its departure test and storage); reading a file of another
# version is refused with the command that regenerates it (the raw answers are in
# the cache, so analysis is cheap and exact to repeat).
EVIDENCE_SCHEMA_VERSION = 3


class Interval(BaseModel):
    """A point estimate and its interval, at the evidence's ``ci_level``; None where undefined."""

    value: float | None
    lo: float | None = None
    hi: float | None = None

    def finite(self) -> bool:
        return all(x is not None and math.isfinite(x) for x in (self.value, self.lo, self.hi))

    def text(self, digits: int = 3) -> str:
        """'0.571 [0.564, 0.577]'; 'n/a' for an undefined part."""

        def f(x: float | None) -> str:
            return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"

        return f"{f(self.value)} [{f(self.lo)}, {f(self.hi)}]"


class Estimate(BaseModel):
    """A number as reported: always with its interval and how it was obtained."""

    name: str
    model: str
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    ci_level: float = 0.95
    p_value: float | None = None
    p_adjusted: float | None = None
    null: str | None = Field(None, description="The null hypothesis the p-value tests.")
    n: int = Field(0, description="Number of independent units (texts) behind the number.")
    method: str = ""


class ProbeEvidence(BaseModel):
    """Everything ``analyze`` concludes, as stored in evidence.json (schema versioned there)."""

    probe: str
    instance: str
    version: str
    status: Literal["ok", "skipped", "failed"] = "ok"
    reason: str | None = None
    mode: str | None = None
    summary: str = ""
    calibrated: bool | None = None
    ci_level: float = Field(0.95, description="Level of every interval in this evidence (1 - the suite's alpha).")
    estimates: list[Estimate] = Field(default_factory=list)
    per_model: dict[str, dict[str, Any]] = Field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = Field(default_factory=dict, description="Probe-specific tables.")
    notes: list[str] = Field(default_factory=list)
    limitations: list[str] = Field(
        default_factory=list,
        description="What this probe's data could not show however the models behaved (a test that cannot reach "
        "alpha on so few texts): listed under the report's Limitations.",
    )

    def estimate(self, name: str, model: str) -> Estimate:
        return next(e for e in self.estimates if e.name == name and e.model == model)

    def results(self, result_type: type[R]) -> dict[str, R]:
        """The ``per_model`` entries read through the probe's typed result (``Probe.Result``), in
        order: the rule, case and report read attributes, so a renamed field fails here, loudly."""
        return {m: result_type.model_validate(e) for m, e in self.per_model.items()}


class ModelInfo(BaseModel):
    role: str
    backend: str
    notes: str | None = None


class EvidenceFile(BaseModel):
    """The whole of evidence.json; ``harness/schema/evidence.schema.json`` is its JSON Schema."""

    schema_version: Literal[3] = Field(description="Layout version of this file (EVIDENCE_SCHEMA_VERSION).")
    run_id: str
    suite: str
    created: str = Field(description="When the analysis ran (UTC, ISO 8601).")
    collection_complete: bool = Field(description="False for a partial run: numbers rest on what was collected.")
    stats: dict[str, Any] = Field(description="The statistics settings the analysis used (alpha, bootstrap, seed).")
    models: dict[str, ModelInfo]
    probes: list[ProbeEvidence]


def load_evidence(path: Path) -> dict[str, Any]:
    """Read and validate evidence.json; a file of another schema version, or not evidence at all,
    is refused with what to do instead of failing later on a missing key."""
    if not path.exists():
        raise InputError(f"{path.parent}: no evidence.json; run `parentage analyze {path.parent}` first")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        again = f"re-create it with `parentage analyze {path.parent}`"
        raise InputError(f"{path}: not readable as JSON ({e}); {again}") from None
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if version != EVIDENCE_SCHEMA_VERSION:
        raise InputError(
            f"{path}: evidence schema version {version!r}, this parentage reads version {EVIDENCE_SCHEMA_VERSION}; "
            f"re-create it from the cached answers with `parentage analyze {path.parent}`"
        )
    try:
        return EvidenceFile.model_validate(raw).model_dump(mode="json")
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise InputError(f"{path}: {where}: {first['msg']} (not a valid evidence.json)") from None
