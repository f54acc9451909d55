"""A run killed mid-write leaves a last line without its newline. Whatever byte the kill lands
on, the next append starts on a fresh line (the fragment is kept in FILE.torn and a
``repaired`` event says so), every complete line survives, and the run stays readable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from harness.errors import InputError
from harness.events import ModelDone, ModelLoaded, ProbeCollected, Repaired, RunStart, run_log_json_schema
from harness.runstore import TORN_SUFFIX, RunStore

REPO = Path(__file__).resolve().parent.parent


def make_run(tmp_path: Path) -> RunStore:
    run = RunStore.create(tmp_path / "results", "s", "r")
    run.event(RunStart(suite={"name": "s", "description": "première ligne, with non-ASCII: 模型"}))
    run.event(ModelLoaded(model="m", role="suspect", fingerprint={"key": "k" * 64}, capabilities={}))
    run.event(ProbeCollected(model="m", probe="p", requests=3, cache_hits=0, computed=3))
    for i in range(3):
        run.append_raw("m", {"probe": "p", "key": f"key{i}", "summary": {"texts": [f"answer {i} ✓"]}})
    return run


def offsets_of_last_two_lines(data: bytes) -> range:
    starts = [0, *[i + 1 for i, b in enumerate(data) if b == ord("\n")][:-1]]
    return range(starts[-2], len(data))


@pytest.mark.parametrize("which", ["run.jsonl", "raw/m.jsonl"])
def test_a_cut_at_every_byte_of_the_last_two_lines_loses_nothing(tmp_path, which):
    original = make_run(tmp_path / "orig")
    data = (original.dir / which).read_bytes()
    complete_lines = data.splitlines(keepends=True)
    cuts = offsets_of_last_two_lines(data)
    assert len(cuts) > 100
    for k in cuts:
        work = tmp_path / "work"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(original.dir, work)
        (work / which).write_bytes(data[:k])
        run = RunStore.open(work)
        kept = [ln for ln in complete_lines if sum(map(len, complete_lines[: complete_lines.index(ln) + 1])) <= k]
        fragment = data[sum(map(len, kept)) : k]
        if fragment == complete_lines[len(kept)].rstrip(b"\n"):  # cut just before the newline: whole
            kept, fragment = [*kept, fragment], b""
        # Readable before any repair: readers tolerate one torn final line.
        assert len(run.all_events()) == (3 if which == "raw/m.jsonl" else len(kept))
        # The next append starts on a fresh line.
        run.event(ModelDone(model="m", usage={}))
        run.append_raw("m", {"probe": "p", "key": "new", "summary": {}})
        events = run.all_events()
        assert events[-1].event in ("model_done", "repaired")
        assert all(json.loads(x) for x in (work / "run.jsonl").read_text(encoding="utf-8").splitlines())
        keys = {r["key"] for r in run.raw_records("m")}
        if which == "raw/m.jsonl":
            assert keys == {json.loads(x)["key"] for x in kept} | {"new"}, k
        else:
            assert keys == {"key0", "key1", "key2", "new"}
            assert [e.event for e in events if e.event != "repaired"][: len(kept)] == [
                json.loads(x)["event"] for x in kept
            ], k
        torn = work / (which + TORN_SUFFIX)
        repaired = run.events(Repaired)
        if fragment:
            assert torn.read_bytes() == fragment + b"\n", k
            assert len(repaired) == 1 and repaired[0].torn_bytes == len(fragment)
            assert repaired[0].file == str(work / which)
        else:
            assert not torn.exists() and not repaired


def test_an_event_with_a_misspelt_or_missing_field_is_refused_when_written(tmp_path):
    with pytest.raises(ValidationError, match="requets"):
        ProbeCollected(model="m", probe="p", requets=3, cache_hits=0, computed=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="computed"):
        ProbeCollected(model="m", probe="p", requests=3, cache_hits=0)  # type: ignore[call-arg]


def test_a_log_line_that_is_no_event_names_its_file_line_and_field(tmp_path):
    run = make_run(tmp_path)
    lines = (run.dir / "run.jsonl").read_text(encoding="utf-8").splitlines()
    bad = json.loads(lines[2])
    bad["requests"] = "three"
    (run.dir / "run.jsonl").write_text("\n".join([*lines[:2], json.dumps(bad), lines[2]]) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"run.jsonl:3: probe_collected.requests: Input should be a valid integer"):
        run.all_events()


def test_a_log_of_another_version_is_refused_not_misread(tmp_path):
    run = make_run(tmp_path)
    lines = (run.dir / "run.jsonl").read_text(encoding="utf-8").splitlines()
    start = json.loads(lines[0])
    assert start["log_version"] == 1
    start["log_version"] = 2
    (run.dir / "run.jsonl").write_text("\n".join([json.dumps(start), *lines[1:]]) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"run.jsonl:1: log_version 2: this parentage reads run logs of version 1"):
        run.start_event()


def test_the_shipped_run_log_schema_is_current():
    shipped = json.loads((REPO / "harness" / "schema" / "run-log.schema.json").read_text())
    assert shipped == run_log_json_schema(), (
        "regenerate: parentage schema run-log --out harness/schema/run-log.schema.json"
    )
