"""The suite's types: what a suite file may hold, as pydantic models (``extra="forbid"``).

These are the kernel's view of a suite: probes and backends read them, so this module imports
no registry. Loading a file into them, with file:line errors and each probe's and backend's own
checks, is ``harness.config`` (a driver), which is also where a probe kind is looked up.
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.hub import HubPin

Role = Literal["suspect", "parent", "control", "candidate"]
# The role of a model a probe built and served (the rebuild probe's merges): never in a suite
# file, so not a Role; such a ModelSpec is made with model_construct and lives in the probe's view.
BUILT_ROLE: Any = "rebuild"
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


def expand_env(value: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}``; an unset variable without default is an error."""

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ValueError(f"environment variable {name} is not set and has no default")

    return _ENV.sub(sub, value)


MODEL_NAME = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$")


class ModelSpec(Strict):
    """One model to probe. ``options`` are validated by the chosen backend's own schema."""

    name: str = Field(
        description="Unique name, used in reports and file names (letters, digits, _ - ., not starting with '.'; "
        "at most 100 characters, so every file named after it fits a file system's 255-byte limit).",
        max_length=100,
        json_schema_extra={"pattern": MODEL_NAME.pattern},
    )
    role: Role
    backend: str = Field("hf", description="Backend id; see `parentage list`.")
    path: str | None = Field(
        None,
        description="Local model directory / GGUF file; a Hub id (org/name or hf://org/name: fetched through "
        "huggingface_hub, pinned to a commit); or a model id for API backends.",
    )
    revision: str | None = Field(
        None, description="Hub branch, tag or commit of a `path` (and `tokenizer`) given by Hub id; default main."
    )
    system_prompt: str | None = Field(None, description="The system prompt the model is shipped or served with.")
    tokenizer: str | None = Field(
        None,
        description="Local tokenizer files (model dir, tokenizer.json or GGUF) for white-box checks; "
        "defaults to `path` for local backends. Useful for API models whose tokenizer is published.",
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Backend-specific options.")
    notes: str | None = Field(None, description="Free text, e.g. the claimed lineage. Copied into the report.")
    hub: dict[str, HubPin] = Field(
        default_factory=dict,
        description="Set by the loader, not written by hand: what `path` / `tokenizer` named by Hub id resolved "
        "to (repository, revision asked for, commit). Recorded with the run and shown in the report.",
    )

    @field_validator("name")
    @classmethod
    def _file_safe_name(cls, v: str) -> str:
        if not MODEL_NAME.fullmatch(v):
            raise ValueError(
                f"{v!r}: use letters, digits, '_', '-' and '.', not starting with '.' (it names files in the run)"
            )
        return v


class DataSource(Strict):
    """Where a probe's texts come from: exactly one of ``inline``, ``file``, ``hub``."""

    inline: list[str] | None = None
    file: str | None = Field(None, description="Local .jsonl, .json, .csv or .parquet file, read with `datasets`.")
    hub: str | None = Field(None, description="A `datasets` hub name (needs network access).")
    split: str = "train"
    field: str = Field("text", description="Column holding the text.")
    id_field: str | None = Field(None, description="Column holding a stable id; defaults to the row index.")
    limit: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> DataSource:
        given = [k for k in ("inline", "file", "hub") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of inline, file, hub (got {', '.join(given) or 'none'})")
        return self


class ProbeSpec(Strict):
    """One probe to run. ``params`` are validated by the probe's own schema."""

    kind: str = Field(description="Probe id; see `parentage list`.")
    id: str | None = Field(None, description="Name of this probe instance; defaults to kind.")
    params: dict[str, Any] = Field(default_factory=dict)
    data: DataSource | None = Field(None, description="Override the probe's shipped data.")
    models: list[str] | None = Field(
        None,
        min_length=1,
        description="Run this probe on these models only (default: every model). Lets one suite "
        "hold the same weights behind two backends, e.g. top-k through vLLM and full through hf.",
    )

    @property
    def name(self) -> str:
        return self.id or self.kind


class StatsSpec(Strict):
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level for tests and CIs.")
    bootstrap: int = Field(
        1000,
        ge=50,
        le=100_000,
        description="Cluster-bootstrap replicates (texts are resampled), drawn in blocks of 1,000: "
        "memory does not grow with it.",
    )
    seed: int = Field(0, description="Seed for every numpy Generator used in analysis.")
    correction: Literal["holm", "bh"] = "holm"


class Suite(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    models: list[ModelSpec] = Field(min_length=1)
    probes: list[ProbeSpec] = Field(min_length=1)
    stats: StatsSpec = Field(default_factory=StatsSpec)
    output_dir: str = Field("results", description="Runs are written to OUTPUT_DIR/<run-id>/.")
    cache_dir: str | None = Field(None, description="Response cache; default $PARENTAGE_CACHE or ~/.cache/parentage.")
    schedule: Literal["sequential"] = Field(
        "sequential", description="Models are loaded one at a time: load, run every probe, free."
    )

    @model_validator(mode="after")
    def _roles(self) -> Suite:
        if not any(m.role == "suspect" for m in self.models):
            raise ValueError("a suite needs at least one model with role: suspect")
        return self

    def by_role(self, role: Role) -> list[ModelSpec]:
        return [m for m in self.models if m.role == role]

    def model(self, name: str) -> ModelSpec:
        return next(m for m in self.models if m.name == name)

    def for_probe(self, spec: ProbeSpec) -> Suite:
        """The suite as one probe sees it: only the models its ``models:`` list names. Planning,
        pre-flight, analysis and the report all read this view, so a probe never meets a model
        it was not asked to run on."""
        if spec.models is None:
            return self
        return self.model_copy(update={"models": [m for m in self.models if m.name in spec.models]})


def suite_json_schema() -> dict[str, Any]:
    """The suite's own JSON Schema; probe params and backend options are open dicts here (the
    kernel cannot see the registries): ``config.full_suite_json_schema`` fills them in."""
    schema = Suite.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "parentage suite"
    return schema
