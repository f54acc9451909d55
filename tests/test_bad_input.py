"""Bad input and storage faults give one clean line with the documented exit code, lose
nothing, and write nothing where they should not. Runs use the ``fake`` backend (no weights),
so each case takes well under a second of model time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.errors import EXIT_BACKEND, EXIT_BAD_INPUT, EXIT_NO_EVIDENCE, EXIT_OK, EXIT_STORAGE
from tests.conftest import write_suite
from tests.fault_server import FaultServer


def fake_suite(tmp_path: Path, name: str = "fake", texts: int = 8, extra_model: str = "") -> Path:
    return write_suite(
        tmp_path,
        f"""
name: {name}
models:
  - {{name: merge, role: suspect, backend: fake, options: {{seed: 1, mix: {{seed: 2, weight: 0.4}}}}}}
  - {{name: a, role: parent, backend: fake, options: {{seed: 1}}}}
  - {{name: b, role: parent, backend: fake, options: {{seed: 2}}}}
{extra_model}probes:
  - kind: logit_interpolation
    params: {{max_texts: {texts}, max_tokens: 24, cv_splits: 5}}
stats: {{bootstrap: 50}}
output_dir: {tmp_path}/results
cache_dir: {tmp_path}/cache
""",
        name=f"{name}.yaml",
    )


def one_error_line(capsys) -> str:
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("error: "), err
    return err[0].removeprefix("error: ")


def test_the_fake_family_runs_end_to_end(tmp_path):
    # The baseline the other cases spoil: a fake merge is found between its fake parents.
    assert main(["run", str(fake_suite(tmp_path)), "--run-id", "r"]) == EXIT_OK
    ev = json.loads((tmp_path / "results" / "r" / "evidence.json").read_text())["probes"][0]
    merge = ev["per_model"]["merge"]
    assert merge["verdict"] == "interpolation" and abs(merge["a_hat"]["value"] - 0.6) < 0.02  # mix: 0.6 a + 0.4 b


def test_alias_bomb_is_refused_without_expanding(tmp_path, capsys):
    rows = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi"):
        rows.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(rows) + "\n")
    assert main(["validate", str(bomb)]) == EXIT_BAD_INPUT
    assert "aliases expand this document to over 1,000,000 values" in one_error_line(capsys)


@pytest.mark.parametrize("run_id", ["../escaped", ".hidden", "a/b", ".."])
def test_a_run_id_cannot_leave_output_dir(tmp_path, capsys, run_id):
    assert main(["run", str(fake_suite(tmp_path)), "--run-id", run_id]) == EXIT_BAD_INPUT
    assert f"--run-id {run_id!r}: use letters, digits" in one_error_line(capsys)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "results").exists()


def test_a_model_named_dot_dot_is_refused(tmp_path, capsys):
    suite = fake_suite(tmp_path, extra_model="  - {name: '..', role: control, backend: fake}\n")
    assert main(["validate", str(suite)]) == EXIT_BAD_INPUT
    line = one_error_line(capsys)
    assert line.startswith(f"{suite}:7: models[3].name: '..': use letters, digits, '_', '-' and '.', not starting")


def test_resume_with_another_suite_is_refused_naming_what_differs(tmp_path, capsys):
    assert main(["run", str(fake_suite(tmp_path)), "--run-id", "r"]) == EXIT_OK
    capsys.readouterr()
    other = fake_suite(tmp_path, texts=12)
    assert main(["run", str(other), "--resume", str(tmp_path / "results" / "r")]) == EXIT_BAD_INPUT
    line = one_error_line(capsys)
    assert "not the suite of the run" in line and "probes[0].params.max_texts" in line
    assert main(["run", str(fake_suite(tmp_path)), "--resume", str(tmp_path / "results" / "r")]) == EXIT_OK


def test_analyze_never_creates_a_cache_and_finds_a_moved_one(tmp_path, capsys):
    assert main(["run", str(fake_suite(tmp_path)), "--run-id", "r"]) == EXIT_OK
    run = tmp_path / "results" / "r"
    shutil.move(tmp_path / "cache", tmp_path / "moved")
    capsys.readouterr()
    assert main(["analyze", str(run)]) == EXIT_BAD_INPUT
    line = one_error_line(capsys)
    assert "response cache not found at" in line and "--cache DIR" in line
    assert not (tmp_path / "cache").exists()  # nothing recreated
    assert main(["analyze", str(run), "--cache", str(tmp_path / "moved")]) == EXIT_OK


def test_storage_errors_map_to_the_storage_exit_code(tmp_path, capsys):
    assert main(["schema", "--out", str(tmp_path / "no" / "such" / "dir" / "s.json")]) == EXIT_STORAGE
    assert "No such file or directory" in one_error_line(capsys)
    assert main(["run", str(fake_suite(tmp_path)), "--run-id", "r"]) == EXIT_OK
    (tmp_path / "results" / "r" / "evidence.json").unlink()
    (tmp_path / "results" / "r" / "evidence.json").mkdir()  # unwritable where analyze writes
    capsys.readouterr()
    assert main(["analyze", str(tmp_path / "results" / "r")]) == EXIT_STORAGE
    assert "evidence.json" in one_error_line(capsys)


def test_console_markup_in_names_is_printed_not_interpreted(tmp_path, capsys, monkeypatch):
    server = FaultServer().start()
    try:
        monkeypatch.setenv("PARENTAGE_CACHE", str(tmp_path / "cache"))
        suite = write_suite(
            tmp_path,
            f"""
name: markup
models:
  - name: api
    role: suspect
    backend: openai
    path: "weird[/bold]model[red]"
    options: {{base_url: "{server.base_url}", probe_capabilities: false, max_attempts: 1}}
probes:
  - {{kind: identity, params: {{labels: {{x: [answer]}}, max_questions: 2, samples: 1, conditions: [none]}}}}
output_dir: {tmp_path}/results
""",
        )
        assert main(["run", str(suite), "--run-id", "r"]) == EXIT_OK
        assert "weird[/bold]model[red]" in " ".join(capsys.readouterr().err.split())
        server.stop()  # now every request fails: the error, with the id, is printed as text
        assert main(["run", str(suite), "--run-id", "r2"]) == EXIT_BACKEND
        assert "backend failed" in " ".join(capsys.readouterr().err.split())
    finally:
        server.httpd.server_close()


def test_missing_vllm_is_named_with_its_install_hint(tmp_path, capsys, monkeypatch):
    from harness.backends import vllm_server

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("PARENTAGE_VLLM", raising=False)
    monkeypatch.setattr(vllm_server, "CHECKOUT_VLLM", tmp_path / "no-venv" / "python")
    suite = write_suite(
        tmp_path,
        "name: v\nmodels:\n  - {name: m, role: suspect, backend: vllm, path: org/model}\n"
        "probes:\n  - {kind: identity, params: {labels: {x: [y]}}}\n",
    )
    assert main(["run", str(suite)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    # Offline (make test sets HF_HUB_OFFLINE=1), org/model is also not in the Hub cache: both are said.
    launcher = next(x for x in err.splitlines() if "no vLLM launcher found" in x)
    assert "models[0].path: no vLLM launcher found" in launcher and "pip install 'parentage[vllm]'" in launcher
    assert "'org/model' is neither a local path" in err
    # Online with an empty Hub cache (a GPU node before `parentage fetch`): the launcher is the one problem.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert main(["run", str(suite)]) == EXIT_BAD_INPUT
    line = one_error_line(capsys)
    assert "models[0].path: no vLLM launcher found" in line and "pip install 'parentage[vllm]'" in line


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("parentage 0.")


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--alpha", "0", "--alpha: Input should be greater than 0"),
        ("--alpha", "2", "--alpha: Input should be less than 1"),
        ("--bootstrap", "0", "--bootstrap: Input should be greater than or equal to 50"),
        ("--bootstrap", "-5", "--bootstrap: Input should be greater than or equal to 50"),
        ("--bootstrap", "100000000", "--bootstrap: Input should be less than or equal to 100000"),
    ],
)
def test_analysis_overrides_are_validated_like_suite_values(tmp_path, capsys, flag, value, message):
    assert main(["run", str(fake_suite(tmp_path)), "--run-id", "r"]) == EXIT_OK
    before = (tmp_path / "results" / "r" / "evidence.json").read_bytes()
    capsys.readouterr()
    assert main(["analyze", str(tmp_path / "results" / "r"), flag, value]) == EXIT_BAD_INPUT
    assert one_error_line(capsys) == message
    assert (tmp_path / "results" / "r" / "evidence.json").read_bytes() == before  # nothing overwritten


def test_preflight_reports_every_probe_problem_in_one_pass_before_any_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PARENTAGE_HOME", str(tmp_path / "empty-home"))  # no tokenizer library prepared
    suite = write_suite(
        tmp_path,
        """name: pre
models:
  - {name: s, role: suspect, backend: fake}
  - {name: a, role: parent, backend: fake, path: same}
  - {name: b, role: parent, backend: fake, path: same}
probes:
  - kind: logit_interpolation
    params: {parents: [a, ghost]}
  - kind: logit_interpolation
    id: twins
  - kind: identity
    params:
      labels: {nex: [Nex], rio: [Rio, nex]}
      model_labels: {nobody: nex, a: qwen}
      languages: [klingon]
  - {kind: tokenizer, params: {library: true}}
""",
    )
    assert main(["validate", str(suite)]) == EXIT_BAD_INPUT
    err = [x.removeprefix("error: ") for x in capsys.readouterr().err.splitlines()]
    expected = [
        f"{suite}:8: probes[0].params.parents[1]: no model named 'ghost' in this suite",
        f"{suite}:8: probes[0].params.parents: needs at least two parent models (role: parent, or "
        "params.parents); found: a",
        f"{suite}:9: probes[1]: parents 'a' and 'b' are the same model (same backend and path)",
        f"{suite}:14: probes[2].params.model_labels.nobody: no model named 'nobody' in this suite",
        f"{suite}:14: probes[2].params.model_labels.a: unknown label 'qwen'; labels: nex, rio",
        f"{suite}:13: probes[2].params.labels.rio: alias 'nex' is also under label 'nex'",
        f"{suite}:15: probes[2].params.languages: no identity question left for ['klingon']; "
        "the bank has en, es, pt, zh",
        f"{suite}:16: probes[3].params.library: the tokenizer library is not prepared at",
    ]
    assert len(err) == len(expected), err
    for want in expected:
        assert any(line.startswith(want) for line in err), (want, err)
    assert any("run `make test-data` (or `parentage assets fetch`)" in line for line in err)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "a"}\n{"text": "b"\n{"text": "c"}\n', "data.jsonl:2: not valid JSON"),
        ('{"text": "a"}\n{"body": "b"}\n', "data.jsonl:2: no 'text' field (fields: body)"),
        ("\n\n", "data.jsonl: empty data file"),
    ],
)
def test_data_files_are_read_at_validation_naming_the_line(tmp_path, capsys, content, message):
    (tmp_path / "data.jsonl").write_text(content)
    suite = write_suite(
        tmp_path,
        "name: d\nmodels:\n  - {name: s, role: suspect, backend: fake}\n  - {name: a, role: parent, backend: fake}\n"
        "  - {name: b, role: parent, backend: fake, options: {seed: 2}}\nprobes:\n"
        "  - kind: logit_interpolation\n    data: {file: data.jsonl}\n",
    )
    assert main(["validate", str(suite)]) == EXIT_BAD_INPUT
    line = one_error_line(capsys)
    assert line.startswith(f"{suite}:8: probes[0].data.file: ") and message in line


def test_unset_key_variable_and_absent_gpu_are_found_before_any_model(tmp_path, capsys, monkeypatch, zoo):
    monkeypatch.delenv("PARENTAGE_NO_SUCH_KEY", raising=False)
    suite = write_suite(
        tmp_path,
        f"""name: k
models:
  - {{name: s, role: suspect, backend: openai, path: m, options: {{base_url: "http://127.0.0.1:9/v1",
      api_key_env: PARENTAGE_NO_SUCH_KEY}}}}
  - {{name: a, role: parent, backend: hf, path: {zoo}/parent_a, options: {{device: cuda}}}}
probes:
  - {{kind: identity, params: {{labels: {{x: [y]}}}}}}
""",
    )
    assert main(["validate", str(suite)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"{suite}:4: models[0].options.api_key_env: the environment variable PARENTAGE_NO_SUCH_KEY is not set" in err
    assert f"{suite}:5: models[1].options.device: 'cuda' asked for, but this machine has no GPU driver" in err


def degenerate_suite(tmp_path: Path, suspect: str, parent_b_seed: int) -> Path:
    return write_suite(
        tmp_path,
        f"""name: degenerate
models:
  - {{name: suspect, role: suspect, backend: fake, path: s, options: {suspect}}}
  - {{name: a, role: parent, backend: fake, path: a, options: {{seed: 1}}}}
  - {{name: b, role: parent, backend: fake, path: b, options: {{seed: {parent_b_seed}}}}}
  - {{name: other, role: control, backend: fake, path: o, options: {{seed: 4}}}}
probes:
  - {{kind: logit_interpolation, params: {{max_texts: 16, max_tokens: 32}}}}
stats: {{bootstrap: 100}}
output_dir: {tmp_path}/results
cache_dir: {tmp_path}/cache
""",
    )


def test_parents_with_identical_weights_give_no_verdict_and_say_why(tmp_path, capsys):
    # Different paths (pre-flight cannot know), same weights: found in analysis, not scored as evidence.
    suite = degenerate_suite(tmp_path, "{seed: 1, mix: {seed: 2, weight: 0.4}}", parent_b_seed=1)
    assert main(["run", str(suite), "--run-id", "r"]) == 5
    err = " ".join(capsys.readouterr().err.split())
    assert "NO VERDICT from probe logit_interpolation: parents 'a' and 'b' are the same model within the noise" in err
    report = (tmp_path / "results" / "r" / "report.md").read_text()
    assert "inf" not in report and "nan" not in report


def test_any_two_of_three_parents_within_the_noise_floor_give_no_verdict(tmp_path, capsys):
    # b and c are one model (seed 2) under two paths; a alone differs. Every pair is checked.
    suite = degenerate_suite(tmp_path, "{seed: 1, mix: {seed: 2, weight: 0.4}}", parent_b_seed=2)
    text = suite.read_text().replace(
        "  - {name: other,",
        "  - {name: c, role: parent, backend: fake, path: c, options: {seed: 2}}\n  - {name: other,",
    )
    suite.write_text(text)
    assert main(["run", str(suite), "--run-id", "r"]) == 5
    err = " ".join(capsys.readouterr().err.split())
    assert "NO VERDICT from probe logit_interpolation: parents 'b' and 'c' are the same model within the noise" in err


def test_a_copied_parent_directory_is_refused_before_any_model_loads(tmp_path, capsys, zoo):
    shutil.copytree(zoo / "parent_a", tmp_path / "copy_of_a")
    suite = write_suite(
        tmp_path,
        f"""name: twins
models:
  - {{name: s, role: suspect, backend: hf, path: {zoo}/linear_0.6}}
  - {{name: a, role: parent, backend: hf, path: {zoo}/parent_a}}
  - {{name: b, role: parent, backend: hf, path: {zoo}/parent_b}}
  - {{name: a2, role: parent, backend: hf, path: {tmp_path}/copy_of_a}}
probes:
  - kind: logit_interpolation
""",
    )
    assert main(["validate", str(suite)]) == EXIT_BAD_INPUT
    assert one_error_line(capsys) == (
        f"{suite}:8: probes[0]: parents 'a' and 'a2' are the same model: {zoo}/parent_a and "
        f"{tmp_path}/copy_of_a hold identical weight files"
    )


def test_weight_files_differing_in_one_unsampled_byte_are_not_called_identical(tmp_path):
    from harness.provenance import SAMPLED_BLOCKS, same_weight_files

    block, size = 1 << 16, 1 << 23
    data = bytearray(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "model.safetensors").write_bytes(bytes(data))
    (tmp_path / "b" / "model.safetensors").write_bytes(bytes(data))
    assert same_weight_files(tmp_path / "a", tmp_path / "b")
    sampled = {o + d for o in (size * i // SAMPLED_BLOCKS for i in range(SAMPLED_BLOCKS)) for d in range(block)}
    hidden = next(i for i in range(size) if i not in sampled)
    data[hidden] ^= 1
    (tmp_path / "b" / "model.safetensors").write_bytes(bytes(data))
    assert not same_weight_files(tmp_path / "a", tmp_path / "b")


def test_a_copy_prints_no_meaningless_gain(tmp_path):
    suite = degenerate_suite(tmp_path, "{seed: 1, mix: {seed: 3, weight: 0.000001}}", parent_b_seed=2)
    assert main(["run", str(suite), "--run-id", "r"]) == EXIT_OK
    report = (tmp_path / "results" / "r" / "report.md").read_text()
    assert "**suspect: copy** (a)" in report
    assert "CV gain over the better parent n/a (a copy: nothing is left for an interpolation to explain)" in report
    assert " inf" not in report and "nan" not in report


def test_a_top_level_error_does_not_hide_entry_problems(tmp_path, capsys):
    suite = write_suite(
        tmp_path,
        "name: x\nmodels:\n  - {name: s, role: suspect, backend: fake}\n"
        "  - {name: a, role: parent, backend: fake, options: {bogus: 1}}\n"
        "probes:\n  - {kind: logit_interpolation, params: {max_tokens: 1}}\nstats: {alpha: 5}\n",
    )
    assert main(["validate", str(suite)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.splitlines()
    assert [err[1], err[2]] == [  # every problem, in the file's order
        f"error: {suite}:6: probes[0].params.max_tokens: Input should be greater than or equal to 4",
        f"error: {suite}:7: stats.alpha: Input should be less than 1",
    ]
    assert err[0].startswith(f"error: {suite}:4: models[1].options.bogus: unknown key 'bogus' valid keys: "), err[0]


def test_a_model_rebuilt_at_the_same_path_gets_a_new_content_signature(tmp_path):
    """The vllm backend's cache key includes ``content_signature`` of the served files: a model
    retrained and saved over the same directory must not be answered from the old one's cache,
    while a copy elsewhere (same bytes) keeps hitting it."""
    import shutil

    from harness.provenance import content_signature

    rng = np.random.default_rng(1)
    model = tmp_path / "m"
    model.mkdir()
    weights = rng.standard_normal(1 << 20).astype(np.float32)  # 4 MiB, like a small shard
    (model / "model.safetensors").write_bytes(weights.tobytes())
    (model / "config.json").write_text('{"hidden_size": 8}')
    before = content_signature(model)
    shutil.copytree(model, tmp_path / "copy")
    assert content_signature(tmp_path / "copy") == before
    retrained = weights + 1e-3 * rng.standard_normal(weights.shape).astype(np.float32)  # a fine-tune
    (model / "model.safetensors").write_bytes(retrained.tobytes())
    assert content_signature(model)["model.safetensors"] != before["model.safetensors"]
    (model / "config.json").write_text('{"hidden_size": 9}')  # small files are covered in full
    assert content_signature(model)["config.json"] != before["config.json"]


def test_a_model_that_failed_to_load_is_named_with_its_error_in_the_report(tmp_path, capsys):
    """Issue 14: a model that failed to load appeared only as "no records were collected", and the
    partial run's report said "this suite has no control models"."""
    dead = "  - {name: ctl, role: control, backend: openai, options: {base_url: 'http://127.0.0.1:9/v1', model: m}}\n"
    suite = fake_suite(tmp_path, extra_model=dead)
    assert main(["run", str(suite), "--run-id", "r"]) == EXIT_BACKEND
    capsys.readouterr()
    run = tmp_path / "results" / "r"
    # a partial run's evidence is no finished case: analyze exits 5, as run does for no evidence
    assert main(["analyze", str(run)]) == EXIT_NO_EVIDENCE and main(["report", str(run)]) == EXIT_OK
    report = (run / "report.md").read_text()
    row = next(x for x in report.splitlines() if x.startswith("| ctl | control | openai |"))
    assert "**failed to load**: " in row and "127.0.0.1:9" in row
    assert "the suite's controls (ctl) have no answers in this run yet" in report
    assert "this suite has no control models" not in report


def test_analysis_never_replaces_evidence_with_evidence_from_less_data(tmp_path, capsys):
    """Issue 27: with raw/ deleted, `analyze` overwrote good evidence with "skipped: no records were
    collected" and exit 0. It now refuses, names the file, and leaves the evidence as it was."""
    assert main(["run", str(fake_suite(tmp_path)), "--run-id", "r"]) == EXIT_OK
    run = tmp_path / "results" / "r"
    before = (run / "evidence.json").read_text()
    shutil.rmtree(run / "raw")
    capsys.readouterr()
    assert main(["analyze", str(run)]) == EXIT_BAD_INPUT
    line = one_error_line(capsys)
    assert "raw/merge.jsonl: holds 0 of the" in line and "--resume" in line
    assert (run / "evidence.json").read_text() == before


def test_compare_does_not_call_a_suspect_missing_from_one_run_the_same(tmp_path, capsys):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    assert main(["run", str(fake_suite(tmp_path / "a")), "--run-id", "r"]) == EXIT_OK
    other = fake_suite(tmp_path / "b").read_text().replace("name: merge, role: suspect", "name: other, role: suspect")
    (tmp_path / "b" / "fake.yaml").write_text(other)
    assert main(["run", str(tmp_path / "b" / "fake.yaml"), "--run-id", "r"]) == EXIT_OK
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "a" / "results" / "r"), str(tmp_path / "b" / "results" / "r")]) == 0
    rows = {x.split("|")[1].strip(): x for x in capsys.readouterr().out.splitlines() if x.startswith("| ")}
    assert "n/a (not in B)" in rows["merge"] and "n/a (not in this run)" in rows["merge"]
    assert "n/a (not in A)" in rows["other"]


def test_what_fails_mid_run_is_refused_before_it(tmp_path, capsys):
    """A 300-character model name passed `validate` and failed at its first file ("File name too
    long"); screen_texts above max_texts was accepted; a cache that cannot be opened left an empty
    run directory behind."""
    long_name = fake_suite(tmp_path).read_text().replace("name: merge,", f"name: {'m' * 300},")
    (tmp_path / "long.yaml").write_text(long_name)
    assert main(["validate", str(tmp_path / "long.yaml")]) == EXIT_BAD_INPUT
    assert "models[0].name" in one_error_line(capsys)
    screen = fake_suite(tmp_path).read_text().replace("cv_splits: 5", "cv_splits: 5, screen_texts: 40")
    (tmp_path / "screen.yaml").write_text(screen)
    assert main(["validate", str(tmp_path / "screen.yaml")]) == EXIT_BAD_INPUT
    assert "screen_texts (40) is more than max_texts (8)" in one_error_line(capsys)
    (tmp_path / "blocked").write_text("a file where the cache directory should be")
    blocked = fake_suite(tmp_path).read_text().replace(f"cache_dir: {tmp_path}/cache", f"cache_dir: {tmp_path}/blocked")
    (tmp_path / "blocked.yaml").write_text(blocked)
    assert main(["run", str(tmp_path / "blocked.yaml"), "--run-id", "r"]) == EXIT_STORAGE
    assert not (tmp_path / "results" / "r").exists()


def test_parents_that_tokenise_differently_are_refused_by_the_text_probe_at_preflight(tmp_path, zoo, capsys):
    """It was a ValueError after every request was sent; the tokenizer files say it at once."""
    other = tmp_path / "other"
    shutil.copytree(zoo / "parent_b", other)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(zoo / "homegrown_tokenizer" / f, other / f)
    suite = write_suite(
        tmp_path,
        f"""
name: text-tok
models:
  - {{name: suspect, role: suspect, path: {zoo / "linear_0.6"}}}
  - {{name: parent_a, role: parent, path: {zoo / "parent_a"}}}
  - {{name: other, role: parent, path: {other}}}
probes:
  - kind: text_interpolation
output_dir: {tmp_path}/results
cache_dir: {tmp_path}/cache
""",
    )
    assert main(["validate", str(suite)]) == EXIT_BAD_INPUT
    line = one_error_line(capsys)
    assert "parents 'parent_a' and 'other' tokenise differently" in line


def test_a_pool_selection_that_cannot_reach_alpha_says_so(tmp_path):
    """On 8 texts the selection half has 4: the signed-rank test's smallest p is 1/16, above alpha,
    so "one candidate suffices" is no finding; the reasons and the report's Limitations say why."""
    text = fake_suite(tmp_path).read_text().replace("role: parent", "role: candidate")
    (tmp_path / "pool.yaml").write_text(text)
    main(["run", str(tmp_path / "pool.yaml"), "--run-id", "r"])
    ev = json.loads((tmp_path / "results" / "r" / "evidence.json").read_text())["probes"][0]
    assert any("smallest possible p is 0.062" in x for x in ev["limitations"])
    assert "smallest possible p is 0.062" in (tmp_path / "results" / "r" / "report.md").read_text()
