"""Loading a suite file: validation with file:line error locations (a driver).

The suite's types are ``harness.suite``. Loading collects *every* problem (syntax, unknown
keys, wrong types, unknown probes, missing paths, duplicate names) and reports each as
``file:line: field: message`` so a user fixes them in one pass. Relative paths in a suite are
resolved against the suite file's directory, and ``${VAR}`` / ``${VAR:-default}`` in paths are
expanded from the environment. Reading the file itself (line numbers, duplicate keys, alias
bombs) is ``harness.yaml_lines``; each backend checks its own options (``Backend.check_spec``)
and each probe its own params and pre-flight (``Probe.preflight``), found through the two
registries: this module is where a probe or backend kind is looked up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from harness import hub
from harness.backends import BACKENDS, backend_class
from harness.backends.base import ModelRef
from harness.errors import InputError, Problem
from harness.hub import HubPin
from harness.suite import ModelSpec, ProbeSpec, Suite, expand_env
from harness.yaml_lines import format_loc, line_for, problems_from, read_yaml
from probes import PROBES, probe_class


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
    # Every problem in one pass: an unset variable, a schema error, a missing suspect and a bad path
    # elsewhere in the file are all reported together (a field whose variable is unset is left
    # out of the later checks, which would only repeat it).
    env_problems: list[Problem] = []
    data = _expand_all(
        data, (), lambda loc, msg: env_problems.append(Problem(file, line_for(lines, loc), format_loc(loc), msg))
    )
    unset = {p.field for p in env_problems}

    def all_of(found: list[Problem]) -> InputError:  # in the file's order
        every = env_problems + [p for p in found if p.field not in unset]
        return InputError(sorted(every, key=lambda p: p.line or 0))

    try:
        suite = Suite.model_validate(data)
    except ValidationError as e:
        top = problems_from(e, file, lines, model=Suite)
        top += _missing_suspect(data, file, lines, top)
        raise all_of(top + _entry_problems(data, file, lines, path.resolve().parent, top)) from None

    problems: list[Problem] = []
    base = path.resolve().parent
    for i, raw in enumerate(data.get("models") or []):
        if isinstance(raw, dict) and "hub" in raw:  # the loader's record of what an id resolved to
            loc = ("models", i, "hub")
            message = "is set by the loader, not written: name the model by Hub id in `path` and pin it with `revision`"
            problems.append(Problem(file, line_for(lines, loc), format_loc(loc), message))

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
        names_hub = any(hub.repo_id(v, base) for v in (m.path, m.tokenizer) if v)
        problems += _check_backend(m, i, file, lines, base)
        hub_id, problem = _resolve_hub(m, "tokenizer", base) if m.tokenizer is not None else (False, None)
        if problem:
            problems.append(Problem(file, *where("models", i, "tokenizer"), problem))
        elif m.tokenizer is not None and not hub_id:
            resolve_field(m, "tokenizer", "models", i)
            if not Path(m.tokenizer).exists():
                problems.append(Problem(file, *where("models", i, "tokenizer"), f"no such file: {m.tokenizer}"))
        if m.revision is not None and not names_hub:
            message = "applies to a `path` or `tokenizer` given by Hub id only"
            problems.append(Problem(file, *where("models", i, "revision"), message))
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
    if problems or env_problems:
        raise all_of(problems)
    return suite


def _missing_suspect(data: dict, file: str, lines: dict, reported: list[Problem]) -> list[Problem]:
    """The suite's own rule (a suspect is needed) runs only once every field validates; say it in
    the same pass when the models' roles show it already."""
    models = data.get("models")
    if not isinstance(models, list) or any(isinstance(m, dict) and m.get("role") == "suspect" for m in models):
        return []
    message = "a suite needs at least one model with role: suspect"
    if any(message in p.message for p in reported):
        return []
    return [Problem(file, line_for(lines, ("models",)), "models", message)]


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
        return problems_from(e, file, lines, (*loc, "options"), cls.Options)
    problems: list[Problem] = []
    hub_problem = None
    if m.path is not None and cls.local_path != "never":
        try:
            resolved = _resolve(base, m.path)
            hub_id, hub_problem = (False, None) if Path(resolved).exists() else _resolve_hub(m, "path", base)
            if hub_problem:  # reported, and the backend's other checks still run (one pass, every problem)
                problems.append(Problem(file, line_for(lines, (*loc, "path")), format_loc((*loc, "path")), hub_problem))
            if not hub_id and (cls.local_path == "always" or Path(resolved).exists()):
                m.path = resolved
        except ValueError as e:
            return [Problem(file, line_for(lines, (*loc, "path")), format_loc((*loc, "path")), str(e))]
    # A Hub id not downloaded (online: `run` fetches it; offline: reported above): its files wait.
    pending = bool(hub_problem) or ("path" in m.hub and m.hub["path"].commit is None)
    try:
        cls.check_spec(ModelRef(m.name, m.path, m.options, hub_pending=pending))
    except ValueError as e:
        # "options.device: ..." names its field; anything else is about the model's path.
        head, sep, rest = str(e).partition(": ")
        field = (*loc, "options", head.removeprefix("options.")) if sep and head.startswith("options.") else None
        where_loc = field or (*loc, "path")
        problems.append(Problem(file, line_for(lines, where_loc), format_loc(where_loc), rest if field else str(e)))
    return problems


def _resolve_hub(m: ModelSpec, attr: Literal["path", "tokenizer"], base: Path) -> tuple[bool, str | None]:
    """If ``m.<attr>`` names a Hub id, resolve it from the local Hub cache: the attribute becomes
    the snapshot directory and ``m.hub[attr]`` the pin. Returns whether it names a Hub id, and
    why it cannot be used (offline and not cached; a snapshot without the files needed). Online
    and not cached, the pin is recorded without a commit and ``fetch_hub_models`` downloads it
    when the suite is run."""
    value = getattr(m, attr)
    rid = hub.repo_id(value, base)
    if rid is None:
        return False, None
    files: hub.Need = "model" if attr == "path" else "tokenizer"
    pin = HubPin(repo_id=rid, revision=m.revision or "main", commit=None, files=files)
    folder = hub.cached(pin)
    if folder is None and hub.offline():
        return True, hub.missing_message(value, pin, base)
    if folder is not None:
        problem = hub.check_snapshot(folder, files)
        if problem:
            return True, f"{rid} at {pin.revision}: {problem}"
        pin.commit = folder.name
        setattr(m, attr, str(folder))
    m.hub[attr] = pin
    return True, None


def fetch_hub_models(suite: Suite) -> list[HubPin]:
    """Download every Hub model of the suite that the cache lacks (huggingface_hub's progress
    bars), point its ``path`` / ``tokenizer`` at the snapshot and pin the commit. Returns the
    pins fetched."""
    fetched = []
    for m in suite.models:
        for attr, pin in m.hub.items():
            if pin.commit is None:
                folder = hub.fetch(pin)
                pin.commit = folder.name
                setattr(m, attr, str(folder))
                fetched.append(pin)
    return fetched


def _check_probe(p: ProbeSpec, i: int, file: str, lines: dict, base: Path) -> list[Problem]:
    """Look the probe's kind up in the registry, validate params with its schema; resolve and
    check the params it declares as paths."""
    if p.kind not in PROBES:
        loc = ("probes", i, "kind")
        return [
            Problem(
                file, line_for(lines, loc), format_loc(loc), f"unknown probe '{p.kind}'; known: {', '.join(PROBES)}"
            )
        ]
    cls = probe_class(p.kind)
    try:
        p.params = cls.Params.model_validate(p.params).model_dump()
    except ValidationError as e:
        return problems_from(e, file, lines, ("probes", i, "params"), cls.Params)
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


def full_suite_json_schema() -> dict[str, Any]:
    """The suite's JSON Schema with every probe's ``params`` and every backend's ``options`` in it
    (descriptions, defaults, bounds), so an editor completes and checks them: ``kind: identity``
    selects the identity probe's params, ``backend: vllm`` the vLLM options (no ``backend``: hf's).
    Built here, not in ``harness/suite.py``: the suite's types are kernel and cannot see the
    registries; this module already looks probes and backends up."""
    from harness.suite import suite_json_schema

    schema = suite_json_schema()
    defs = schema["$defs"]

    def inline(model: Any, prefix: str) -> dict[str, Any]:
        sub = model.model_json_schema(ref_template="#/$defs/" + prefix + "{model}")
        for name, d in sub.pop("$defs", {}).items():
            defs[prefix + name] = d
        return sub

    probe_rules = []
    for name in PROBES:
        params = inline(probe_class(name).Params, f"{name}.")
        probe_rules.append(
            {
                "if": {"properties": {"kind": {"const": name}}, "required": ["kind"]},
                "then": {"properties": {"params": params}},
            }
        )
    defs["ProbeSpec"]["properties"]["kind"]["enum"] = list(PROBES)
    defs["ProbeSpec"]["allOf"] = probe_rules
    backend_rules = []
    available = []
    for name in BACKENDS:
        try:
            options = backend_class(name).Options
        except ImportError:  # an optional extra that is not installed: its options stay open
            continue
        available.append(name)
        # hf is the default: its rule also applies where `backend` is left out
        when: dict[str, Any] = {"properties": {"backend": {"const": name}}}
        if name != ModelSpec.model_fields["backend"].default:
            when["required"] = ["backend"]
        backend_rules.append({"if": when, "then": {"properties": {"options": inline(options, f"{name}.")}}})
    defs["ModelSpec"]["properties"]["backend"]["enum"] = available
    defs["ModelSpec"]["allOf"] = backend_rules
    return schema
