"""Issue 27: the weights probe on a folder of generated bad or unusual checkpoints
(``tests/bad_checkpoints.py``). Each must give the right verdict, or one ``error:`` line naming the
file and field with exit 2 at pre-flight: never a traceback, never a confident wrong conclusion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from tests.bad_checkpoints import CASES, Case, suite_file

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_checkpoint(case: Case, zoo: Path, tmp_path: Path, capsys):
    cfg = suite_file(case, zoo, tmp_path)
    code = main(["run", str(cfg), "--run-id", "r"])
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "Warning" not in out.err, out.err
    assert code == case.exit_code, out.err
    if case.exit_code:
        errors = [line for line in out.err.splitlines() if line.startswith("error:")]
        assert errors and case.message in out.err, out.err
        assert not (tmp_path / "results" / "r").exists()  # refused at pre-flight: no run directory left
        assert main(["validate", str(cfg)]) == case.exit_code  # and `validate` finds it too
        return
    ev = next(p for p in json.loads((tmp_path / "results" / "r" / "evidence.json").read_text())["probes"])
    pm = ev["per_model"]["suspect"]
    assert (pm["verdict"], pm["parent"]) == (case.verdict, case.parent), pm["reasons"]
    text = (
        ev["summary"]
        + " ".join(ev["notes"])
        + " ".join(pm["unmatched"])
        + (tmp_path / "results" / "r" / "report.md").read_text()
    )
    assert case.message in text
    assert main(["report", str(tmp_path / "results" / "r")]) == 0
