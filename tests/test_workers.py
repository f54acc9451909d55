"""The test workers' core shares (tests/conftest.py, `pin_xdist_worker`): `make test` runs two
pytest-xdist workers, and each must see only its own cores, or their OpenMP threads, vLLM's CPU
engine and llama.cpp spin against each other. Checked in fresh interpreters started on every core
of this machine, as xdist starts its workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHOW = (
    "import json, os, tests.conftest; "
    "print(json.dumps([sorted(os.sched_getaffinity(0)), os.environ.get('OMP_NUM_THREADS')]))"
)


def _worker_view(worker: str | None, count: int) -> tuple[list[int], str | None]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    if worker is not None:
        env |= {"PYTEST_XDIST_WORKER": worker, "PYTEST_XDIST_WORKER_COUNT": str(count)}
    env.pop("OMP_NUM_THREADS", None)
    every_core = range(os.cpu_count() or 1)
    out = subprocess.run(
        [sys.executable, "-c", SHOW],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, every_core),  # a worker starts with the whole machine
    ).stdout
    cpus, threads = json.loads(out)
    return cpus, threads


def test_two_workers_get_disjoint_shares_that_cover_the_machine():
    cores = list(range(os.cpu_count() or 1))
    first, second = _worker_view("gw0", 2), _worker_view("gw1", 2)
    if len(cores) == 1:  # nothing to share: both keep the one core
        assert first[0] == second[0] == cores
        return
    assert set(first[0]).isdisjoint(second[0]) and sorted(first[0] + second[0]) == cores
    assert first[1] == str(len(first[0])) and second[1] == str(len(second[0]))


def test_a_plain_run_keeps_every_core():
    assert _worker_view(None, 1) == (list(range(os.cpu_count() or 1)), None)
    assert _worker_view("gw0", 1)[0] == list(range(os.cpu_count() or 1))  # `-n 1`: one worker, nothing to split
