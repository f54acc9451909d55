"""The run log's events (``run.jsonl``), typed: one pydantic model per event.

The report, the methods, the limitations, ``analyze``'s check that nothing was lost and
``parentage compare`` are all rendered from this log, so it has a schema like
``evidence.json``: ``parentage schema run-log`` prints it, and ``run_start`` carries the log's
version (``log_version``; a log of another version is refused, not misread). Readers get
attributes, never raw dicts, and a writer cannot log an event with a missing or misspelt field.
Fields that hold whole documents (the resolved suite, provenance, fingerprints) stay dicts:
their own schemas are the suite's and each backend's.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

RUN_LOG_VERSION = 1


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class EventBase(BaseModel):
    # A misspelt or unknown field is an error when the event is written, not a silent new key.
    model_config = ConfigDict(extra="forbid")
    time: str = Field(default_factory=now)


class RunStart(EventBase):
    """A session began: a new run, or a resumed one (``resumed``); one per session."""

    event: Literal["run_start"] = "run_start"
    log_version: int = RUN_LOG_VERSION
    suite: dict[str, Any] = Field(description="The resolved suite (paths absolute, options validated).")
    suite_file: str = ""
    cache_dir: str = ""
    environment: dict[str, Any] = Field(default_factory=dict, description="Python, packages, git hash, machine.")
    seeds: dict[str, int] = Field(default_factory=dict)
    resumed: bool = False


class ModelLoaded(EventBase):
    event: Literal["model_loaded"] = "model_loaded"
    model: str
    role: str
    fingerprint: dict[str, Any] = Field(description="The backend's fingerprint: path or id, hashes, dtype, versions.")
    capabilities: dict[str, Any]


class ProbeSkipped(EventBase):
    event: Literal["probe_skipped"] = "probe_skipped"
    model: str
    probe: str
    reason: str


class ProbeCollected(EventBase):
    event: Literal["probe_collected"] = "probe_collected"
    model: str
    probe: str
    requests: int = Field(description="This model's whole plan at this stage (stage two's holds stage one's).")
    cache_hits: int
    computed: int
    stage: int = 1


class Screened(EventBase):
    event: Literal["screened"] = "screened"
    probe: str
    screened: list[str]
    kept: list[str]
    why: dict[str, Any] = Field(default_factory=dict)


class ModelBuilt(EventBase):
    """A probe built a model from the suite's (a merge of the parents) to serve and score it."""

    event: Literal["model_built"] = "model_built"
    probe: str
    model: dict[str, Any] = Field(description="Its suite entry (role: rebuild), as the probe's analysis reads it.")
    recipe: dict[str, Any] = Field(description="The mergekit configuration it was built from.")
    seconds: float
    bytes: int
    kept: bool = Field(description="False: deleted once scored.")


class ModelDone(EventBase):
    event: Literal["model_done"] = "model_done"
    model: str
    usage: dict[str, int] = Field(default_factory=dict)


class ModelFailed(EventBase):
    """A model could not be loaded (``model`` set), or a backend failed mid-run (``model`` None:
    the error names it, ``cache_writes`` says what was kept)."""

    event: Literal["model_failed"] = "model_failed"
    model: str | None = None
    error: str
    cache_writes: int | None = None


class RunInterrupted(EventBase):
    event: Literal["run_interrupted"] = "run_interrupted"
    cache_writes: int


class _Totals(EventBase):
    """What a collection sent: requests, answered from the cache, computed."""

    requests: int
    cache_hits: int
    computed: int


class CollectEnd(_Totals):
    event: Literal["collect_end"] = "collect_end"


class Analysis(EventBase):
    event: Literal["analysis"] = "analysis"
    stats: dict[str, Any]
    probes: list[str]
    complete: bool


class RunEnd(_Totals):
    event: Literal["run_end"] = "run_end"


class Repaired(EventBase):
    """A line cut by a kill was moved aside before the next one was written."""

    event: Literal["repaired"] = "repaired"
    file: str
    torn_bytes: int
    kept_in: str


Event = Annotated[
    RunStart
    | ModelLoaded
    | ProbeSkipped
    | ProbeCollected
    | Screened
    | ModelBuilt
    | ModelDone
    | ModelFailed
    | RunInterrupted
    | CollectEnd
    | Analysis
    | RunEnd
    | Repaired,
    Field(discriminator="event"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def run_log_json_schema() -> dict[str, Any]:
    """JSON Schema of one line of ``run.jsonl``."""
    schema = EVENT_ADAPTER.json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"parentage run.jsonl line (log_version {RUN_LOG_VERSION})"
    return schema
