"""Weights: per-tensor interpolation analysis of public checkpoints, and merge artifacts.

The probe asks no backend anything (``needs_backend = False``: collect loads no model for it).
It reads each model's safetensors checkpoint, the model's ``path`` or ``params.paths[name]``,
streaming every tensor of every model side by side (``stream.py``), fits each subject
(suspects and controls) on the parents (``fit.py``, ``analysis.py``), applies the rule of
``verdict.py`` and lists the merge artifacts left in the repositories (``artifacts.py``).

Reference R: the shared base when ``params.base`` is given (then every parent gets a weight, and
their sum need not be 1: task arithmetic), else the parent ``params.reference`` (default: the
last parent), whose weight is 1 minus the others' (the Rio case: S - Qwen = a (Nex - Qwen)).

The pass over the checkpoints is journaled in the response cache (one JSON line per tensor),
so a killed analysis resumes, and a second one (another alpha) reads no weights at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.backends.base import Capabilities
from harness.case import ProbeCase
from harness.errors import InputError
from harness.evidence import ProbeEvidence
from harness.suite import ModelSpec, Suite
from probes.base import Planned, Probe, Record, Skip
from probes.weights import render
from probes.weights.analysis import WeightsAnalysis, sample_of
from probes.weights.case import weights_case
from probes.weights.checkpoint import Checkpoint, open_checkpoint
from probes.weights.params import WeightsParams
from probes.weights.result import WeightsResult
from probes.weights.stream import bytes_read


class WeightsProbe(Probe):
    kind: ClassVar[str] = "weights"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "white-box: per-tensor interpolation of the checkpoints, merge family, artifacts"
    key_params: ClassVar[tuple[str, ...]] = ("base", "sample")
    needs_backend: ClassVar[bool] = False
    Params = WeightsParams
    params: WeightsParams
    Result = WeightsResult
    path_params: ClassVar[tuple[str, ...]] = ("base", "paths")
    example: ClassVar[dict[str, Any]] = {}

    # ------------------------------------------------------------------ inputs
    def checkpoint_dir(self, model: ModelSpec) -> Path | None:
        """The model's checkpoint: ``params.paths[name]``, else its ``path`` (a directory, a
        safetensors or GGUF file, or a directory and its ``gguf_file`` option)."""
        raw = self.params.paths.get(model.name) or model.path
        if raw and not self.params.paths.get(model.name) and model.options.get("gguf_file"):
            raw = str(Path(raw) / str(model.options["gguf_file"]))
        return Path(raw) if raw and Path(raw).exists() else None

    def _checkpoints(self, suite: Suite) -> tuple[dict[str, Checkpoint], list[tuple[tuple, str]]]:
        """Every model's checkpoint (and the base's, as "base"), headers parsed, with the problems
        found. GGUF files are opened last: their tensors take the names the others use."""
        where: dict[str, tuple[tuple, Path | None]] = {
            m.name: (("paths", m.name), self.checkpoint_dir(m))
            for m in suite.models
            # A Hub id not downloaded yet (validated online) is checked once `run` has fetched it.
            if self.params.paths.get(m.name) or not ("path" in m.hub and m.hub["path"].commit is None)
        }
        if self.params.base:
            where["base"] = (("base",), Path(self.params.base))
        opened: dict[str, Checkpoint] = {}
        problems: list[tuple[tuple, str]] = []
        for gguf_pass in (False, True):
            like = {t for c in opened.values() for t in c.tensors}
            for name, (field, d) in where.items():
                if d is None:
                    if not gguf_pass:
                        problems.append(
                            (field, f"model '{name}' has no local checkpoint (give its directory under paths)")
                        )
                    continue
                if (d.suffix == ".gguf") != gguf_pass:
                    continue
                try:
                    opened[name] = open_checkpoint(d, like)
                except InputError as e:
                    problems.append((field, str(e)))
        return opened, problems

    def preflight(self, suite: Suite) -> list[tuple[tuple, str]]:
        """Every checkpoint's headers parse and every byte range is inside its file: a truncated
        shard is found now, not after hours of reading."""
        problems: list[tuple[tuple, str]] = []
        parents = suite.by_role("parent")
        if not parents:
            problems.append(((), "the weights probe needs at least one model with role: parent"))
        if self.params.reference and self.params.reference not in {p.name for p in parents}:
            problems.append((("reference",), f"'{self.params.reference}' is not a parent of this suite"))
        opened, found = self._checkpoints(suite)
        problems += found
        problems += self._same_checkpoint(suite)
        problems += self._nothing_in_common(suite, opened)
        return problems

    def _same_checkpoint(self, suite: Suite) -> list[tuple[tuple, str]]:
        """Two parents (or a parent and the base) on one checkpoint, directly or through a link,
        make the parents' line a point: every fit on it would be meaningless."""
        where: dict[Path, str] = {}
        problems: list[tuple[tuple, str]] = []
        named = [(p.name, self.checkpoint_dir(p)) for p in suite.by_role("parent")]
        if self.params.base and not any(d and d.resolve() == Path(self.params.base).resolve() for _, d in named):
            named.append(("base", Path(self.params.base)))
        for name, d in named:
            if d is None:
                continue
            key = d.resolve()
            if key in where:
                problems.append(
                    (
                        ("paths", name),
                        f"'{name}' and '{where[key]}' are the same checkpoint ({key}): give distinct parents",
                    )
                )
            where.setdefault(key, name)
        return problems

    def _nothing_in_common(self, suite: Suite, opened: dict[str, Checkpoint]) -> list[tuple[tuple, str]]:
        """Each subject must share float tensors (name and shape) with every parent, or nothing can be
        fitted: another architecture, renamed tensors, integer tensors. Found here, not after reading."""
        refs = [p.name for p in suite.by_role("parent")] + (["base"] if self.params.base else [])
        problems: list[tuple[tuple, str]] = []
        for m in suite.models:
            if m.role == "parent" or m.name not in opened:
                continue
            mine = {n: t.shape for n, t in opened[m.name].tensors.items() if t.is_float}
            for r in refs:
                if r not in opened:
                    continue
                theirs = {n: t.shape for n, t in opened[r].tensors.items() if t.is_float}
                common = sum(1 for n, shape in mine.items() if theirs.get(n) == shape)
                if not common:
                    names = sum(1 for n in opened[m.name].tensors if n in opened[r].tensors)
                    problems.append(
                        (
                            ("paths", m.name),
                            f"no tensor in common: '{m.name}' has {names} of {len(opened[r].tensors)} tensor names of "
                            f"'{r}' and 0 float tensors of the same name and shape (another architecture, or renamed?)",
                        )
                    )
        return problems

    def plan(self, suite: Suite, model: ModelSpec, caps: Capabilities) -> list[Planned] | Skip:
        return []  # nothing to ask a backend: analysis reads the checkpoints

    # ------------------------------------------------------------------ analysis
    def estimate_note(self, suite: Suite) -> str | None:
        """For `run --estimate`: the bytes the pass will read (all, or the sampled share)."""
        opened, problems = self._checkpoints(suite)
        if problems:
            return f"{self.instance}: cannot estimate ({problems[0][1]})"
        names = [m.name for m in suite.models if m.role != "candidate"] + (["base"] if "base" in opened else [])
        common = set.intersection(*(set(opened[n].tensors) for n in names if n in opened))
        work = [[opened[n].tensors[t] for n in names if n in opened] for t in sorted(common)]
        sample = sample_of(self.params, suite.stats.seed)
        read, total = sum(bytes_read(w, sample) for w in work), sum(bytes_read(w, None) for w in work)
        how = f"sample {self.params.sample:g} of each tensor" if sample else "every tensor in full"
        return f"{self.instance}: reads {read / 1e9:.3g} GB of {total / 1e9:.3g} GB of checkpoints ({how})"

    def analyze(self, records: dict[str, list[Record]], suite: Suite, rng: np.random.Generator) -> ProbeEvidence:
        problems = self.preflight(suite)
        if problems:
            raise InputError(f"probe '{self.instance}': " + "; ".join(m for _, m in problems))
        opened, _ = self._checkpoints(suite)  # preflight above found no problem
        dirs = {m.name: self.checkpoint_dir(m) for m in suite.models}
        ev = self.new_evidence(suite, mode="weights")
        return WeightsAnalysis(self.params, suite, rng, ev).run(opened, {n: d for n, d in dirs.items() if d})

    # ------------------------------------------------------------------ presentation (render.py)
    def case(self, evidence: ProbeEvidence, names: list[str], suite: Suite) -> ProbeCase | None:
        m = next((n for n in names if n in evidence.per_model), None)
        if evidence.status != "ok" or m is None:
            return None
        return weights_case(evidence.instance, evidence.results(WeightsResult)[m], evidence.ci_level)

    def report_section(self, evidence: ProbeEvidence, suite: Suite) -> str:
        return render.report_section(evidence)

    def figures(self, evidence: ProbeEvidence, out_dir: Path) -> list[tuple[str, Path]]:
        return render.figures(evidence, out_dir)
