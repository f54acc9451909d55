"""Suite validation: every malformed suite gets one line naming file, line and field; exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.config import load_suite
from harness.errors import EXIT_BAD_INPUT

VALID = """\
name: t
models:
  - name: s
    role: suspect
    path: m1
  - name: a
    role: parent
    path: m2
  - {name: b, role: parent, path: m3}
probes:
  - kind: logit_interpolation
stats:
  bootstrap: 200
"""


@pytest.fixture()
def suite_dir(tmp_path: Path) -> Path:
    for m in ("m1", "m2", "m3"):
        (tmp_path / m).mkdir()
        (tmp_path / m / "config.json").write_text("{}")
    return tmp_path


def edit(line_no: int, new: str) -> str:
    lines = VALID.splitlines()
    lines[line_no - 1] = new
    return "\n".join(lines) + "\n"


# (case, YAML text, expected line, expected field, expected message fragment)
CASES = [
    ("yaml-syntax", edit(4, "    role: suspect: x"), 4, "", "invalid YAML: mapping values are not allowed"),
    ("unknown-key", edit(5, "    paht: m1"), 5, "models[0].paht", "unknown key 'paht'"),
    ("unknown-probe", edit(11, "  - kind: logits"), 11, "probes[0].kind", "unknown probe 'logits'; known:"),
    ("missing-path", edit(8, "    path: nowhere"), 8, "models[1].path", "model path does not exist"),
    ("wrong-type", edit(13, "  bootstrap: many"), 13, "stats.bootstrap", "valid integer"),
    ("duplicate-name", edit(6, "  - name: s"), 6, "models[1].name", "duplicate model name 's' (also models[0])"),
    ("duplicate-key", edit(5, "    role: parent"), 5, "", "duplicate key 'role' (first on line 4)"),
    (
        "unknown-backend",
        VALID.replace("    path: m2\n", "    path: m2\n    backend: tgi\n"),
        9,
        "models[1].backend",
        "unknown backend 'tgi'",
    ),
    (
        "probe-param",
        VALID.replace("logit_interpolation\n", "logit_interpolation\n    params: {max_tokens: 1}\n"),
        12,
        "probes[0].params.max_tokens",
        "greater than or equal to 4",
    ),
    ("role-enum", edit(7, "    role: father"), 7, "models[1].role", "'suspect', 'parent', 'control' or 'candidate'"),
]


@pytest.mark.parametrize(("case", "text", "line", "field", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_malformed_suite_reports_file_line_field(suite_dir, capsys, case, text, line, field, fragment):
    path = suite_dir / f"{case}.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    prefix = f"error: {path}:{line}: " + (f"{field}: " if field else "")
    assert err[0].startswith(prefix), (err[0], prefix)
    assert fragment in err[0]


def test_an_unknown_key_names_the_nearest_valid_key_and_every_valid_one(suite_dir, capsys):
    """A misspelt key, at the top of a probe's params, nested in its verdict settings, and in a
    backend's options: the message names the key meant and lists the valid ones (from the
    probe's or backend's own pydantic model, so a new parameter appears without a change here)."""
    from probes.logit.params import LogitParams
    from probes.logit.verdict import VerdictThresholds

    text = VALID.replace(
        "logit_interpolation\n",
        "logit_interpolation\n    params: {max_text: 8, verdict: {own_min_taskfree: 2}}\n",
    ).replace("    path: m2\n", "    path: m2\n    options: {dtyp: float32}\n")
    path = suite_dir / "typo.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == EXIT_BAD_INPUT
    err = {line.split(": ")[2]: line for line in capsys.readouterr().err.strip().splitlines()}
    assert "unknown key 'max_text'; did you mean 'max_texts'? valid keys: " in err["probes[0].params.max_text"]
    assert err["probes[0].params.max_text"].endswith(", ".join(LogitParams.model_fields))
    nested = err["probes[0].params.verdict.own_min_taskfree"]
    assert "did you mean 'own_min_task_free'?" in nested and nested.endswith(", ".join(VerdictThresholds.model_fields))
    assert "unknown key 'dtyp'; did you mean 'dtype'?" in err["models[1].options.dtyp"]


def test_valid_suite_passes_and_resolves_paths(suite_dir, capsys):
    path = suite_dir / "ok.yaml"
    path.write_text(VALID)
    assert main(["validate", str(path)]) == 0
    assert "ok (3 models, 1 probes)" in capsys.readouterr().out
    suite = load_suite(path)
    assert suite.models[0].path == str(suite_dir / "m1")  # relative to the suite file, not the cwd
    assert suite.probes[0].params["max_tokens"] == 64  # probe defaults are filled in and recorded


def test_all_problems_reported_in_one_pass(suite_dir, capsys):
    text = edit(8, "    path: nowhere").replace("  - name: a", "  - name: s")
    path = suite_dir / "two.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert [e.split(": ")[2] for e in err] == ["models[1].name", "models[1].path"]


def test_env_expansion_and_unset_variable(suite_dir, monkeypatch, capsys):
    monkeypatch.setenv("MODEL_ROOT", str(suite_dir))
    path = suite_dir / "env.yaml"
    path.write_text(edit(5, "    path: ${MODEL_ROOT}/m1").replace("path: m2", "path: ${NOPE_UNSET}/m2"))
    assert main(["validate", str(path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err == f"error: {path}:8: models[1].path: environment variable NOPE_UNSET is not set and has no default"


def test_shipped_configs_validate(zoo, monkeypatch, tmp_path):
    repo = Path(__file__).resolve().parent.parent
    for var in ("SUSPECT_API_KEY", "NEX_API_KEY", "QWEN_API_KEY", "CONTROL_API_KEY"):  # api-only-example's keys:
        monkeypatch.setenv(var, "sk-test")  # an unset key variable is a pre-flight error
    # Online (the 397B suite names its models by Hub id): validation reads the Hub cache only,
    # so nothing is downloaded, and the models not cached are pinned when `run` fetches them.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    for cfg in sorted((repo / "configs").glob("*.yaml")):
        suite = load_suite(cfg)
        if cfg.name == "rio-397b.yaml":
            pins = [m.hub["path"] for m in suite.models if "path" in m.hub]
            assert len(pins) == 4 and all(p.commit is None and p.revision == "main" for p in pins)


def test_json_schema_is_current():
    import json

    from harness.config import full_suite_json_schema

    repo = Path(__file__).resolve().parent.parent
    shipped = json.loads((repo / "harness" / "schema" / "suite.schema.json").read_text())
    assert shipped == full_suite_json_schema(), (
        "regenerate with: parentage schema suite --out harness/schema/suite.schema.json"
    )
    assert shipped["additionalProperties"] is False
    assert set(shipped["properties"]) >= {"name", "models", "probes", "stats", "output_dir"}


def test_the_json_schema_checks_probe_params_and_backend_options():
    """What an editor sees: every shipped suite is valid under the schema, and a misspelt or
    out-of-range parameter is refused at its own path, per probe kind and per backend (hf when
    no backend is named), as the loader refuses it."""
    import json

    import jsonschema
    import yaml

    repo = Path(__file__).resolve().parent.parent
    schema = json.loads((repo / "harness" / "schema" / "suite.schema.json").read_text())
    check = jsonschema.Draft202012Validator(schema)
    for cfg in sorted((repo / "configs").glob("*.yaml")):
        assert not [e.message for e in check.iter_errors(yaml.safe_load(cfg.read_text()))], cfg.name
    suite = {
        "name": "x",
        "models": [
            {"name": "s", "role": "suspect", "path": "p", "options": {"dtyp": "float32"}},  # hf, by default
            {"name": "v", "role": "parent", "backend": "vllm", "path": "p", "options": {"tensor_parallel": 2}},
            {"name": "w", "role": "parent", "backend": "vllm", "path": "p", "options": {"tensor_parallel_size": 2}},
        ],
        "probes": [
            {"kind": "identity", "params": {"labels": {"a": ["A"]}, "max_question": 4}},
            {"kind": "logit_interpolation", "params": {"max_texts": 0, "verdict": {"a_margin": 0.7}}},
            {"kind": "text_interpolation", "params": {"prompts": 16}},
        ],
    }
    errors = sorted(
        (tuple(e.absolute_path), e.message)
        for e in check.iter_errors(suite)
        for e in ([e] if not e.context else [c for c in e.context if c.validator != "type"] or [e])
    )
    paths = [p for p, _ in errors]
    assert ("models", 0, "options") in paths and ("models", 1, "options") in paths
    assert ("probes", 0, "params") in paths
    assert ("probes", 1, "params", "max_texts") in paths and ("probes", 1, "params", "verdict", "a_margin") in paths
    assert not [p for p in paths if p[:2] in (("models", 2), ("probes", 2))]
    assert any("'dtyp' was unexpected" in m for _, m in errors)
    assert any("'max_question' was unexpected" in m for _, m in errors)


def test_every_problem_of_a_suite_in_one_pass(tmp_path, capsys, monkeypatch):
    """Issue 30: an unset ${VAR} in output_dir hid everything else, a schema error hid a missing
    model path in another entry, and a missing suspect appeared only once a name error was fixed.
    Six problems on six lines: validate reports all six, in the file's order, each at its line."""
    monkeypatch.delenv("UNSET_VAR_FOR_THE_TEST", raising=False)
    (tmp_path / "there").mkdir()
    (tmp_path / "there" / "config.json").write_text("{}")
    suite = tmp_path / "s.yaml"
    suite.write_text(
        """name: pf
models:
  - {name: a, role: parent, path: there, optionz: {}}
  - {name: b, role: parent, path: nowhere}
  - {name: "bad name", role: control, path: there}
probes:
  - kind: logit_interpolation
    params: {max_text: 3}
output_dir: ${UNSET_VAR_FOR_THE_TEST}/results
"""
    )
    assert main(["validate", str(suite)]) == EXIT_BAD_INPUT
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    where = [line.split(": ")[1:3] for line in err]
    assert where == [
        [f"{suite}:2", "models"],
        [f"{suite}:3", "models[0].optionz"],
        [f"{suite}:4", "models[1].path"],
        [f"{suite}:5", "models[2].name"],
        [f"{suite}:8", "probes[0].params.max_text"],
        [f"{suite}:9", "output_dir"],
    ], err
    assert "a suite needs at least one model with role: suspect" in err[0]
    assert "UNSET_VAR_FOR_THE_TEST is not set" in err[-1]
