"""Kill `parentage run` mid-collection (a real subprocess, a real signal), resume, compare."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from probes.logit.params import LogitParams
from tests.conftest import INTERRUPTED, default_sigint

SUITE = """\
name: resume
models:
  - {{name: suspect, role: suspect, path: {zoo}/linear_0.6, options: {{batch_size: 1}}}}
  - {{name: parent_a, role: parent, path: {zoo}/parent_a, options: {{batch_size: 1}}}}
  - {{name: parent_b, role: parent, path: {zoo}/parent_b, options: {{batch_size: 1}}}}
  - {{name: sibling, role: control, path: {zoo}/sibling, options: {{batch_size: 1}}}}
probes:
  - kind: logit_interpolation
stats: {{bootstrap: 200, seed: 5}}
output_dir: {out}
cache_dir: {cache}
"""


def events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "run.jsonl").read_text().splitlines()]


def estimates(run_dir: Path) -> dict:
    ev = json.loads((run_dir / "evidence.json").read_text())
    return {(e["name"], e["model"]): (e["value"], e["ci_low"], e["ci_high"]) for e in ev["probes"][0]["estimates"]}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_killed_run_resumes_without_recomputing(tmp_path, zoo, sig):
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE.format(zoo=zoo, out=tmp_path / "results", cache=tmp_path / "cache"))
    run_dir = tmp_path / "results" / "r1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(suite), "--run-id", "r1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
        preexec_fn=default_sigint,
    )
    raw = run_dir / "raw" / "parent_a.jsonl"  # the second model: kill while it is being collected
    deadline = time.monotonic() + 120
    while not (raw.exists() and len(raw.read_text().splitlines()) >= 20):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "collection never reached the second model"
        time.sleep(0.01)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode in INTERRUPTED, err.decode()[-2000:]
    assert b"--resume" in err  # tells the user how to resume

    log = events(run_dir)  # still readable after the kill
    types = [e["event"] for e in log]
    assert "run_interrupted" in types and "collect_end" not in types
    with sqlite3.connect(tmp_path / "cache" / "responses.sqlite") as db:
        cached = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    # parents score the 210 texts twice (noise-floor replicate); every model the task-free inputs once
    total = 210 + 2 * 420 + 210 + 4 * LogitParams().task_free_texts
    assert 210 + 20 <= cached < total  # the whole first model, part of the second

    assert main(["run", str(suite), "--resume", str(run_dir)]) == 0
    log = events(run_dir)
    resumed = log[max(i for i, e in enumerate(log) if e["event"] == "run_start") :]
    collected = [e for e in resumed if e["event"] == "probe_collected"]
    assert sum(e["cache_hits"] for e in collected) == cached  # every answered request came from the cache
    assert sum(e["computed"] for e in collected) == total - cached  # and only the rest was computed
    # Issue 14: the report counted every session's requests (360 for 240) and showed the resume time
    # as the start.
    report = (run_dir / "report.md").read_text()
    starts = [e["time"] for e in log if e["event"] == "run_start"]
    assert f"Requests: {total} (" in report and "over 2 sessions" in report
    assert f"started {starts[0]}; resumed {starts[1]}" in report

    # The resumed evidence equals that of an uninterrupted run with a fresh cache.
    fresh = tmp_path / "fresh.yaml"
    fresh.write_text(SUITE.format(zoo=zoo, out=tmp_path / "results", cache=tmp_path / "cache2"))
    assert main(["run", str(fresh), "--run-id", "r2"]) == 0
    a, b = estimates(run_dir), estimates(tmp_path / "results" / "r2")
    assert a.keys() == b.keys() and len(a) > 20
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=1e-9), k
