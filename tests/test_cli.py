"""CLI behaviour a user relies on: offline re-analysis, listing, exit codes, nothing lost on failure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.cli import main
from harness.errors import EXIT_BACKEND, EXIT_BAD_INPUT


def test_analyze_reruns_offline_with_another_alpha(demo_run, capsys, monkeypatch):
    run_dir = demo_run["dir"]
    before = json.loads((run_dir / "evidence.json").read_text())
    monkeypatch.setenv("PARENTAGE_ZOO", "/nonexistent")  # no model is needed to re-analyse
    assert main(["analyze", str(run_dir), "--alpha", "0.01"]) == 0
    after = json.loads((run_dir / "evidence.json").read_text())
    assert after["stats"]["alpha"] == 0.01

    def width(ev, name, model):
        e = next(e for e in ev["probes"][0]["estimates"] if e["name"] == name and e["model"] == model)
        return e["ci_high"] - e["ci_low"], e["value"], e["ci_level"]

    w5, v5, _ = width(before, "a_hat", "suspect")
    w1, v1, level = width(after, "a_hat", "suspect")
    assert v1 == v5 and w1 > w5 and level == 0.99
    assert main(["report", str(run_dir)]) == 0
    report = (run_dir / "report.md").read_text()
    assert "alpha 0.01" in report
    # every interval is labelled by the level it was computed at (issue 14: it read "95%" after --alpha 0.01)
    assert "99% CI" in report and "95%" not in report
    # put the original evidence back for other tests sharing the session fixture
    assert main(["analyze", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "**suspect: interpolation**. a_hat = " in out
    # the case's conclusion is the last thing printed, word for word as the report's case states it
    assert out.rstrip().splitlines()[-1] == (
        "conclusion, suspect: a merge of the parents, reproduced by merging parent_a 0.600 + parent_b 0.400 "
        "(linear) with mergekit"
    )


def test_the_case_comes_first_and_concludes_merge_for_the_demo_merge(demo_run):
    """Issue 14: a conclusion across probes before any probe detail; the tiny 0.6 merge is a merge."""
    report = (demo_run["dir"] / "report.md").read_text()
    case = report[report.index("## The case") : report.index("## Models")]
    assert report.index("## The case") < report.index("## Probe")
    assert (
        "### suspect" in case and "**Conclusion: a merge of the parents, reproduced by merging parent_a 0.600" in case
    )
    assert "| a merge of the parents **(concluded)** | supports: a = 0.6" in case
    assert "Lineage probes (logit interpolation, weights, rebuild) decide" in case  # the rule is printed
    assert "harness/case.py" not in case  # issue 30: the reader is not sent to the source
    why = case[case.index("Why the cells read as they do:") :]  # issue 30: each column's reading, in words
    assert "- logit_interpolation (full): Its word-by-word predictions" in why and "- weights: Its published" in why


def test_the_report_opens_in_plain_words_and_gives_merge_weights_to_merges_only(demo_run):
    """Issue 30: the report was for specialists, and printed "as a merge weight -4.92 to 4.98" for
    the independent model. The summary in plain words comes before the case, from the same
    evidence: the question, the answer, how sure, what it rests on, what would change it."""
    report = (demo_run["dir"] / "report.md").read_text()
    plain = report[report.index("## In plain words") : report.index("## The case")]
    assert report.index("## In plain words") < report.index("## The case")
    assert (
        "**The answer.** A merge of the parents, reproduced by merging parent_a 0.600 + parent_b 0.400 (linear) "
        "with mergekit: made by averaging the parents' weights"
    ) in plain
    assert "All 3 kinds of evidence that can decide point this way" in plain  # logits, weights, the rebuild
    assert "about 60% parent_a and 40% parent_b" in plain  # a = 0.601, truly 0.6
    assert "Its published weights are 0.60 x parent_a + 0.40 x parent_b, to within rounding" in plain
    assert "**What would change it.**" in plain
    ev = {p["instance"]: p for p in demo_run["evidence"]["probes"]}["logit_interpolation"]["per_model"]
    table = report[report.index("| model | role | verdict | weights") :].split("\n\n")[0]
    for model, r in ev.items():
        row = next(line for line in table.splitlines() if line.startswith(f"| {model} |"))
        assert ("as a merge weight" in row) == (r["verdict"] in ("interpolation", "interpolation_plus_training"))
    assert sum(r["verdict"] == "interpolation" for r in ev.values()) == 1


def test_run_records_provenance(demo_run):
    events = [json.loads(x) for x in (demo_run["dir"] / "run.jsonl").read_text().splitlines()]
    start = events[0]
    assert start["event"] == "run_start"
    assert start["suite"]["stats"]["seed"] == 20260601
    assert start["environment"]["packages"]["torch"] and "git" in start["environment"]
    loaded = [e for e in events if e["event"] == "model_loaded"]
    assert [e["model"] for e in loaded][:7] == [
        "suspect",
        "parent_a",
        "parent_b",
        "sibling",
        "a_ft",
        "independent",
        "student",
    ]
    # then the merges the rebuild probe built, each logged with its recipe before it was loaded
    built = {e["model"]["name"]: e for e in events if e["event"] == "model_built"}
    assert built and [e["model"] for e in loaded][7:] == list(built)
    assert all(e["role"] == "rebuild" for e in loaded[7:])
    for e in loaded:
        fp = e["fingerprint"]
        assert fp["weights_sha256"] and fp["chat_template_sha256"] and fp["dtype"] == "float32"
    assert "run_end" in [e["event"] for e in events]


def test_list_names_probes_and_backends(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "logit_interpolation" in out and "hf " in out


def test_list_name_prints_every_parameter_with_its_default_and_bounds(capsys):
    """Issue 30: `parentage list PROBE|BACKEND` shows what a suite may set, read from the probe's
    or backend's own pydantic model (nested models as dotted keys)."""
    from harness.backends.vllm import VLLMBackend
    from probes.logit.params import LogitParams
    from probes.logit.verdict import VerdictThresholds
    from probes.text.params import TextParams

    assert main(["list", "logit_interpolation"]) == 0
    out = capsys.readouterr().out
    keys = [line.split(":")[0].strip() for line in out.splitlines() if line.startswith("  ") and line[2] != " "]
    nested = [f"verdict.{k}" for k in VerdictThresholds.model_fields]
    assert keys == [k for k in LogitParams.model_fields if k != "verdict"] + nested
    assert "  max_tokens: integer = 64  (>= 4)" in out
    assert "  verdict.own_min_task_free: number = 1.25" in out
    assert main(["list", "text_interpolation"]) == 0
    out = capsys.readouterr().out
    assert f"  samples: integer = {TextParams().samples}  (>= 2)" in out
    assert main(["list", "vllm"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {k}: " in out for k in VLLMBackend.Options.model_fields)
    assert main(["list", "nope"]) == 2
    assert "unknown probe or backend 'nope'; known: logit_interpolation" in capsys.readouterr().err


def test_broken_model_fails_with_backend_exit_code_and_keeps_earlier_models(tmp_path, zoo, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(zoo / "parent_b", broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    suite = tmp_path / "s.yaml"
    suite.write_text(
        f"""name: broken
models:
  - {{name: suspect, role: suspect, path: {zoo}/linear_0.6}}
  - {{name: parent_a, role: parent, path: {zoo}/parent_a}}
  - {{name: parent_b, role: parent, path: {broken}}}
probes:
  - {{kind: logit_interpolation, params: {{max_texts: 8, task_free_texts: 4}}}}
output_dir: {tmp_path}/results
cache_dir: {tmp_path}/cache
"""
    )
    assert main(["run", str(suite), "--run-id", "r"]) == EXIT_BACKEND
    err = capsys.readouterr().err
    assert "model 'parent_b': cannot load" in err
    run_dir = tmp_path / "results" / "r"
    assert len((run_dir / "raw" / "suspect.jsonl").read_text().splitlines()) == 8 + 4  # texts + task-free inputs
    # a parent is scored twice (the second pass in reversed order measures the noise floor); the
    # task-free inputs once
    assert len((run_dir / "raw" / "parent_a.jsonl").read_text().splitlines()) == 16 + 4
    assert any(json.loads(x)["event"] == "model_failed" for x in (run_dir / "run.jsonl").read_text().splitlines())


def test_analyze_on_a_non_run_directory_is_bad_input(tmp_path, capsys):
    assert main(["analyze", str(tmp_path)]) == EXIT_BAD_INPUT
    assert "not a run directory" in capsys.readouterr().err


def test_the_cli_from_a_shell_finds_what_make_prepared(monkeypatch):
    """Issue 30: without the Makefile's environment, the checkout's own `.cache` (assets, the
    tokenizer library) and `.venv-vllm` are the defaults, so `parentage` typed in a shell after
    `make test` finds them."""
    from harness import assets
    from harness.backends import vllm_server

    monkeypatch.delenv("PARENTAGE_HOME", raising=False)
    repo = Path(__file__).resolve().parent.parent
    assert assets.home() == repo / ".cache"
    assert vllm_server.CHECKOUT_VLLM == repo / ".venv-vllm" / "bin" / "python"
    monkeypatch.setenv("PARENTAGE_HOME", "/elsewhere")
    assert assets.home() == Path("/elsewhere")


def test_the_estimate_cuts_no_name_and_shows_stages_only_where_there_are(zoo, capsys):
    """Issue 30: at 80 columns the estimate printed parent_a and parent_b both as "parent…", and a
    "stage" column reading "full" on every row of a suite that stages nothing."""
    repo = Path(__file__).resolve().parent.parent
    assert main(["run", str(repo / "configs" / "demo.yaml"), "--estimate"]) == 0
    err = capsys.readouterr().err
    rows = [line.split() for line in err.splitlines() if line.strip().startswith(("parent_", "independent"))]
    assert [r[:3] for r in rows] == [
        [name, "hf", probe]
        for name in ("parent_a", "parent_b", "independent")
        for probe in ("logit_interpolation", "rebuild")
    ]
    assert "…" not in err and "stage" not in err
    assert main(["run", str(repo / "configs" / "text-tiny.yaml"), "--estimate"]) == 0
    err = capsys.readouterr().err
    assert "stage" in err and "stage 1" in err and "stage 2" in err and "…" not in err


def test_the_console_is_quiet_and_ends_with_the_conclusion(zoo, tmp_path, capsys, monkeypatch):
    """Issue 30: transformers printed a "Loading weights" bar per model, the run header broke its
    path at 80 columns, the conclusion was never printed, and with one control the case said
    "against ... for every control" while a rank among one model cannot reach alpha. A logit run
    on the tiny zoo with one control: no third-party bar, the run directory whole on one line, the
    conclusion last, "the one control" in the case and the rank's floor in Limitations."""
    run_dir = tmp_path / "a-results-folder-with-a-long-name" / "results" / "r"
    suspect = tmp_path / "models-kept-in-a-folder-with-a-long-name" / "linear_0.6"  # past 80 columns
    suspect.parent.mkdir()
    suspect.symlink_to(zoo / "linear_0.6")
    suite = tmp_path / "s.yaml"
    suite.write_text(
        f"""name: quiet
models:
  - {{name: suspect, role: suspect, path: {suspect}}}
  - {{name: parent_a, role: parent, path: {zoo / "parent_a"}}}
  - {{name: parent_b, role: parent, path: {zoo / "parent_b"}}}
  - {{name: a_ft, role: control, path: {zoo / "a_ft"}}}
probes:
  - {{kind: logit_interpolation, params: {{max_texts: 8}}}}
output_dir: {run_dir.parent}
cache_dir: {tmp_path / "cache"}
"""
    )
    assert main(["run", str(suite), "--run-id", "r"]) in (0, 3)
    out, err = capsys.readouterr()
    assert "Loading weights" not in out + err and "it/s]" not in out + err
    assert f"run r -> {run_dir}" in err.splitlines()
    assert f"suspect (suspect, hf): loading {suspect}" in err.splitlines()  # the path whole
    assert out.rstrip().splitlines()[-1].startswith("conclusion, suspect: ")
    report = (run_dir / "report.md").read_text()
    assert "for the one control" in report and "every control" not in report.split("## Models")[0]
    limits = report[report.index("## Limitations") :]
    floor = "with 1 control, a model's rank among them (the calibration's empirical p) can be no smaller than 0.5"
    assert floor in limits


def test_the_readme_parameter_tables_are_the_generated_ones():
    """Issue 30: the parameters appeared nowhere in the README. Its tables are `parentage list
    --markdown`, every field of every probe's and backend's model, with a description each."""
    import re

    from harness.backends import BACKENDS, backend_class
    from harness.cli import parameter_rows, parameter_tables
    from probes import PROBES, probe_class

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = re.search(r"<!-- parameters: begin[^\n]*-->\n(.*?)<!-- parameters: end -->", readme, re.S)
    assert block is not None
    assert block.group(1).strip() == parameter_tables().strip(), (
        "regenerate the README's block with `parentage list --markdown`"
    )
    models = [probe_class(n).Params for n in PROBES] + [backend_class(n).Options for n in BACKENDS]
    assert [r[0] for m in models for r in parameter_rows(m) if not r[4]] == [], "every parameter says what it does"
    assert "| `max_questions` | integer \\| null | `null` | >= 1 |" in block.group(1)


def power_suite(tmp_path: Path, questions: int, texts: int) -> Path:
    path = tmp_path / f"power-{questions}-{texts}.yaml"
    path.write_text(
        f"""name: power
models:
  - {{name: s, role: suspect, backend: fake, options: {{seed: 1, mix: {{seed: 2, weight: 0.4}}}}}}
  - {{name: a, role: parent, backend: fake, options: {{seed: 1}}}}
  - {{name: b, role: parent, backend: fake, options: {{seed: 2}}}}
  - {{name: c, role: control, backend: fake, options: {{seed: 3}}}}
probes:
  - kind: identity
    params: {{labels: {{ay: [Ay]}}, model_labels: {{a: ay}}, max_questions: {questions}, samples: 1,
              conditions: [none]}}
  - kind: logit_interpolation
    params: {{max_texts: {texts}, max_tokens: 16, cv_splits: 5, task_free_texts: 0, noise_replicate: false}}
output_dir: {tmp_path}/results
cache_dir: {tmp_path}/cache
"""
    )
    return path


def test_tests_that_cannot_reach_alpha_are_warned_of_and_listed(tmp_path, capsys):
    """Issue 30: with max_questions 4 the identity test's p cannot go below 1/16, and the report
    printed "p_adj 0.5 over 4 questions" with "None recorded" under Limitations. The floors are
    arithmetic (an exact paired test over n units: 2^-n; a rank among k controls: 1/(k+1)), so
    the expected warnings are known before any model answers: validate, the estimate and run warn,
    the report lists them; at sizes that can reach alpha the identity and text warnings are gone."""
    weak = power_suite(tmp_path, questions=4, texts=4)
    assert main(["validate", str(weak)]) == 0
    err = capsys.readouterr().err
    assert "warning: identity: the claims test runs over 4 questions: its smallest possible p is 0.062" in err
    assert "use at least 5 questions" in err
    assert "warning: logit_interpolation: the held-out gain over the better parent is tested over 4 texts" in err
    assert "can be no smaller than 0.5" in err  # one control
    assert main(["run", str(weak), "--estimate"]) == 0
    assert "use at least 5 questions" in capsys.readouterr().err
    strong = power_suite(tmp_path, questions=8, texts=8)
    assert main(["validate", str(strong)]) == 0
    err = capsys.readouterr().err
    assert "questions" not in err and "held-out gain" not in err and "can be no smaller than 0.5" in err
    main(["run", str(weak), "--run-id", "weak"])
    err = capsys.readouterr().err
    assert "use at least 5 questions" in err  # before anything is sent
    limits = (tmp_path / "results" / "weak" / "report.md").read_text().split("## Limitations")[1]
    assert "`identity`: the claims test runs over 4 questions" in limits
    assert "`logit_interpolation`: the held-out gain over the better parent is tested over 4 texts" in limits
    assert "None recorded" not in limits


def test_init_writes_a_suite_that_validates_as_written(zoo, tmp_path, capsys, monkeypatch):
    """Issue 30: `parentage init` was "invalid choice". From a suspect, two parents and controls
    (one named NAME=PATH), it writes a commented suite that validates as written, shows each
    included probe's key parameters at the probe's own defaults, refuses to overwrite, and the
    estimate runs on it."""
    import yaml

    from harness.config import load_suite
    from probes import probe_class

    monkeypatch.chdir(zoo)  # relative paths, as a user types them
    out = tmp_path / "cases" / "first.yaml"
    args = ["init", str(out), "--suspect", "linear_0.6", "--parents", "parent_a", "parent_b"]
    assert main([*args, "--controls", "sibling", "indep=independent"]) == 0
    stdout = capsys.readouterr().out
    assert f"{out}: ok (5 models, 3 probes)" in stdout and f"parentage run {out} --estimate" in stdout
    text = out.read_text()
    assert text.startswith("# yaml-language-server: $schema=")
    suite = load_suite(out)
    assert [(m.name, m.role) for m in suite.models] == [
        ("linear_0.6", "suspect"),
        ("parent_a", "parent"),
        ("parent_b", "parent"),
        ("sibling", "control"),
        ("indep", "control"),
    ]
    assert suite.model("indep").path == str(zoo / "independent")
    written = yaml.safe_load(text)
    for probe in written["probes"]:
        fields = probe_class(probe["kind"]).Params.model_fields
        assert probe["params"] == {k: fields[k].get_default(call_default_factory=True) for k in probe["params"]}
    assert [p["kind"] for p in written["probes"]] == ["logit_interpolation", "tokenizer", "weights"]
    assert "# - kind: identity" in text and "#     model_labels:" in text
    assert main(["validate", str(out)]) == 0
    assert main(args) == EXIT_BAD_INPUT
    assert "exists; pass --force" in capsys.readouterr().err
    api = ["init", str(tmp_path / "api.yaml"), "--suspect", "s", "--parents", "a", "b", "--backend", "openai"]
    assert main(api) == EXIT_BAD_INPUT
    assert "--backend openai needs --url" in capsys.readouterr().err
    assert main(["run", str(out), "--estimate"]) == 0


def test_the_forest_plot_shows_the_suspects_interval(demo_run, tmp_path, monkeypatch):
    """Issue 30: the forest figure's title was clipped at both edges, and the independent model's
    merge-weight range of about -4.9 to 5.0 and residual of 4.9 set the axes, so the suspect's
    CI could not be seen. On the demo: the a-axis stays within -0.5 to 1.5, the residuals are on
    a log axis, and the suspect's residual CI spans at least 2% of its panel; the title fits the
    figure's width."""
    from harness.evidence import ProbeEvidence
    from probes.logit import render
    from probes.logit.verdict import VerdictThresholds

    figures: list = []
    monkeypatch.setattr(render, "save_figure", lambda fig, path: figures.append(fig) or path)
    ev = next(p for p in demo_run["evidence"]["probes"] if p["instance"] == "logit_interpolation")
    render.figures(ProbeEvidence.model_validate(ev), tmp_path, VerdictThresholds())
    fig = figures[0]
    a_axis, resid_axis = fig.axes[:2]
    lo, hi = a_axis.get_xlim()
    assert -0.5 <= lo and hi <= 1.5
    assert resid_axis.get_xscale() == "log"
    r = ev["per_model"]["suspect"]["residual"]
    to_px = resid_axis.transData.transform
    span = to_px((r["hi"], 0))[0] - to_px((r["lo"], 0))[0]
    assert span >= 0.02 * resid_axis.bbox.width
    fig.canvas.draw()
    title = fig._suptitle.get_window_extent()
    assert 0 <= title.x0 and title.x1 <= fig.bbox.width  # on the canvas, not past its edges
