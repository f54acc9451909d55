"""What a probe is: metadata, a pure ``plan`` and a pure ``analyze``.

The split keeps collection and analysis honest: only the runner talks to models (with cache,
progress and raw-record appends); ``plan`` says what to ask, ``analyze`` turns the raw records
of every model into evidence and is deterministic given the numpy Generator it is handed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

from harness.backends.base import Capabilities, Capability, CountResult, GenerateResult, Request, Result, ScoreResult
from harness.case import ProbeCase
from harness.evidence import ProbeEvidence
from harness.format import estimates_table
from harness.suite import ModelSpec, ProbeSpec, Suite

R = TypeVar("R", ScoreResult, GenerateResult, CountResult)


class ProbeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Planned:
    """One request plus bookkeeping (text id, group...). ``meta`` is not part of the cache key."""

    request: Request
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Skip:
    """A probe that cannot run on a model says why; the reason is recorded, never scored."""

    reason: str


@dataclass(frozen=True)
class Shortlist:
    """After stage one of a staged probe: the staged models that go on to stage two (``kept``),
    and a line per staged model saying why (a screening's rank)."""

    kept: list[str]
    why: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Build:
    """A model a probe builds from the suite's own (a merge of the parents, by mergekit) and wants
    served and scored: ``spec`` says where it goes and which backend serves it, ``recipe`` is the
    mergekit configuration, and it is deleted after scoring unless ``keep``."""

    spec: ModelSpec
    recipe: dict[str, Any]
    keep: bool = False


@dataclass
class Record:
    """A raw record as analysis sees it: the request, its bookkeeping and the backend's answer.

    The answer may be given as a loader: full-vocabulary log-prob matrices of a real model run to
    gigabytes, so analysis reads each from the cache when it needs it and lets it go after.
    """

    model: str
    key: str
    meta: dict[str, Any]
    request: Request
    answer: Result | Callable[[], Result | None] = field(repr=False)

    @property
    def result(self) -> Result:
        r = self.answer() if callable(self.answer) else self.answer
        if r is None:  # the loader found nothing: analysis checks the cache first, so this is a bug
            raise LookupError(f"record {self.key[:12]} of '{self.model}' has no answer in the cache")
        return r

    def result_as(self, kind: type[R]) -> R:
        """The answer, checked to be the kind of result the probe asked for: a cache entry of
        another kind is an error here, not a wrong number later."""
        r = self.result
        if not isinstance(r, kind):
            raise TypeError(
                f"record {self.key[:12]} of '{self.model}': expected {kind.__name__}, got {type(r).__name__}"
            )
        return r


class Probe(ABC):
    """Base class. Subclasses set the ClassVars and implement ``plan`` and ``analyze``."""

    kind: ClassVar[str]  # the registered kind (a suite's `kind:`); `instance` is the suite entry's name
    version: ClassVar[str]  # part of the cache key: bump it when requests or their meaning change
    description: ClassVar[str]
    requires: ClassVar[tuple[Capability, ...]] = ()  # any one of these suffices
    # False for a probe that reads files (checkpoints) instead of asking a model: collect loads no
    # backend for it, and analysis runs it without records.
    needs_backend: ClassVar[bool] = True
    Params: ClassVar[type[ProbeParams]] = ProbeParams
    # The typed model of one per_model entry of this probe's evidence (None: a free-form dict).
    Result: ClassVar[type[BaseModel] | None] = None
    example: ClassVar[dict[str, Any]] = {}  # smallest valid params (docs, contract tests)
    # The params a first suite should show (``parentage init`` writes them at their defaults).
    key_params: ClassVar[tuple[str, ...]] = ()
    # Params holding file paths (a string, or a dict of strings): resolved against the suite
    # file's folder and checked to exist at validation time, like a model's `path`.
    path_params: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec: ProbeSpec):
        self.spec = spec
        self.params = self.Params.model_validate(spec.params)

    @property
    def instance(self) -> str:
        return self.spec.name

    def new_evidence(self, suite: Suite, **fields: Any) -> ProbeEvidence:
        """Empty evidence of this probe, at the suite's interval level (its summary and tables
        are labelled with it: "99% CI" after ``analyze --alpha 0.01``, never "95%" by habit)."""
        return ProbeEvidence(
            probe=self.kind, instance=self.instance, version=self.version, ci_level=1 - suite.stats.alpha, **fields
        )

    def preflight(self, suite: Suite) -> list[tuple[tuple, str]]:
        """Problems knowable before any model is loaded, as (location under ``params``, message).
        ``validate`` and the start of ``run`` report them with file and line, so nothing
        expensive starts on a suite that can only fail. The default finds none."""
        return []

    def power(self, suite: Suite) -> list[str]:
        """Tests this probe runs that cannot reach significance (the suite's alpha) at the
        configured sizes, whatever the models answer: an exact test over 4 questions bottoms out at
        p = 1/16. ``validate`` and ``run --estimate`` warn before anything is sent; the report lists
        them under Limitations. Pure, like ``plan``. The default finds none."""
        return []

    def estimate_note(self, suite: Suite) -> str | None:
        """For `run --estimate`, work beyond the requests the table counts, in one line: the files
        a probe reads instead of asking a model (weights), the models it builds (rebuild). The
        default does none."""
        return None

    @abstractmethod
    def plan(self, suite: Suite, model: ModelSpec, caps: Capabilities) -> list[Planned] | Skip:
        """What to ask ``model``. Pure: no model access."""

    # ------------------------------------------------------------------ models it builds (optional)
    builds_models: ClassVar[bool] = False

    def builds(self, suite: Suite, records: dict[str, list[Record]], build_dir: Path) -> list[Build]:
        """After the stages, in rounds: the models this probe wants built (under ``build_dir``),
        served and scored next, given every record so far (the earlier rounds' builds are in
        ``suite`` with role "rebuild", and in ``records``); [] once it has what it needs. Collect
        builds each, plans it with ``plan`` and calls again. Deterministic given the records,
        like ``shortlist``: analysis sees the same builds. Only where ``builds_models``."""
        return []

    # ------------------------------------------------------------------ two stages (optional)
    def staged(self, suite: Suite, model: ModelSpec) -> bool:
        """Whether ``model`` is planned in two stages: ``stage_one_plan`` while every model takes
        its turn, then, once stage one's answers exist, ``stage_two_plan`` if ``shortlist`` keeps
        it (collect loads it again). For requests that depend on other models' answers (a parent
        scoring a suspect's samples) or on a screening of a large pool. Default: no."""
        return False

    def stage_one_plan(self, suite: Suite, model: ModelSpec, caps: Capabilities) -> list[Planned] | Skip:
        """A staged model's first requests (a screening, its own samples); default none. Pure."""
        return []

    @property
    def shortlists(self) -> bool:
        """Whether ``shortlist`` may leave staged models out of stage two (the dry run then
        counts stage two as 'if shortlisted')."""
        return False

    def shortlist(self, suite: Suite, records: dict[str, list[Record]]) -> Shortlist | None:
        """After stage one: which staged models go on to stage two (collect), and so take part
        in the analysis (which calls it again). Deterministic given the records: both phases
        must agree. None (the default): every staged model goes on."""
        return None

    def stage_two_plan(
        self, suite: Suite, model: ModelSpec, caps: Capabilities, records: dict[str, list[Record]] | None
    ) -> list[Planned] | Skip:
        """A staged model's requests once stage one's ``records`` exist (a superset of its stage
        one plan: those are answered from the cache). ``records`` None: the dry run, which gets
        the plan as far as it is known without the answers (placeholder texts as long as the
        answers may be). Default: ``plan``. Pure."""
        return self.plan(suite, model, caps)

    @abstractmethod
    def analyze(self, records: dict[str, list[Record]], suite: Suite, rng: Any) -> ProbeEvidence:
        """Raw records of every model -> evidence. Pure and deterministic given ``rng``."""

    def figures(self, evidence: ProbeEvidence, out_dir: Path) -> list[tuple[str, Path]]:
        """Render plots for the report (called only for evidence with status "ok"); returns
        (caption, path) pairs. Optional."""
        return []

    def case(self, evidence: ProbeEvidence, names: list[str], suite: Suite) -> ProbeCase | None:
        """This probe's stance on each explanation of one suspect (``harness.case``), whose weights
        go by ``names`` in the suite (one name per backend serving them). None: the probe has
        nothing to say about lineage (the default)."""
        return None

    def report_section(self, evidence: ProbeEvidence, suite: Suite) -> str:
        """Markdown for the report (called only for evidence with status "ok"). The default lists
        estimates; probes override it for readable tables."""
        return estimates_table(evidence.estimates)


def uncalibrated_note(suite: Suite, consequence: str) -> str:
    """Why a probe's evidence has no controls to compare with: the suite names none, or (a
    partial run) they have not answered yet. The report prints it at the top of the section."""
    named = [m.name for m in suite.by_role("control")]
    why = (
        f"the suite's controls ({', '.join(named)}) have no answers in this run yet (a partial run?)"
        if named
        else "the suite has no control models"
    )
    return f"UNCALIBRATED: {why}, so {consequence}."


def subplots(*args: Any, **kwargs: Any):
    """``plt.subplots`` on the headless Agg backend (reports are rendered without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save_figure(fig: Any, path: Path) -> Path:
    """Lay out, write as PNG and free the figure (an open figure per report would leak memory)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")  # a title wider than the axes is not clipped
    plt.close(fig)
    return path
