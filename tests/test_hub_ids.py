"""Models named by Hub id (issue 29), resolved offline from a real Hub cache layout.

The smol family is laid out as huggingface_hub lays out a cache (``tests/hub_cache.py``:
``models--org--name``, blobs, ``snapshots/<commit>``, ``refs/main``) and resolved by
huggingface_hub's own code with ``HF_HUB_OFFLINE=1``: a suite naming the models by id runs,
its report shows the commits, and running it again is answered from the cache alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.config import load_suite
from harness.errors import InputError
from tests.conftest import write_suite
from tests.hub_cache import lay_out

ORG = "parentage-zoo"
MODELS = (("rio_mini", "suspect"), ("nex_mini", "parent"), ("smollm2", "parent"))


@pytest.fixture()
def hub_cache(tmp_path: Path, smol_zoo: Path, monkeypatch) -> dict[str, str]:
    """The smol family in a Hub cache of its own; the environment points huggingface_hub at it, offline."""
    cache = tmp_path / "hub"
    commits = {name: lay_out(cache, f"{ORG}/{name}", smol_zoo / name) for name, _ in MODELS}
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PARENTAGE_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("PARENTAGE_CACHE", str(tmp_path / "cache"))
    return commits


def hub_suite(directory: Path, extra: str = "", revisions: dict[str, str] | None = None) -> Path:
    revisions = revisions or {}
    models = "\n".join(
        f"  - {{name: {n}, role: {r}, path: {ORG}/{n}{', revision: ' + revisions[n] if n in revisions else ''}}}"
        for n, r in MODELS
    )
    text = f"""name: hub-ids
models:
{models}
{extra}
probes:
  - kind: logit_interpolation
    params: {{max_texts: 8, max_tokens: 24}}
  - kind: weights
output_dir: ${{PARENTAGE_RESULTS}}
cache_dir: ${{PARENTAGE_CACHE}}
"""
    return write_suite(directory, text)


def test_a_suite_naming_models_by_hub_id_runs_offline_pinned_and_reruns_from_cache(hub_cache, tmp_path, capsys):
    suite_file = hub_suite(tmp_path)
    suite = load_suite(suite_file)
    for m in suite.models:
        pin = m.hub["path"]
        assert (pin.repo_id, pin.revision, pin.commit) == (f"{ORG}/{m.name}", "main", hub_cache[m.name])
        assert Path(m.path or "").parent.name == "snapshots" and Path(m.path or "").name == pin.commit
    assert main(["validate", str(suite_file)]) == 0
    out = capsys.readouterr().out
    assert f"rio_mini.path: {ORG}/rio_mini @ main: cached, commit {hub_cache['rio_mini']}" in out

    assert main(["run", str(suite_file), "--run-id", "first"]) == 0
    first = capsys.readouterr().err
    report = (tmp_path / "results" / "first" / "report.md").read_text()
    for name, commit in hub_cache.items():
        assert f"`{ORG}/{name}` at `main` = commit `{commit}`" in report
    events = [json.loads(x) for x in (tmp_path / "results" / "first" / "run.jsonl").read_text().splitlines()]
    assert events[0]["suite"]["models"][0]["hub"]["path"]["commit"] == hub_cache["rio_mini"]
    loaded = {e["model"]: e["fingerprint"] for e in events if e["event"] == "model_loaded"}
    for name, commit in hub_cache.items():
        assert loaded[name]["hub"]["path"] == {
            "repo_id": f"{ORG}/{name}",
            "revision": "main",
            "commit": commit,
            "files": "model",
        }
        # The cache key is over the weights' content: the Hub's own sha256 (the blob's name).
        blob = next((tmp_path / "hub" / f"models--{ORG}--{name}" / "blobs").glob("?" * 64))
        assert list(loaded[name]["weights_sha256"].values()) == [blob.name]
    evidence = json.loads((tmp_path / "results" / "first" / "evidence.json").read_text())
    weights = next(p for p in evidence["probes"] if p["probe"] == "weights")["per_model"]["rio_mini"]
    assert weights["verdict"] == "interpolation" and abs(weights["weights"]["nex_mini"]["value"] - 0.6) < 0.001
    assert " 0 from cache" in first

    assert main(["run", str(suite_file), "--run-id", "again"]) == 0
    again = capsys.readouterr().err
    line = next(x for x in again.splitlines() if x.startswith("collected"))
    n = int(line.split()[1])
    assert n > 0 and line == f"collected {n} requests: {n} from cache, 0 computed"
    print(f"\nrerun of a suite naming the smol family by Hub id: {line}")


def test_a_revision_pins_a_commit_and_a_moved_branch_is_seen(hub_cache, smol_zoo, tmp_path):
    """`revision:` a commit hash resolves to that snapshot; main moved on (a new commit in the
    cache) resolves to the new one: the pin says which was tested."""
    old = hub_cache["smollm2"]
    new = lay_out(tmp_path / "hub", f"{ORG}/smollm2", smol_zoo / "sibling")  # main now points elsewhere
    assert new != old
    by_branch = {m.name: m for m in load_suite(hub_suite(tmp_path)).models}
    assert by_branch["smollm2"].hub["path"].commit == new
    pinned = {m.name: m for m in load_suite(hub_suite(tmp_path, revisions={"smollm2": old})).models}
    assert pinned["smollm2"].hub["path"].commit == old and pinned["smollm2"].path.endswith(old)


def test_offline_and_not_cached_fails_at_pre_flight_naming_the_id_and_the_fetch_command(hub_cache, tmp_path):
    text = hub_suite(tmp_path).read_text().replace(f"{ORG}/smollm2", "someone-else/not-here")
    suite_file = write_suite(tmp_path, text)
    with pytest.raises(InputError) as e:
        load_suite(suite_file)
    problem = e.value.problems[0]
    assert problem.field == "models[2].path" and problem.line == 5
    assert "'someone-else/not-here' is neither a local path" in problem.message
    assert "parentage fetch SUITE" in problem.message and "hf download someone-else/not-here --revision main" in (
        problem.message
    )
    wrong = hub_suite(tmp_path, revisions={"nex_mini": "no-such-branch"})
    with pytest.raises(InputError) as e:
        load_suite(wrong)
    assert "models[1].path" in {p.field for p in e.value.problems}
    assert "at revision 'no-such-branch'" in e.value.problems[0].message


def test_a_hand_written_pin_is_refused(hub_cache, tmp_path):
    pin = "hub: {path: {repo_id: x/y, revision: main, commit: null}}"
    text = hub_suite(tmp_path).read_text().replace(f"path: {ORG}/smollm2}}", f"path: {ORG}/smollm2, {pin}}}")
    with pytest.raises(InputError) as e:
        load_suite(write_suite(tmp_path, text))
    assert [p.field for p in e.value.problems] == ["models[2].hub"]
    assert "set by the loader" in e.value.problems[0].message


def test_a_revision_on_a_local_path_is_an_error(smol_zoo, tmp_path):
    suite_file = write_suite(
        tmp_path,
        f"""name: local
models:
  - {{name: a, role: suspect, path: {smol_zoo / "rio_mini"}, revision: main}}
probes: [{{kind: tokenizer}}]
""",
    )
    with pytest.raises(InputError) as e:
        load_suite(suite_file)
    assert [(p.field, p.message) for p in e.value.problems] == [
        ("models[0].revision", "applies to a `path` or `tokenizer` given by Hub id only")
    ]


def test_a_tokenizer_named_by_hub_id_is_resolved_for_an_api_model(hub_cache, tmp_path):
    """An API model publishes no weights, but its tokenizer may be on the Hub: `tokenizer:` takes an
    id too, and only the tokenizer's files are asked for."""
    suite_file = write_suite(
        tmp_path,
        f"""name: api-tokenizer
models:
  - name: api
    role: suspect
    backend: openai
    path: some-served-name
    tokenizer: {ORG}/smollm2
    options: {{base_url: "http://127.0.0.1:9/v1"}}
  - {{name: smollm2, role: parent, path: "hf://{ORG}/smollm2"}}
probes: [{{kind: tokenizer}}]
""",
    )
    api, parent = load_suite(suite_file).models
    assert api.path == "some-served-name" and "path" not in api.hub  # an API model name is not a Hub id
    pin = api.hub["tokenizer"]
    assert (pin.repo_id, pin.commit, pin.files) == (f"{ORG}/smollm2", hub_cache["smollm2"], "tokenizer")
    assert (Path(api.tokenizer or "") / "tokenizer.json").exists()
    assert parent.hub["path"].files == "model" and parent.hub["path"].repo_id == f"{ORG}/smollm2"  # hf:// read
    assert parent.path == api.tokenizer


def test_fetch_offline_finds_every_model_in_the_cache(hub_cache, tmp_path, capsys):
    assert main(["fetch", str(hub_suite(tmp_path))]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{n}.path: {ORG}/{n} @ main: cached, commit {hub_cache[n]}" for n, _ in MODELS]


def test_online_validation_touches_no_network_and_leaves_the_download_to_run(tmp_path, monkeypatch, capsys):
    """Online, with nothing cached: validation reads the cache only (no request leaves this
    machine: there is no network here), pins each id without a commit yet, and says so."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("PARENTAGE_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("PARENTAGE_CACHE", str(tmp_path / "cache"))
    suite = load_suite(hub_suite(tmp_path))
    assert [(m.path, m.hub["path"].commit) for m in suite.models] == [(f"{ORG}/{n}", None) for n, _ in MODELS]
    assert main(["validate", str(tmp_path / "suite.yaml")]) == 0
    out = capsys.readouterr().out
    assert f"rio_mini.path: {ORG}/rio_mini @ main: not cached; `run` or `parentage fetch` downloads it" in out
