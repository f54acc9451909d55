"""Suite schema (pydantic, ``extra="forbid"``) and loading with file:line error locations.

A suite is a YAML file naming models, probes, data sources and statistics settings. Loading
collects *every* problem (syntax, unknown keys, wrong types, unknown probes, missing paths,
duplicate names) and reports each as ``file:line: field: message`` so a user fixes them in one
pass. Relative paths in a suite are resolved against the suite file's directory, and
``${VAR}`` / ``${VAR:-default}`` in paths are expanded from the environment. Reading the
file itself (line numbers, duplicate keys, alias bombs) is ``harness.yaml_lines``; each
backend checks its own options (``Backend.check_spec``) and each probe its own params and
pre-flight (``Probe.preflight``), found through the two registries.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.backends import BACKENDS, backend_class
from harness.backends.base import ModelRef
from harness.errors import InputError, Problem
from harness.yaml_lines import format_loc, line_for, problems_from, read_yaml
from probes import PROBES, probe_class

Role = Literal["suspect", "parent", "control", "candidate"]
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
    path: str | None = Field(None, description="Local model directory / GGUF file, or a model id for API backends.")
    system_prompt: str | None = Field(None, description="The system prompt the model is shipped or served with.")
    tokenizer: str | None = Field(
        None,
        description="Local tokenizer files (model dir, tokenizer.json or GGUF) for white-box checks; "
        "defaults to `path` for local backends. Useful for API models whose tokenizer is published.",
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Backend-specific options.")
    notes: str | None = Field(None, description="Free text, e.g. the claimed lineage. Copied into the report.")

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

    @field_validator("kind")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in PROBES:
            raise ValueError(f"unknown probe '{v}'; known: {', '.join(PROBES)}")
        return v

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


def _expand_all(value: Any, loc: tuple, problem: Any) -> Any:
    """``${VAR:-default}`` in every string of the suite (model ids, URLs, paths); API keys are
    never written in a suite, only the *name* of their variable, so nothing secret is expanded."""
    if isinstance(value, str):
        try:
            return expand_env(value)
        except ValueError as e:
            problem(loc, str(e))
            return value
    if isinstance(value, dict):
        return {k: _expand_all(v, (*loc, k), problem) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_all(v, (*loc, i), problem) for i, v in enumerate(value)]
    return value


def _resolve(base: Path, value: str) -> str:
    p = Path(expand_env(value)).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def load_suite(path: str | Path) -> Suite:
    """Load, validate and resolve a suite. Raises InputError listing every problem found."""
    path = Path(path)
    file = str(path)
    data, lines = read_yaml(path)
    if not isinstance(data, dict):
        raise InputError([Problem(file, 1, "", "a suite must be a YAML mapping (name:, models:, probes:, ...)")])
    env_problems: list[Problem] = []
    data = _expand_all(
        data, (), lambda loc, msg: env_problems.append(Problem(file, line_for(lines, loc), format_loc(loc), msg))
    )
    if env_problems:
        raise InputError(env_problems)
    try:
        suite = Suite.model_validate(data)
    except ValidationError as e:
        top = problems_from(e, file, lines)
        raise InputError(top + _entry_problems(data, file, lines, path.resolve().parent, top)) from None

    problems: list[Problem] = []
    base = path.resolve().parent

    def where(*loc: Any) -> tuple[int | None, str]:
        return line_for(lines, loc), format_loc(loc)

    def resolve_field(obj: Any, attr: str, *loc: Any) -> None:
        value = getattr(obj, attr)
        if value is None:
            return
        try:
            setattr(obj, attr, _resolve(base, value))
        except ValueError as e:
            problems.append(Problem(file, *where(*loc, attr), str(e)))

    seen: dict[str, int] = {}
    for i, m in enumerate(suite.models):
        if m.name in seen:
            problems.append(
                Problem(
                    file, *where("models", i, "name"), f"duplicate model name '{m.name}' (also models[{seen[m.name]}])"
                )
            )
        seen.setdefault(m.name, i)
        problems += _check_backend(m, i, file, lines, base)
        resolve_field(m, "tokenizer", "models", i)
        if m.tokenizer is not None and not Path(m.tokenizer).exists():
            problems.append(Problem(file, *where("models", i, "tokenizer"), f"no such file: {m.tokenizer}"))
    for i, p in enumerate(suite.probes):
        problems += _check_probe(p, i, file, lines, base)
        if p.data is not None and p.data.file is not None:
            resolve_field(p.data, "file", "probes", i, "data")
            if not Path(p.data.file).exists():
                problems.append(Problem(file, *where("probes", i, "data", "file"), f"no such file: {p.data.file}"))
            else:
                from harness.data import check_data_file

                try:
                    check_data_file(Path(p.data.file), p.data.field)
                except InputError as e:
                    problems.append(Problem(file, *where("probes", i, "data", "file"), str(e)))
    problems += _preflight(suite, file, lines, {p.field for p in problems})
    names = [p.name for p in suite.probes]
    for i, n in enumerate(names):
        if n in names[:i]:
            problems.append(
                Problem(file, *where("probes", i), f"duplicate probe id '{n}'; give each probe a distinct id")
            )
    resolve_field(suite, "output_dir")
    resolve_field(suite, "cache_dir")
    if problems:
        raise InputError(problems)
    return suite


def _entry_problems(data: dict, file: str, lines: dict, base: Path, reported: list[Problem]) -> list[Problem]:
    """When the suite as a whole does not validate, still check each model's options and each
    probe's params on their own, so one pass reports every problem."""
    fields = {p.field for p in reported}
    out: list[Problem] = []

    def valid_entries(key: str) -> list[tuple[int, Any]]:
        entries = data.get(key)
        return [
            (i, raw)
            for i, raw in enumerate(entries if isinstance(entries, list) else [])
            if not any(f == f"{key}[{i}]" or f.startswith(f"{key}[{i}].") for f in fields)
        ]

    for i, raw in valid_entries("models"):
        try:
            out += _check_backend(ModelSpec.model_validate(raw), i, file, lines, base)
        except ValidationError:
            continue
    for i, raw in valid_entries("probes"):
        try:
            out += _check_probe(ProbeSpec.model_validate(raw), i, file, lines, base)
        except ValidationError:
            continue
    return out


def _preflight(suite: Suite, file: str, lines: dict, reported: set[str]) -> list[Problem]:
    """Each probe's own pre-flight checks (see ``Probe.preflight``), for probes whose
    parameters are valid; reported in the same pass as every other problem."""
    problems = []
    names = {m.name for m in suite.models}
    for i, p in enumerate(suite.probes):
        if any(loc.startswith(f"probes[{i}]") for loc in reported):
            continue
        unknown = [(j, n) for j, n in enumerate(p.models or []) if n not in names]
        for j, n in unknown:
            loc = ("probes", i, "models", j)
            problems.append(Problem(file, line_for(lines, loc), format_loc(loc), f"no model named '{n}' in this suite"))
        if unknown:
            continue
        for loc, message in probe_class(p.kind)(p).preflight(suite.for_probe(p)):
            full = ("probes", i, "params", *loc) if loc else ("probes", i)
            problems.append(Problem(file, line_for(lines, full), format_loc(full), message))
    return problems


def _check_backend(m: ModelSpec, i: int, file: str, lines: dict, base: Path) -> list[Problem]:
    loc = ("models", i)
    if m.backend not in BACKENDS:
        return [
            Problem(
                file,
                line_for(lines, (*loc, "backend")),
                format_loc((*loc, "backend")),
                f"unknown backend '{m.backend}'; known: {', '.join(BACKENDS)}",
            )
        ]
    cls = backend_class(m.backend)
    try:
        m.options = cls.Options.model_validate(m.options).model_dump()
    except ValidationError as e:
        return problems_from(e, file, lines, (*loc, "options"))
    if m.path is not None and cls.local_path != "never":
        try:
            resolved = _resolve(base, m.path)
            if cls.local_path == "always" or Path(resolved).exists():
                m.path = resolved
        except ValueError as e:
            return [Problem(file, line_for(lines, (*loc, "path")), format_loc((*loc, "path")), str(e))]
    try:
        cls.check_spec(ModelRef(m.name, m.path, m.options))
    except ValueError as e:
        # "options.device: ..." names its field; anything else is about the model's path.
        head, sep, rest = str(e).partition(": ")
        field = (*loc, "options", head.removeprefix("options.")) if sep and head.startswith("options.") else None
        where_loc = field or (*loc, "path")
        return [Problem(file, line_for(lines, where_loc), format_loc(where_loc), rest if field else str(e))]
    return []


def _check_probe(p: ProbeSpec, i: int, file: str, lines: dict, base: Path) -> list[Problem]:
    """Validate params with the probe's schema; resolve and check the params it declares as paths."""
    cls = probe_class(p.kind)
    try:
        p.params = cls.Params.model_validate(p.params).model_dump()
    except ValidationError as e:
        return problems_from(e, file, lines, ("probes", i, "params"))
    problems = []
    for name in cls.path_params:
        value = p.params.get(name)
        if value is None:
            continue
        entries: dict[Any, Any] = value if isinstance(value, dict) else {None: value}
        for key, raw in entries.items():
            loc = ("probes", i, "params", name) + ((key,) if key is not None else ())
            resolved = _resolve(base, raw)
            if not Path(resolved).exists():
                problems.append(Problem(file, line_for(lines, loc), format_loc(loc), f"no such file: {resolved}"))
            if key is None:
                p.params[name] = resolved
            else:
                entries[key] = resolved
    return problems


def suite_json_schema() -> dict[str, Any]:
    """JSON Schema for editors (yaml-language-server). Probe and backend params are open dicts here."""
    schema = Suite.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "parentage suite"
    return schema
