"""The rebuild probe: planning and the interface.

Every subject (suspects and controls) and both parents score the same texts; then, in rounds,
the probe asks collect to build merges of the parents (``Probe.builds``): the golden-section
points of each family, then the merge at the curve's minimiser for the equality test. Each is
served like the subject (its backend kind and data mode), scored on the same texts, and deleted
unless ``keep_rebuilds``. Analysis replays the same search from the same records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from harness.backends.base import Capabilities, Capability, ScoreRequest
from harness.case import ProbeCase
from harness.evidence import ProbeEvidence
from harness.merging import folder_bytes, mergekit_available
from harness.suite import BUILT_ROLE, ModelSpec, ProbeSpec, Suite
from probes.base import Build, Planned, Probe, Record, Skip
from probes.rebuild.analysis import RebuildAnalysis, next_builds
from probes.rebuild.case import rebuild_case
from probes.rebuild.params import RebuildParams
from probes.rebuild.plane import MAX_STEPS, plane_builds
from probes.rebuild.recipes import family_labels, untried_reason
from probes.rebuild.render import figures, report_section
from probes.rebuild.result import RebuildResult
from probes.shared.corpus import corpus_items

SERVABLE = ("hf", "vllm")  # backends that serve a folder of weights; any other subject's rebuilds go to hf
PATH_BOUND_OPTIONS = ("gguf_file", "url", "port", "served_model_name", "log_dir", "model", "base_url")


class RebuildProbe(Probe):
    kind: ClassVar[str] = "rebuild"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "rebuild the suspect by merging the parents (mergekit) and test the two for equality"
    key_params: ClassVar[tuple[str, ...]] = ("mode", "max_texts", "families", "search_points")
    path_params: ClassVar[tuple[str, ...]] = ("base",)
    requires: ClassVar[tuple[Capability, ...]] = (Capability.FULL_LOGPROBS, Capability.TOPK_LOGPROBS)
    builds_models: ClassVar[bool] = True
    Params = RebuildParams
    Result = RebuildResult
    params: RebuildParams

    def __init__(self, spec: ProbeSpec):
        super().__init__(spec)
        self._distances: dict = {}  # per-text distances between models, kept across collection's rounds

    # ------------------------------------------------------------------ inputs
    def parents(self, suite: Suite) -> list[ModelSpec]:
        names = self.params.parents or [m.name for m in suite.by_role("parent")]
        by_name = {m.name: m for m in suite.models}
        return [by_name[n] for n in dict.fromkeys(names) if n in by_name]  # in the order named

    @staticmethod
    def weights_dir(model: ModelSpec) -> Path | None:
        """A parent's weights as mergekit reads them: a local folder with a config.json."""
        if model.path and (Path(model.path) / "config.json").is_file() and not model.options.get("gguf_file"):
            return Path(model.path)
        return None

    def subjects(self, suite: Suite) -> list[ModelSpec]:
        return [m for m in suite.models if m.role in ("suspect", "control")]

    def preflight(self, suite: Suite) -> list[tuple[tuple, str]]:
        problems: list[tuple[tuple, str]] = []
        if not mergekit_available():
            problems.append(((), "the rebuild probe needs mergekit: pip install 'parentage[rebuild]'"))
        parents = self.parents(suite)
        if self.params.parents and len(parents) != len(set(self.params.parents)):
            missing = sorted(set(self.params.parents) - {m.name for m in parents})
            problems.append((("parents",), f"not models of this suite: {', '.join(missing)}"))
        elif len(parents) < 2:
            problems.append(
                (
                    ("parents",),
                    f"the rebuild probe merges two or more parents; the suite has {len(parents)} with role: "
                    "parent (name them under params.parents)",
                )
            )
        if self.params.base and not (Path(self.params.base) / "config.json").is_file():
            problems.append(
                (
                    ("base",),
                    f"no config.json in {self.params.base}: the base must be a folder of weights mergekit reads",
                )
            )
        for m in parents:
            if self.weights_dir(m) is None:
                problems.append(
                    (
                        ("parents",),
                        f"parent '{m.name}' has no local weights folder with a config.json (path: {m.path}): "
                        "mergekit needs the parents' weights",
                    )
                )
        return problems

    def estimate_note(self, suite: Suite) -> str | None:
        parents = self.parents(suite)
        dirs = [d for m in parents if (d := self.weights_dir(m)) is not None]
        size = max((folder_bytes(d) for d in dirs), default=0)
        n = len(self.subjects(suite))
        labels = [f for f in family_labels(self.params) if untried_reason(f, self.params.base, len(parents)) is None]
        several = [f for f in labels if f == "task_arithmetic" or len(parents) > 2]
        most = sum(plane_builds(f, len(parents)) if f in several else self.params.search_points + 3 for f in labels)
        texts = len(corpus_items(self.spec.data, self.params.max_texts))
        return (
            f"{self.instance}: builds at most {most} merges per subject with mergekit over {len(labels)} "
            f"families ({self.params.search_points} golden-section points and 3 at the minimiser per "
            f"one-weight family, the frame, up to {MAX_STEPS} Gauss-Newton steps and a twin where there are "
            f"several weights; the next family only while none "
            f"rebuilt it and one came near; points shared between the {n} "
            f"subjects are built once), each about {size / 1e9:.2f} GB, written to the cache, served like its "
            f"subject and scored on {texts} texts ({texts} requests each), then deleted"
            + (" (kept: keep_rebuilds)" if self.params.keep_rebuilds else "")
        )

    # ------------------------------------------------------------------ collection
    def _requests(self, caps: Capabilities) -> dict[str, Any] | Skip:
        p = self.params
        if p.mode == "full" and not caps.has(Capability.FULL_LOGPROBS):
            return Skip("the backend offers no full-vocabulary log-probs (set the rebuild probe's mode: topk)")
        if p.mode == "topk" and not (caps.has(Capability.TOPK_LOGPROBS) or caps.has(Capability.FULL_LOGPROBS)):
            return Skip("the backend offers no teacher-forced top-k log-probs")
        if p.mode == "full":
            return {"mode": "full", "top_k": p.top_k, "vocab_sample": p.vocab_sample, "max_tokens": p.max_tokens}
        return {"mode": "topk", "top_k": p.top_k, "max_tokens": p.max_tokens}

    def plan(self, suite: Suite, model: ModelSpec, caps: Capabilities) -> list[Planned] | Skip:
        req = self._requests(caps)
        if isinstance(req, Skip):
            return req
        parents = {m.name for m in self.parents(suite)}
        if model.role not in ("suspect", "control", BUILT_ROLE) and model.name not in parents:
            return []  # a candidate: nothing to ask it
        items = corpus_items(self.spec.data, self.params.max_texts)
        plan = [Planned(ScoreRequest(text=it.text, **req), {"id": it.id}) for it in items]
        if model.role in ("suspect", "control"):  # repeat noise: the subject twice, batch order reversed
            plan += [
                Planned(ScoreRequest(text=it.text, replicate=1, **req), {"id": it.id, "replicate": 1})
                for it in reversed(items[: self.params.noise_texts])
            ]
        return plan

    def builds(self, suite: Suite, records: dict[str, list[Record]], build_dir: Path) -> list[Build]:
        parents = self.parents(suite)
        dirs = {m.name: self.weights_dir(m) for m in parents}
        if len(parents) < 2 or None in dirs.values():
            return []
        wanted = next_builds(suite, self.params, records, [m.name for m in parents], self._distances)
        out: list[Build] = []
        for want in wanted:
            subject = suite.model(want.subject)
            backend = subject.backend if subject.backend in SERVABLE else "hf"
            options = (
                {k: v for k, v in subject.options.items() if k not in PATH_BOUND_OPTIONS}
                if backend == subject.backend
                else {}
            )
            recipe = want.recipe([str(dirs[m.name]) for m in parents], self.params.base)
            name = want.model_name(backend)
            # model_construct: "rebuild" is no role a suite file may give (harness.suite.BUILT_ROLE)
            spec = ModelSpec.model_construct(
                name=name,
                role=BUILT_ROLE,
                hub={},
                backend=backend,
                path=str(build_dir / name),
                options=options,
                notes=json.dumps(
                    {
                        "family": want.family,
                        "a": want.a,
                        "more": list(want.more),
                        "dtype": want.dtype,
                        "math": want.math,
                    }
                ),
            )
            if all(b.spec.name != name for b in out):
                out.append(Build(spec, recipe, keep=self.params.keep_rebuilds))
        return out

    # ------------------------------------------------------------------ analysis and report
    def analyze(self, records: dict[str, list[Record]], suite: Suite, rng: Any) -> ProbeEvidence:
        parents = self.parents(suite)
        dirs = [str(self.weights_dir(m)) for m in parents]
        ev = self.new_evidence(suite, mode=self.params.mode)
        return RebuildAnalysis(self.params, suite, rng, ev, [m.name for m in parents], dirs).run(records)

    def case(self, evidence: ProbeEvidence, names: list[str], suite: Suite) -> ProbeCase | None:
        results = evidence.results(RebuildResult)
        mine = [results[n] for n in names if n in results and results[n].verdict != "not_rebuilt"]
        return rebuild_case(f"rebuild ({self.params.mode})", mine[0]) if mine else None

    def report_section(self, evidence: ProbeEvidence, suite: Suite) -> str:
        return report_section(evidence)

    def figures(self, evidence: ProbeEvidence, out_dir: Path) -> list[tuple[str, Path]]:
        return figures(evidence, out_dir)
