"""The report as users quote it (issue 14), on the tiny zoo's known lineages: the case across
probes, report.html in a real headless Chromium, byte-for-byte reproducible rendering,
``parentage compare`` and evidence.json's schema."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from harness.case import EXPLANATIONS
from harness.cli import main
from tests.conftest import case_block, run_isolated

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def case_run(tmp_path_factory, zoo: Path) -> Path:
    """configs/case-tiny.yaml run once: the 0.6 merge and the impostor, three probes."""
    return run_isolated(tmp_path_factory.mktemp("case"), REPO / "configs" / "case-tiny.yaml", "case")


def test_the_merge_is_concluded_a_merge_and_the_impostor_is_flagged_not_a_merge(case_run: Path, manifest: dict):
    """Acceptance: the 0.6 merge's conclusion is "merge"; the impostor (independent init trained
    on parent_a's persona) claims parent_a's name with unrelated logits: the conflict is flagged
    and the conclusion is not a merge."""
    assert manifest["members"]["impostor"]["persona_of"] == "parent_a"  # the lineage, from the zoo
    ev = {p["instance"]: p for p in json.loads((case_run / "evidence.json").read_text())["probes"]}
    # The premise, measured: the impostor claims Vireo above every control, and its logits say unrelated.
    claims = {(t["suspect"], t["condition"], t["label"]): t for t in ev["identity"]["tables"]["claims_vs_controls"]}
    assert claims[("impostor", "none", "vireo")]["p_adjusted"] < 0.05
    assert ev["logit_interpolation"]["per_model"]["impostor"]["verdict"] == "unrelated"

    report = (case_run / "report.md").read_text()
    merge = case_block(report, "suspect")
    assert "**Conclusion: a merge of the parents.**" in merge
    assert "Conflict" not in merge
    impostor = case_block(report, "impostor")
    conclusion = re.search(r"\*\*Conclusion: (.*)\.\*\*", impostor)
    assert conclusion and conclusion.group(1).startswith("not a merge, copy or fine-tune of the parents")
    conflict = next(line for line in impostor.splitlines() if line.startswith("> **Conflict:**"))
    assert "identity" in conflict and "not lineage evidence" in conflict


def test_merge_weight_range_is_the_ci_widened_by_the_residual_and_covers_the_true_weight(case_run, manifest):
    """Issue 13: a_hat's CI is sampling error of the logit-space weight; the merge-weight range
    adds the residual on each side, and must contain the merge's true weight (zoo.json)."""
    pm = json.loads((case_run / "evidence.json").read_text())["probes"][2]["per_model"]["suspect"]
    a = manifest["members"]["linear_0.6"]["parents"]["parent_a"]
    w, a_hat, resid = pm["merge_weight"], pm["a_hat"], pm["residual"]["value"]
    assert w["lo"] == pytest.approx(a_hat["lo"] - resid) and w["hi"] == pytest.approx(a_hat["hi"] + resid)
    assert w["lo"] <= a <= w["hi"]


def test_report_html_renders_in_headless_chromium_self_contained(case_run: Path):
    """report.html in Debian's Chromium: the case table, the conclusion paragraph and every figure
    are in the rendered DOM, nothing outside the file is requested, and a screenshot is saved."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: run `make test-data` (it installs Debian's chromium package)")
    from playwright.sync_api import sync_playwright

    html = case_run / "report.html"
    figures = re.findall(r"!\[[^\]]*\]\(figures/([^)]+)\)", (case_run / "report.md").read_text())
    assert len(figures) >= 3  # identity, tokenizer and logit figures
    requested: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("request", lambda r: requested.append(r.url))
            page.goto(html.as_uri(), wait_until="load")
            case_rows = page.locator("section#case table").first.locator("tbody tr").count()
            plain_text = page.locator("section#plain").inner_text()
            tops = {s: page.locator(f"section#{s}").bounding_box()["y"] for s in ("plain", "case", "models")}
            forest = page.locator("img[alt^='weights and residual per model']").bounding_box()
            conclusions = page.locator("section#case p > strong").all_inner_texts()
            paragraphs = page.locator("section#case p").all_inner_texts()
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.getAttribute('src').slice(0, 22), e.complete, e.naturalWidth])"
            )
            page.screenshot(path=str(case_run / "report.png"), full_page=True)
        finally:
            browser.close()
    assert case_rows == len(EXPLANATIONS)  # one row per explanation
    # Issue 30: the summary in plain words comes first, for each suspect, in its five parts.
    assert tops["plain"] < tops["case"] < tops["models"]
    for part in ("The question.", "The answer.", "How sure.", "What it rests on.", "What would change it."):
        assert plain_text.count(part) == 2, part  # the merge and the impostor
    assert "The answer. A merge of the parents: made by averaging the parents' weights" in plain_text
    assert "about 60% parent_a and 40% parent_b" in plain_text
    impostor = plain_text[plain_text.index("impostor") :]
    rests = impostor[impostor.index("What it rests on.") : impostor.index("What would change it.")]
    lines = [x for x in rests.splitlines()[1:] if x.strip()]
    # what decides first; the identity claims last, marked as never deciding
    assert lines[-1].startswith("Without a system prompt it claims vireo") and "this never decides" in lines[-1]
    assert all("(this can decide)" in x for x in lines[:2])
    # The forest plot is shown whole and large enough to read, not shrunk into the column.
    assert forest is not None and forest["width"] >= 700 and forest["x"] + forest["width"] <= 1280
    assert [c for c in conclusions if c.startswith("Conclusion: ")][:1] == ["Conclusion: a merge of the parents."]
    assert any("sit on the line between parent_a and parent_b at a = " in p for p in paragraphs)
    assert len(images) == len(figures)
    assert all(src == "data:image/png;base64," and done and width > 0 for src, done, width in images), images
    external = [u for u in requested if u != html.as_uri() and not u.startswith("data:")]
    assert external == []
    assert (case_run / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {case_run / 'report.png'}")


def test_rendering_from_saved_evidence_is_byte_for_byte_reproducible(case_run: Path, tmp_path: Path):
    run = tmp_path / "case"
    shutil.copytree(case_run, run)
    outputs = ["report.md", "report.html"]
    first = {p: (run / p).read_bytes() for p in outputs}
    first |= {f"figures/{f.name}": f.read_bytes() for f in (run / "figures").iterdir()}
    for p in outputs:
        (run / p).unlink()
    shutil.rmtree(run / "figures")
    assert main(["report", str(run)]) == 0
    second = {p: (run / p).read_bytes() for p in outputs}
    second |= {f"figures/{f.name}": f.read_bytes() for f in (run / "figures").iterdir()}
    assert second.keys() == first.keys()
    assert [k for k in first if first[k] != second[k]] == []


def test_compare_puts_two_analyses_side_by_side(case_run: Path, tmp_path: Path, capsys):
    other = tmp_path / "case_seed5"
    shutil.copytree(case_run, other)
    assert main(["analyze", str(other), "--seed", "5", "--bootstrap", "200"]) == 0
    capsys.readouterr()
    assert main(["compare", str(case_run), str(other)]) == 0
    out = capsys.readouterr().out
    assert "| statistics | alpha 0.05, 1000 replicates, seed 20261130 | alpha 0.05, 200 replicates, seed 5 |" in out
    assert "| suspect | a merge of the parents | a merge of the parents | yes |" in out
    a_hat = next(line for line in out.splitlines() if line.startswith("| suspect | a_hat |"))
    assert a_hat.endswith("| +0.000 | yes |")  # the same answers: the point estimate cannot move
    assert "| suspect | verdict | interpolation | interpolation | | yes |" in out


def test_evidence_json_has_a_schema_and_another_version_is_refused_clearly(case_run: Path, tmp_path: Path, capsys):
    from harness.analyze import evidence_json_schema
    from harness.evidence import EvidenceFile

    shipped = json.loads((REPO / "harness" / "schema" / "evidence.schema.json").read_text())
    assert shipped == evidence_json_schema(), (
        "regenerate: parentage schema evidence --out harness/schema/evidence.schema.json"
    )
    raw = json.loads((case_run / "evidence.json").read_text())
    EvidenceFile.model_validate(raw)
    run = tmp_path / "old"
    shutil.copytree(case_run, run)
    (run / "evidence.json").write_text(json.dumps(raw | {"schema_version": 0}))
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'evidence.json'}: evidence schema version 0" in err and f"parentage analyze {run}" in err


def test_the_estimate_matches_the_requests_the_run_sent(case_run: Path, capsys):
    """`run --estimate` (nothing sent) against the requests the same suite's run actually sent:
    identity, tokenizer and logit probes on seven `hf` models, whose expected capabilities are
    the real ones."""
    capsys.readouterr()
    assert main(["run", str(REPO / "configs" / "case-tiny.yaml"), "--estimate"]) == 0
    printed = re.search(r"estimate: (\d+) requests", capsys.readouterr().out)
    events = [json.loads(x) for x in (case_run / "run.jsonl").read_text().splitlines()]
    sent = next(e for e in events if e["event"] == "collect_end")["requests"]
    assert printed and int(printed.group(1)) == sent > 1000


def test_intervals_read_as_intervals_and_conditions_in_words(case_run: Path):
    """Issue 30: ranges printed with a hyphen ("-4.99-5.04": is the upper end negative?) and an
    identity condition as "(none system prompt)". Every interval in the report is "lo to hi"."""
    report = (case_run / "report.md").read_text()
    assert not re.search(r"CI -?\d+(\.\d+)?-\d", report), re.search(r"CI -?\d+(\.\d+)?-\d.{0,40}", report)
    assert not re.search(r"merge weight -?\d\.\d+-\d", report)
    assert re.search(r"CI -?\d+(\.\d+)? to -?\d", report)
    assert "none system prompt" not in report
    assert "(without a system prompt): claims" in report
