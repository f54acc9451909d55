"""Evidence as stored in ``evidence.json``: numbers with their intervals, per probe.

Shared by every probe (which produces it), by analysis (which saves it) and by the report
(which reads it), so it lives in the core rather than with any one probe.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


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

    def estimate(self, name: str, model: str) -> Estimate:
        return next(e for e in self.estimates if e.name == name and e.model == model)
