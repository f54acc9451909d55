"""Suite schema (pydantic, ``extra="forbid"``) and loading with file:line error locations.

A suite is a YAML file naming models, probes, data sources and statistics settings. Loading
collects *every* problem (syntax, unknown keys, wrong types, unknown probes, missing paths,
duplicate names) and reports each as ``file:line: field: message`` so a user fixes them in one
pass. Relative paths in a suite are resolved against the suite file's directory, and
``${VAR}`` / ``${VAR:-default}`` in paths are expanded from the environment.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import InputError, Problem

Role = Literal["suspect", "parent", "control"]
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
        description="Unique name, used in reports and file names (letters, digits, _ - ., not starting with '.').",
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

    @field_validator("kind")
    @classmethod
    def _known(cls, v: str) -> str:
        from probes import PROBES

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
        description="Cluster-bootstrap replicates (texts are resampled), drawn in blocks of 1,000: memory does not grow with it.",
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


# ---------------------------------------------------------------- YAML with line numbers


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loader that rejects duplicate mapping keys instead of silently keeping the last.
    libyaml's C parser when PyYAML has it: the pure-Python scanner takes minutes on a
    12 MB suite (a large inline data list)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}' (first on line {seen[key]})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line_index(node: yaml.Node | None, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map each path (keys and list indices) to the 1-based line where it starts."""
    out = {} if out is None else out
    if node is None:
        return out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            p = (*path, k.value)
            out[p] = k.start_mark.line + 1
            _line_index(v, p, out)
            if isinstance(v, yaml.MappingNode | yaml.SequenceNode):
                out[(*p, "__value__")] = v.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out[(*path, i)] = v.start_mark.line + 1
            _line_index(v, (*path, i), out)
    return out


def format_loc(loc: tuple) -> str:
    """('probes', 2, 'kind') -> 'probes[2].kind'."""
    s = ""
    for part in loc:
        s += f"[{part}]" if isinstance(part, int) else (f".{part}" if s else str(part))
    return s


def _line_for(lines: dict[tuple, int], loc: tuple) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _problems_from(err: ValidationError, file: str, lines: dict[tuple, int], prefix: tuple = ()) -> list[Problem]:
    out = []
    for e in err.errors():
        loc = prefix + tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = f"unknown key '{loc[-1]}'"
        out.append(Problem(file, _line_for(lines, loc), format_loc(loc), msg))
    return out


# A suite is at most a few thousand values; aliases (`*anchor`) can make a small file expand
# exponentially ("billion laughs"), which would exhaust memory long before any error.
MAX_YAML_NODES = 1_000_000


def _expanded_size(root: yaml.Node) -> int:
    """How many values the document holds once every alias is expanded, computed on the
    composed graph (where an alias is a shared node) in time linear in its size."""
    memo: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) in memo:
            return memo[id(node)]
        memo[id(node)] = 1  # cycles (recursive anchors) count once
        if isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(v) for v in node.value)
        else:
            total = 1
        memo[id(node)] = min(total, MAX_YAML_NODES + 1)
        return memo[id(node)]

    return size(root)


def read_yaml(path: Path) -> tuple[Any, dict[tuple, int]]:
    """Parse YAML, returning the data and a path->line index. Syntax errors name the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError([Problem(str(path), None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError([Problem(str(path), None, "", f"cannot read: {e}")]) from None
    loader = _UniqueKeyLoader(text)
    try:  # parsed once: the composed graph gives the line index, the alias check and the data
        node = loader.get_single_node()
        if node is not None and _expanded_size(node) > MAX_YAML_NODES:
            raise InputError(
                [
                    Problem(
                        str(path),
                        None,
                        "",
                        f"aliases expand this document to over {MAX_YAML_NODES:,} values; refused (a YAML alias bomb?)",
                    )
                ]
            )
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line = mark.line + 1 if mark else None
        reason = getattr(e, "problem", None) or str(e)
        raise InputError([Problem(str(path), line, "", f"invalid YAML: {reason}")]) from None
    finally:
        loader.dispose()
    return data, _line_index(node)


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
        data, (), lambda loc, msg: env_problems.append(Problem(file, _line_for(lines, loc), format_loc(loc), msg))
    )
    if env_problems:
        raise InputError(env_problems)
    try:
        suite = Suite.model_validate(data)
    except ValidationError as e:
        top = _problems_from(e, file, lines)
        raise InputError(top + _entry_problems(data, file, lines, path.resolve().parent, top)) from None

    problems: list[Problem] = []
    base = path.resolve().parent

    def where(*loc: Any) -> tuple[int | None, str]:
        return _line_for(lines, loc), format_loc(loc)

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
    for key, spec_type, check in (("models", ModelSpec, _check_backend), ("probes", ProbeSpec, _check_probe)):
        entries = data.get(key)
        for i, raw in enumerate(entries if isinstance(entries, list) else []):
            if any(f == f"{key}[{i}]" or f.startswith(f"{key}[{i}].") for f in fields):
                continue
            try:
                spec = spec_type.model_validate(raw)
            except ValidationError:
                continue
            out += check(spec, i, file, lines, base)
    return out


def _preflight(suite: Suite, file: str, lines: dict, reported: set[str]) -> list[Problem]:
    """Each probe's own pre-flight checks (see ``Probe.preflight``), for probes whose
    parameters are valid; reported in the same pass as every other problem."""
    from probes import probe_class

    problems = []
    for i, p in enumerate(suite.probes):
        if any(loc.startswith(f"probes[{i}]") for loc in reported):
            continue
        for loc, message in probe_class(p.kind)(p).preflight(suite):
            full = ("probes", i, "params", *loc) if loc else ("probes", i)
            problems.append(Problem(file, _line_for(lines, full), format_loc(full), message))
    return problems


def _check_backend(m: ModelSpec, i: int, file: str, lines: dict, base: Path) -> list[Problem]:
    from harness.backends import BACKENDS, backend_class

    loc = ("models", i)
    if m.backend not in BACKENDS:
        return [
            Problem(
                file,
                _line_for(lines, (*loc, "backend")),
                format_loc((*loc, "backend")),
                f"unknown backend '{m.backend}'; known: {', '.join(BACKENDS)}",
            )
        ]
    cls = backend_class(m.backend)
    try:
        m.options = cls.Options.model_validate(m.options).model_dump()
    except ValidationError as e:
        return _problems_from(e, file, lines, (*loc, "options"))
    if m.path is not None and cls.local_path != "never":
        try:
            resolved = _resolve(base, m.path)
            if cls.local_path == "always" or Path(resolved).exists():
                m.path = resolved
        except ValueError as e:
            return [Problem(file, _line_for(lines, (*loc, "path")), format_loc((*loc, "path")), str(e))]
    try:
        cls.check_spec(m)
    except ValueError as e:
        # "options.device: ..." names its field; anything else is about the model's path.
        head, sep, rest = str(e).partition(": ")
        field = (*loc, "options", head.removeprefix("options.")) if sep and head.startswith("options.") else None
        where_loc = field or (*loc, "path")
        return [Problem(file, _line_for(lines, where_loc), format_loc(where_loc), rest if field else str(e))]
    return []


def _check_probe(p: ProbeSpec, i: int, file: str, lines: dict, base: Path) -> list[Problem]:
    """Validate params with the probe's schema; resolve and check the params it declares as paths."""
    from probes import probe_class

    cls = probe_class(p.kind)
    try:
        p.params = cls.Params.model_validate(p.params).model_dump()
    except ValidationError as e:
        return _problems_from(e, file, lines, ("probes", i, "params"))
    problems = []
    for name in cls.path_params:
        value = p.params.get(name)
        entries = value if isinstance(value, dict) else {None: value} if value is not None else {}
        for key, raw in entries.items():
            loc = ("probes", i, "params", name) + ((key,) if key is not None else ())
            resolved = _resolve(base, raw)
            if not Path(resolved).exists():
                problems.append(Problem(file, _line_for(lines, loc), format_loc(loc), f"no such file: {resolved}"))
            if key is None:
                p.params[name] = resolved
            else:
                value[key] = resolved
    return problems


def suite_json_schema() -> dict[str, Any]:
    """JSON Schema for editors (yaml-language-server). Probe and backend params are open dicts here."""
    schema = Suite.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "parentage suite"
    return schema
