"""Error types and the exit codes the CLI maps them to.

Exit codes let scripts tell bad input (fix your suite) from a model/backend failure (retry,
or fix the server) from a storage failure (free disk), without parsing messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_BACKEND = 3
EXIT_STORAGE = 4
EXIT_NO_EVIDENCE = 5  # the run finished, but a probe was skipped on every model: no verdict
EXIT_INTERRUPTED = 130


class ParentageError(Exception):
    """Base class: every error the tool raises on purpose carries an exit code."""

    exit_code = EXIT_FAILURE


@dataclass(frozen=True)
class Problem:
    """One located problem in an input file: ``file:line: field: message``."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class InputError(ParentageError):
    """Bad user input (suite, data file, run directory). Lists every problem found, not just the first."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, problems: list[Problem] | str):
        if isinstance(problems, str):
            problems = [Problem(file="", line=None, field="", message=problems)]
        self.problems = problems
        super().__init__("\n".join(str(p).lstrip(": ") for p in problems))


class BackendError(ParentageError):
    """A model could not be loaded or served, or returned something unusable."""

    exit_code = EXIT_BACKEND


class CapabilityMissing(BackendError):
    """A backend lacks what a request needs. Probes degrade or skip; it is never scored as evidence."""


class PartialBatch(BackendError):
    """Some requests of a batch were answered before the rest failed. The runner stores the
    answered ones (they cost money and time) before reporting ``cause``; a resumed run then
    sends only what is still missing."""

    def __init__(self, done: dict[int, Any], cause: BackendError):
        self.done = done
        self.cause = cause
        super().__init__(str(cause))


class StorageError(ParentageError):
    """The cache or run directory could not be written (disk full, permissions)."""

    exit_code = EXIT_STORAGE
