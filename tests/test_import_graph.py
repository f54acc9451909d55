"""The package's import graph: no cycles, and the layering ARCHITECTURE.md states.

Every edge counts: lazy imports inside functions, imports under ``if TYPE_CHECKING:`` (an
annotation still ties the two modules together for a reader) and the registries' import strings
(``"probes.logit.probe:LogitInterpolationProbe"``, loaded by importlib). A lazy import hides a
cycle from ``python -c "import x"`` but not from a reader: the two modules still cannot be
understood (or moved) one without the other.

The layers (ARCHITECTURE.md, "Layers"):

- **kernel**: what probes build on (the suite's types, backends, evidence, statistics, the case,
  formatting, errors, data, provenance, the cache, assets and tokenizers). It imports only itself.
- **probes**: ``probes.base`` (the interface), ``probes.shared`` (what two probes share) and one
  folder per probe. A probe imports the kernel, the interface, ``probes.shared`` and its own
  folder: never a driver, never another probe's folder.
- **drivers**: the rest of ``harness`` (loading a suite, collect, analyze, estimate, report,
  compare, the CLI, the zoos). They reach probes through the registry (``probes``) and the
  interface (``probes.base``) only.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "probes")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {
        module_name(p): p
        for pkg in PACKAGES
        for p in sorted((REPO / pkg).rglob("*.py"))
        if "data" not in p.relative_to(REPO).parts
    }


REGISTRY_STRING = re.compile(r"^((?:harness|probes)(?:\.\w+)+)(?::\w+)?$")


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Internal modules ``name`` imports anywhere in its body, TYPE_CHECKING blocks and import
    strings included (a package import counts as its __init__)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = REGISTRY_STRING.match(node.value)
            if m and m.group(1) in known:
                targets = [m.group(1)]
        for t in targets:
            while t and t not in known:  # `from pkg import mod` names a module; `from mod import f` does not
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):  # its own package ran first anyway
                out.add(t)
            # Importing a.b.c runs a/__init__ and a/b/__init__ first: edges too, except to the
            # packages that contain the importing module (Python has run those already).
            while "." in t:
                t = t.rpartition(".")[0]
                if t in known and t != name and not name.startswith(t + "."):
                    out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {n: imports_of(n, p, known) for n, p in mods.items()}


KERNEL_MODULES = {
    "harness",
    "harness.assets",
    "harness.cache",
    "harness.case",
    "harness.data",
    "harness.errors",
    "harness.evidence",
    "harness.format",
    "harness.hub",
    "harness.merging",
    "harness.provenance",
    "harness.stats",
    "harness.suite",
    "harness.tokenizers",
}
PROBE_INTERFACE = {"probes", "probes.base"}


def layer(module: str) -> str:
    """kernel, interface (the registry and probes.base), shared, probe:<name> or driver."""
    if module in KERNEL_MODULES or module == "harness.backends" or module.startswith("harness.backends."):
        return "kernel"
    if module in PROBE_INTERFACE:
        return "interface"
    if module == "probes.shared" or module.startswith("probes.shared."):
        return "shared"
    if module.startswith("probes."):
        return "probe:" + module.split(".")[1]
    return "driver"


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every edge the layering forbids, as "a -> b (why)"."""
    allowed_for = {
        "kernel": {"kernel"},
        "interface": {"kernel", "interface", "shared"},  # the registry's strings also reach each probe
        "shared": {"kernel", "shared"},
        "driver": {"kernel", "interface", "driver"},
    }
    out = []
    for a, targets in sorted(graph.items()):
        la = layer(a)
        for b in sorted(targets):
            lb = layer(b)
            if la.startswith("probe:"):
                ok = lb in {"kernel", "interface", "shared", la}
            elif la == "interface" and a == "probes" and lb.startswith("probe:"):
                ok = True  # the registry: import strings, one per probe
            else:
                ok = lb in allowed_for[la]
            if not ok:
                out.append(f"{a} -> {b} ({la} may not import {lb})")
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return [*stack[stack.index(m) :], m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_in_harness_or_probes():
    g = graph()
    assert "probes.logit.probe" in g and "harness.analyze" in g
    assert "probes.logit.probe" in g["probes"], "the registry's import strings are edges"
    cycle = find_cycle(g)
    assert cycle is None, " -> ".join(cycle)


def test_the_layering_checker_finds_each_kind_of_violation():
    planted = {
        "harness.suite": {"probes"},  # kernel -> registry
        "probes.text.probe": {"probes.logit.probe", "harness.config"},  # probe -> other probe, driver
        "harness.collect": {"probes.logit.probe"},  # driver -> a probe's folder
        "probes.base": {"harness.cache"},  # allowed
    }
    assert layering_violations(planted) == [
        "harness.collect -> probes.logit.probe (driver may not import probe:logit)",
        "harness.suite -> probes (kernel may not import interface)",
        "probes.text.probe -> harness.config (probe:text may not import driver)",
        "probes.text.probe -> probes.logit.probe (probe:text may not import probe:logit)",
    ]


def test_probes_import_only_the_kernel_and_drivers_reach_probes_through_the_registry():
    assert layering_violations(graph()) == []


@pytest.mark.parametrize("name", sorted(modules()))
def test_every_module_imports_on_its_own(name):
    importlib.import_module(name)
