"""The weights probe's parameters (``params:`` of a ``weights`` probe in a suite), read by
pre-flight (``probe.py``) and analysis (``analysis.py``) alike."""

from __future__ import annotations

from pydantic import Field

from probes.base import ProbeParams


class WeightsParams(ProbeParams):
    base: str | None = Field(None, description="Checkpoint of the parents' shared base (a directory).")
    reference: str | None = Field(None, description="Without a base: the parent differences are taken from.")
    paths: dict[str, str] = Field(
        default_factory=dict, description="Checkpoint directory per model, where its `path` is not one (API models)."
    )
    workers: int | None = Field(
        None,
        ge=1,
        description="Threads reading tensors and computing their statistics (default: one per core, at most 8).",
    )
    sample: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Sampled mode: read this share of each tensor (blocks at random places, seeded by stats.seed) "
        "instead of all of it; the CIs then include the sample's own variation. 0.02 reads about 2% of the bytes: "
        "minutes for a 397B checkpoint instead of hours. None: read everything.",
    )
