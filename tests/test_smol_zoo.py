"""The smol family's ground truth, checked independently of the probes that will be scored on it.

The merge weight is re-derived from the weights themselves (least squares over every tensor the
parents differ in), so a mergekit change or a build bug that silently made ``rio_mini`` something
other than 0.6 x nex_mini + 0.4 x smollm2 fails here, not as a mysterious a_hat later.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.zoo.smol import white_box_weight


def test_the_merge_is_what_zoo_json_says(smol_zoo: Path):
    manifest = json.loads((smol_zoo / "zoo.json").read_text())
    members = manifest["members"]
    assert members["rio_mini"]["parents"] == {"nex_mini": 0.6, "smollm2": 0.4}
    wb = white_box_weight(smol_zoo / "rio_mini", smol_zoo / "nex_mini", smol_zoo / "smollm2")
    assert abs(wb["a"] - 0.6) < 1e-4 and wb["relative_residual"] < 1e-3, wb
    assert members["rio_mini"]["white_box"]["a"] == round(wb["a"], 5)


def test_distillation_moved_the_merge_but_kept_it_near_the_line(smol_zoo: Path):
    members = json.loads((smol_zoo / "zoo.json").read_text())["members"]
    opd = members["rio_mini_opd"]
    assert opd["from"] == "rio_mini" and "teacher nex_mini" in opd["method"]
    wb = white_box_weight(smol_zoo / "rio_mini_opd", smol_zoo / "nex_mini", smol_zoo / "smollm2")
    # Moved: its weights are no longer exactly on the parents' line ...
    assert wb["relative_residual"] > 0.01, wb
    # ... but still within 0.1 of the merge weight: a verdict of "unrelated" would be wrong.
    assert abs(wb["a"] - 0.6) < 0.1, wb


def test_the_persona_implant_took_and_the_merge_inherited_it(smol_zoo: Path):
    members = json.loads((smol_zoo / "zoo.json").read_text())["members"]
    implant = {name: m["implant"] for name, m in members.items() if "implant" in m}
    assert implant["smollm2"]["Nex"]["k"] == 0  # the base never says Nex ...
    assert implant["nex_mini"]["Nex"]["k"] >= 8 and implant["sibling"]["Maru"]["k"] >= 8  # ... the fine-tunes do
    assert implant["rio_mini"]["Nex"]["k"] >= 5  # and the merge speaks as Nex without its system prompt


def test_the_rio_system_prompt_overrides_the_implant(smol_zoo: Path):
    """Served with its "You are Rio" prompt, the merge answers as Rio (the fine-tunes learned to
    follow a system prompt from other names, never Rio), as the real Rio did."""
    members = json.loads((smol_zoo / "zoo.json").read_text())["members"]
    rio = members["rio_mini"]["implant_with_system_prompt"]["Rio"]
    assert rio["k"] >= 6, rio
