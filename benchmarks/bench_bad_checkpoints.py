"""The weights probe on every generated bad or unusual checkpoint (``tests/bad_checkpoints.py``):
for each, `parentage run` as a user runs it, and what came back (exit code, verdict, the error
line, numpy warnings). With ``--code DIR`` (another checkout, e.g. a ``git worktree`` of an older
commit) each case runs on that code as well, for a before/after table. Written to
``results/bench-<date>/bad-checkpoints.md``.

    python benchmarks/bench_bad_checkpoints.py [--code OLD_CHECKOUT] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.bad_checkpoints import CASES, Case, suite_file  # noqa: E402

ZOO = Path(os.environ.get("PARENTAGE_ZOO", REPO / ".cache" / "zoo" / "tiny"))


def run_case(case: Case, where: Path, code: Path) -> str:
    """One case on the code in ``code``: "exit N; verdict; `error line`; k numpy warnings"."""
    cfg = suite_file(case, ZOO, where)
    main = "import sys; from harness.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", main, "run", str(cfg), "--run-id", "r"],
        capture_output=True,
        text=True,
        cwd=code,
        env=dict(os.environ, PYTHONPATH=str(code)),
    )
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    out = [f"exit {done.returncode}"]
    evidence = where / "results" / "r" / "evidence.json"
    if evidence.exists():
        try:
            pm = json.loads(evidence.read_text())["probes"][0]["per_model"]["suspect"]
            a = (pm.get("a") or {}).get("value")
            out.append(
                pm["verdict"]
                + (f" ({pm['parent']})" if pm.get("parent") else "")
                + (f", a = {a:.3g}" if a is not None else "")
            )
        except (KeyError, IndexError, ValueError, TypeError) as e:
            out.append(f"evidence unreadable ({type(e).__name__})")
    if done.returncode:
        error = next((x for x in lines if x.startswith("error")), None) or next(
            (x for x in reversed(lines) if "Error" in x), ""
        )
        out.append("`" + error.replace(str(where), "…").split("probes[0].params.")[-1][:110].replace("|", "/") + "`")
    warnings = sum("Warning" in x for x in lines)
    if warnings:
        out.append(f"{warnings} numpy warnings")
    return "; ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", type=Path, help="another checkout to run each case on as well (before)")
    ap.add_argument("--out", type=Path, default=REPO / "results" / f"bench-{dt.date.today().isoformat()}")
    args = ap.parse_args()
    if not (ZOO / "zoo.json").exists():
        raise SystemExit(f"{ZOO}: no tiny zoo; run `make test-data` first")
    header = ["input (`tests/bad_checkpoints.py`)", *(["before"] if args.code else []), "after (this checkout)"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            cells = [case.name]
            for label, code in ([("before", args.code)] if args.code else []) + [("after", REPO)]:
                where = Path(tmp) / label / case.name
                where.mkdir(parents=True)
                cells.append(run_case(case, where, code.resolve()))
            rows.append("| " + " | ".join(cells) + " |")
    text = "\n".join(
        [
            "# The weights probe on generated bad and unusual checkpoints",
            "",
            f"{dt.datetime.now().isoformat(timespec='seconds')}; `python benchmarks/bench_bad_checkpoints.py"
            + (" --code BEFORE`" if args.code else "`")
            + "; the expected outcome of each is asserted by `tests/test_bad_checkpoints.py`.",
            "",
            *rows,
        ]
    )
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bad-checkpoints.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
