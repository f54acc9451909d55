"""YAML with line numbers: parse a suite once, map every field to its line, and turn pydantic
errors into ``file:line: field: message`` problems.

Kept apart from the schema (``harness.config``) because it is about the file, not the suite:
duplicate keys, alias bombs and syntax errors are refused here, before any field is read.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ValidationError

from harness.errors import InputError, Problem

if TYPE_CHECKING:
    _BaseLoader = yaml.SafeLoader
else:  # libyaml's C loader when PyYAML was built with it (same interface)
    _BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_BaseLoader):
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
                value_key = (*p, "__value__")
                out[value_key] = v.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            item = (*path, i)
            out[item] = v.start_mark.line + 1
            _line_index(v, item, out)
    return out


def format_loc(loc: tuple) -> str:
    """('probes', 2, 'kind') -> 'probes[2].kind'."""
    s = ""
    for part in loc:
        s += f"[{part}]" if isinstance(part, int) else (f".{part}" if s else str(part))
    return s


def line_for(lines: dict[tuple, int], loc: tuple) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def problems_from(
    err: ValidationError,
    file: str,
    lines: dict[tuple, int],
    prefix: tuple = (),
    model: type[BaseModel] | None = None,
) -> list[Problem]:
    """``err`` as problems; ``model`` (the class validated) lets an unknown key name the nearest
    valid key and every valid one."""
    out = []
    for e in err.errors():
        rel = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        loc = prefix + rel
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = f"unknown key '{loc[-1]}'" + _key_hint(model, rel)
        out.append(Problem(file, line_for(lines, loc), format_loc(loc), msg))
    return out


def _key_hint(model: type[BaseModel] | None, rel: tuple) -> str:
    """'; did you mean 'x'? valid keys: ...' for the mapping at ``rel[:-1]`` in ``model``."""
    valid = _keys_at(model, rel[:-1]) if model is not None else None
    if not valid:
        return ""
    close = difflib.get_close_matches(str(rel[-1]), valid, n=1)
    return (f"; did you mean '{close[0]}'?" if close else "") + f" valid keys: {', '.join(valid)}"


def _keys_at(model: type[BaseModel], path: tuple) -> list[str] | None:
    """The field names of the pydantic model found at ``path`` (keys, list indexes) inside
    ``model``, through optional, list and dict annotations; None where no model is there."""
    node: Any = model
    for part in (*path, None):
        candidates = [node]
        while candidates:  # unwrap Optional/Union/Annotated to the member that fits `part`
            t = candidates.pop(0)
            origin = typing.get_origin(t)
            if origin in (typing.Union, types.UnionType, typing.Annotated):
                candidates += [a for a in typing.get_args(t) if a is not type(None)]
                continue
            if part is None:
                if isinstance(t, type) and issubclass(t, BaseModel):  # less what only the loader sets
                    return [n for n, f in t.model_fields.items() if "Set by the loader" not in (f.description or "")]
                continue
            if isinstance(part, int) and origin in (list, tuple):
                node = typing.get_args(t)[0]
                break
            if isinstance(t, type) and issubclass(t, BaseModel) and part in t.model_fields:
                node = t.model_fields[part].annotation
                break
            if origin is dict:
                node = typing.get_args(t)[1]
                break
        else:
            return None
    return None


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
