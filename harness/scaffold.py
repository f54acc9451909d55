"""``parentage init``: a first suite, written from a few arguments, commented, valid as written.

Why: a new user has a suspect, two candidate parents and perhaps a few controls, and should not
have to learn the suite format before the first run. The file written here names the schema (an
editor then completes every key), gives each model a role, and shows each probe's key parameters
(``Probe.key_params``) at their defaults with what they do, so changing one needs no guessing.
Probes that need something only the user knows (the identity probe's labels) or suit another
kind of access (the text probe, for API models without log-probs) are written commented out,
with what to fill in.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.suite import MODEL_NAME

SCHEMA = Path(__file__).parent / "schema" / "suite.schema.json"


@dataclass
class Model:
    name: str
    role: str
    path: str


def parse_models(specs: list[str], role: str, taken: set[str]) -> list[Model]:
    """``NAME=PATH`` or a bare ``PATH`` (named after its last part). A local path is made absolute:
    the loader resolves relative paths against the suite file's folder, not the shell's."""
    out = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or "/" in name or not name:
            name, path = "", spec
        local = Path(path).expanduser()
        if local.exists():
            path = str(local.resolve())
        if not name:
            name = re.sub(r"[^A-Za-z0-9_.\-]", "_", Path(path.rstrip("/")).name or "model").lstrip(".") or "model"
        base, k = name, 2
        while name in taken:
            name, k = f"{base}-{k}", k + 1
        if not MODEL_NAME.fullmatch(name):
            raise ValueError(f"{spec!r}: cannot make a model name of it; write NAME=PATH")
        taken.add(name)
        out.append(Model(name, role, path))
    return out


def _value(v: Any) -> str:
    """A YAML flow value (JSON is YAML)."""
    return json.dumps(v, ensure_ascii=False)


def _param_lines(probe: Any, chosen: dict[str, Any], indent: str) -> list[str]:
    """``key: default`` for each key parameter, its description as a comment above it."""
    fields = probe.Params.model_fields
    lines = []
    for key in probe.key_params:
        description = (fields[key].description or "").strip()
        lines += textwrap.wrap(description, 100, initial_indent=f"{indent}# ", subsequent_indent=f"{indent}# ")
        default = fields[key].get_default(call_default_factory=True)
        lines.append(f"{indent}{key}: {_value(chosen.get(key, default))}")
    return lines


def scaffold_suite(
    name: str,
    suspect: list[Model],
    parents: list[Model],
    controls: list[Model],
    backend: str,
    mode: str,
    url: str | None,
    schema_ref: str,
) -> str:
    """The suite's YAML text."""
    from probes import probe_class

    models = [*suspect, *parents, *controls]
    lines = [
        f"# yaml-language-server: $schema={schema_ref}",
        "# Written by `parentage init`. Check it with `parentage validate FILE`, see what it will send with",
        "# `parentage run FILE --estimate`, then run it with `parentage run FILE`.",
        "# Every key: `parentage list` and `parentage list PROBE_OR_BACKEND`, or the README's Parameters.",
        f"name: {name}",
        "models:",
        "  # role: suspect (the model in question), parent (a model it may be made from), control (a model of",
        "  # known, different origin: it calibrates what 'close to the parents' means; more is better)",
    ]
    for m in models:
        lines += [f"  - name: {m.name}", f"    role: {m.role}", f"    backend: {backend}"]
        lines.append(f"    path: {_value(m.path)}")
        if backend == "openai":
            lines.append(f"    options: {{base_url: {_value(url)}}}  # add api_key_env: VAR for a key in $VAR")
        if m.role == "suspect":
            lines.append('    # system_prompt: "..."   # the system prompt it is served with, if known')
    if not controls:
        lines += [
            "  # No controls: the report will say the logit probe is uncalibrated. Add models of known other",
            "  # origin (an unrelated model of the same size, a fine-tune of one parent) as role: control.",
        ]
    logit = probe_class("logit_interpolation")
    lines += [
        "probes:",
        "  # Where the suspect's log-probs sit between the parents' (the main evidence).",
        "  - kind: logit_interpolation",
        "    params:",
        *_param_lines(logit, {"mode": mode}, "      "),
    ]
    if backend in ("hf", "vllm"):
        lines += [
            "  # Whose tokenizer it has: a merge or fine-tune keeps its parents'.",
            "  - kind: tokenizer",
            "    params:",
            *_param_lines(probe_class("tokenizer"), {}, "      "),
        ]
    if backend in ("hf", "vllm") and all(Path(m.path).is_dir() for m in models):
        lines += [
            "  # The weights themselves (local checkpoints): merge weights and family, read tensor by tensor.",
            "  - kind: weights",
            "    params:",
            *_param_lines(probe_class("weights"), {}, "      "),
        ]
    identity = probe_class("identity")
    labels = {m.name: "<label>" for m in parents}
    lines += [
        "  # Whose name it claims. Needs each parent's own identity: a label with the names that mean it.",
        "  # - kind: identity",
        "  #   params:",
        "  #     labels: {<label>: [<Name>, <Organisation>]}",
        f"  #     model_labels: {_value(labels)}",
        *(f"  #{x[1:]}" for x in _param_lines(identity, {}, "      ")),
        "  # From sampled text alone (for API models without log-probs): the parents score its answers.",
        "  # - kind: text_interpolation",
        "  #   params:",
        *(f"  #{x[1:]}" for x in _param_lines(probe_class("text_interpolation"), {}, "      ")),
        "stats:",
        "  alpha: 0.05      # significance level of every test and interval",
        "  bootstrap: 1000  # bootstrap replicates (texts resampled)",
        "  seed: 0",
        "output_dir: results  # runs are written to results/<run-id>/, next to this file",
    ]
    return "\n".join(lines) + "\n"
