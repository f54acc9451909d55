"""The weights probe (issue 15) on checkpoints of known lineage: the tiny zoo's mergekit merges of
every family, the Rio-mini family, and checkpoints rewritten the ways users' arrive (sharded with
an index, mixed dtypes, renamed tensors, truncated). Truths come from each zoo's zoo.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.cli import main
from probes.weights.case import weights_case
from probes.weights.checkpoint import open_checkpoint
from probes.weights.result import WeightsResult
from tests.conftest import case_block, run_isolated

REPO = Path(__file__).resolve().parent.parent


def _evidence(run_dir: Path) -> dict:
    return next(p for p in json.loads((run_dir / "evidence.json").read_text())["probes"] if p["probe"] == "weights")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, zoo: Path) -> Path:
    return run_isolated(tmp_path_factory.mktemp("wt"), REPO / "configs" / "weights-tiny.yaml", "wt")


@pytest.fixture(scope="module")
def smol_run(tmp_path_factory, smol_zoo: Path) -> Path:
    return run_isolated(tmp_path_factory.mktemp("ws"), REPO / "configs" / "weights-smol.yaml", "ws")


def test_linear_merges_every_tensor_at_the_true_weight(tiny_run: Path, manifest: dict):
    """Acceptance: mergekit linear merges at 0.25 and 0.6 (float32): every tensor's a within 1e-3
    of the truth, cos fit > 0.999, and the summary states the single a."""
    ev = _evidence(tiny_run)
    for member in ("linear_0.25", "linear_0.6"):
        truth = manifest["members"][member]["parents"]
        rows = [r for r in ev["tables"]["tensors"] if r["subject"] == member]
        assert len(rows) == ev["per_model"][member]["tensors"] > 30
        assert max(abs(r["a"] - truth["parent_a"]) for r in rows) < 1e-3
        assert min(r["cos"] for r in rows) > 0.999
        pm = ev["per_model"][member]
        assert pm["verdict"] == "interpolation" and pm["family"]["name"] == "linear"
        for parent, w in truth.items():
            assert pm["weights"][parent]["lo"] - 1e-4 <= w <= pm["weights"][parent]["hi"] + 1e-4
        assert f"{member}: interpolation, family linear; a = {truth['parent_a']:.3f}" in ev["summary"]
    events = [json.loads(x)["event"] for x in (tiny_run / "run.jsonl").read_text().splitlines()]
    assert "model_loaded" not in events  # nothing served: the probe reads the checkpoints
    assert "not served (only its files are read" in (tiny_run / "report.md").read_text()


def test_each_merge_family_is_named_and_non_merges_are_not_interpolations(tiny_run: Path, manifest: dict):
    """Acceptance: ties and dare_ties are sparse merges, slerp is slerp; task arithmetic (weights
    summing to 1.2 on the base) is linear with its weights; a fine-tune of parent_a is derived
    from it, its bf16 re-save a copy; no control is an interpolation. Models of their own
    initialisation share no weights with the family (raw weights near-orthogonal: "unrelated"); the
    sibling shares them but is none of the parents' mixes or fine-tunes: the case reads "sibling"."""
    pm = _evidence(tiny_run)["per_model"]
    members = manifest["members"]
    for name, m in members.items():
        if name not in pm:
            continue
        kind, method = m["kind"], m.get("method")
        got = pm[name]
        if method in ("ties", "dare_ties"):
            assert (got["verdict"], got["family"]["name"]) == ("interpolation", "sparse (ties/dare)"), name
        elif method == "slerp":
            assert (got["verdict"], got["family"]["name"]) == ("interpolation", "slerp"), name
        elif method in ("linear", "task_arithmetic"):
            assert (got["verdict"], got["family"]["name"]) == ("interpolation", "linear"), name
            for parent, w in m["parents"].items():
                assert got["weights"][parent]["value"] == pytest.approx(w, abs=1e-4)
        elif kind == "interpolation_plus_training":
            assert got["verdict"] == "interpolation" and got["family"]["name"].startswith("linear, trained further")
        elif kind == "derived":
            assert (got["verdict"], got["parent"]) == ("derived", m["from"]), name
        elif kind == "copy":
            assert (got["verdict"], got["parent"]) == ("copy", m["from"]), name
        elif m.get("from") in (None, "independent"):  # own initialisations: independent, impostor, students
            # No weights of the family at all: near-orthogonal to the reference's and both parents'.
            assert got["verdict"] == "unrelated", (name, got["reasons"])
            assert all(abs(c) <= got["kin_bound"] for c in got["kin_to"].values()), got["kin_to"]
        else:  # the sibling: the parents' base, fine-tuned its own way
            assert got["verdict"] == "not an interpolation", name
            assert all(c > 0.9 for c in got["kin_to"].values()), got["kin_to"]
            # The case: no merge or fine-tune of a parent, yet the family's weights: a sibling, and only that
            # (issue 26: it was "original, distilled or sibling" from the weights).
            case = weights_case("weights", WeightsResult.model_validate(got), 0.95)
            assert case.supported() == {"sibling"}, case.sentence
            # With the poor fit's weight on one parent it could as well be a fine-tune of that parent that
            # moved farther than the fit allows: both are named.
            far = WeightsResult.model_validate(got)
            far.weights["parent_a"].value, far.weights["parent_a"].lo = 0.9, 0.8
            far.weights["parent_b"].value, far.weights["parent_b"].lo = 0.02, 0.0
            assert weights_case("weights", far, 0.95).supported() == {"sibling", "derived"}
    assert {"sibling", "independent", "impostor", "student"} <= set(pm)


def test_rio_mini_weights_and_what_distillation_moved(smol_run: Path, smol_zoo: Path):
    """Acceptance: rio_mini's a within 0.01 of 0.6 on every tensor that differs between the
    parents; rio_mini_opd reported per module with its residual (how far distillation moved it
    off the line); the sibling fine-tune has cos fit < 0.5 on most tensors and is not an
    interpolation; the case table carries the weights column."""
    truth = json.loads((smol_zoo / "zoo.json").read_text())["members"]
    ev = _evidence(smol_run)
    pm = ev["per_model"]
    a = truth["rio_mini"]["parents"]["nex_mini"]
    rows = [r for r in ev["tables"]["tensors"] if r["subject"] == "rio_mini"]
    assert rows and max(abs(r["a"] - a) for r in rows) < 0.01
    assert pm["rio_mini"]["verdict"] == "interpolation" and pm["rio_mini"]["family"]["name"] == "linear"
    opd = pm["rio_mini_opd"]
    white = truth["rio_mini_opd"]["white_box"]  # the zoo's own least-squares fit when it was built
    assert opd["a"]["value"] == pytest.approx(white["a"], abs=0.01)
    assert opd["rel_residual"] == pytest.approx(white["relative_residual"], rel=0.1)
    assert {"attention", "mlp", "norms"} <= set(opd["modules"])
    assert all(s["residual_rms"] > 0.1 for s in opd["modules"].values())
    assert opd["verdict"] == "interpolation" and opd["family"]["name"].startswith("linear, trained further")
    assert pm["sibling"]["verdict"] == "not an interpolation" and pm["sibling"]["tensors_cos_below_half"] > 0.5
    assert (pm["nex_ft"]["verdict"], pm["nex_ft"]["parent"]) == ("derived", "nex_mini")
    report = (smol_run / "report.md").read_text()
    case = report.split("## The case", 1)[1].split("\n## ", 1)[0]
    assert "| explanation | weights (lineage) |" in case
    assert "mergekit_config.yml" in report  # the recipe left in rio_mini's repository, as an artifact
    assert (smol_run / "figures").is_dir() and any("rio_mini_a" in f.name for f in (smol_run / "figures").iterdir())


def _reshard(src: Path, dst: Path, bf16: set[str], rename: dict[str, str]) -> None:
    """``src`` rewritten as two shards with an index, some tensors in bfloat16, some renamed."""
    import torch
    from safetensors.torch import load_file, save_file

    dst.mkdir()
    tensors = load_file(src / "model.safetensors")
    names = sorted(tensors)
    half = len(names) // 2
    weight_map = {}
    for i, part in enumerate((names[:half], names[half:])):
        shard = f"model-{i + 1:05d}-of-00002.safetensors"
        out = {}
        for n in part:
            t = tensors[n].to(torch.bfloat16) if n in bf16 else tensors[n]
            out[rename.get(n, n)] = t.contiguous()
            weight_map[rename.get(n, n)] = shard
        save_file(out, dst / shard, metadata={"format": "pt"})
    (dst / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    for f in src.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, dst / f.name)


def test_sharded_mixed_dtype_renamed_checkpoints(tmp_path: Path, zoo: Path):
    """Inputs users have: the suspect as two shards with an index, its MLP tensors in bf16 and
    one tensor renamed. The renamed tensor is reported unmatched (not fatal); the rest still give
    a = 0.6 (float32 tensors to 1e-4, bf16 ones to bf16's precision)."""
    names = sorted(open_checkpoint(zoo / "linear_0.6").tensors)
    mlp = {n for n in names if ".mlp." in n}
    renamed = next(n for n in names if "self_attn.q_proj" in n)
    _reshard(zoo / "linear_0.6", tmp_path / "sharded", mlp, {renamed: renamed.replace("q_proj", "query")})
    ck = open_checkpoint(tmp_path / "sharded")
    assert len(ck.files) == 2 and {t.dtype for t in ck.tensors.values()} == {"F32", "BF16"}
    suite = {
        "name": "sharded",
        "models": [
            {"name": "suspect", "role": "suspect", "path": str(tmp_path / "sharded")},
            {"name": "parent_a", "role": "parent", "path": str(zoo / "parent_a")},
            {"name": "parent_b", "role": "parent", "path": str(zoo / "parent_b")},
        ],
        "probes": [{"kind": "weights"}],
    }
    cfg = tmp_path / "suite.yaml"
    cfg.write_text(yaml.safe_dump(suite))
    ev = _evidence(run_isolated(tmp_path, cfg, "sharded"))
    pm = ev["per_model"]["suspect"]
    assert any(u.startswith(renamed) and "missing in suspect" in u for u in pm["unmatched"])
    rows = {r["tensor"]: r["a"] for r in ev["tables"]["tensors"]}
    assert renamed not in rows and len(rows) == len(names) - 1
    assert max(abs(a - 0.6) for n, a in rows.items() if n not in mlp) < 1e-4
    assert max(abs(a - 0.6) for n, a in rows.items() if n in mlp) < 2e-2
    assert pm["weights"]["parent_a"]["value"] == pytest.approx(0.6, abs=2e-3)
    # each tensor's own dtype sets its part of the storage floor: the bf16 rounding is no "training"
    assert pm["dtype"] == "mixed (BF16, F32)"
    assert (pm["verdict"], pm["family"]["name"]) == ("interpolation", "linear")


def test_a_truncated_shard_is_found_at_preflight_by_name(tmp_path: Path, zoo: Path, capsys):
    """A shard cut short (an interrupted copy) is an error naming the file, from `validate`,
    before any tensor is read; so is a directory with no checkpoint."""
    bad = tmp_path / "cut"
    shutil.copytree(zoo / "linear_0.6", bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    suite = {
        "name": "cut",
        "models": [
            {"name": "suspect", "role": "suspect", "path": str(bad)},
            {"name": "parent_a", "role": "parent", "path": str(zoo / "parent_a")},
            {"name": "parent_b", "role": "parent", "path": str(tmp_path)},
        ],
        "probes": [{"kind": "weights"}],
    }
    cfg = tmp_path / "suite.yaml"
    cfg.write_text(yaml.safe_dump(suite))
    assert main(["validate", str(cfg)]) != 0
    err = capsys.readouterr().err
    assert f"{bad / 'model.safetensors'}: truncated" in err
    assert f"{tmp_path}: no *.safetensors file" in err


def test_the_pass_is_journaled_and_a_second_analysis_reads_no_weights(tiny_run: Path, tmp_path: Path):
    """Resumable: every tensor's statistics are journaled in the cache as they finish; analysing
    again reads them back instead of the checkpoints (the journal does not grow), and gives the
    same evidence."""
    journals = list((tiny_run.parent.parent / "cache" / "weights").glob("*.jsonl"))
    assert len(journals) == 1
    before = journals[0].read_text().splitlines()
    assert len(before) == _evidence(tiny_run)["per_model"]["linear_0.6"]["tensors"]
    first = _evidence(tiny_run)
    assert main(["analyze", str(tiny_run)]) == 0
    assert journals[0].read_text().splitlines() == before
    again = _evidence(tiny_run)
    assert again["per_model"] == first["per_model"]
    assert np.isfinite(again["per_model"]["linear_0.6"]["cos_fit"])


def test_three_parents_get_their_simplex_weights(tmp_path: Path, zoo: Path, manifest: dict):
    """More than two parents: NNLS on the parents' differences from their shared base recovers
    linear3's three weights; the fourth-parent case (parent_a's fine-tune listed too) gives it
    no weight."""
    truth = manifest["members"]["linear3"]["parents"]
    suite = {
        "name": "three",
        "models": [
            {"name": "linear3", "role": "suspect", "path": str(zoo / "linear3")},
            *(
                {"name": p, "role": "parent", "path": str(zoo / p)}
                for p in ("parent_a", "parent_b", "parent_c", "a_ft")
            ),
        ],
        "probes": [{"kind": "weights", "params": {"base": str(zoo / "base")}}],
    }
    cfg = tmp_path / "suite.yaml"
    cfg.write_text(yaml.safe_dump(suite))
    pm = _evidence(run_isolated(tmp_path, cfg, "three"))["per_model"]["linear3"]
    assert pm["verdict"] == "interpolation" and pm["family"]["name"] == "linear"
    for parent, w in truth.items():
        assert pm["weights"][parent]["value"] == pytest.approx(w, abs=1e-4)
    assert pm["weights"]["a_ft"]["value"] == pytest.approx(0.0, abs=1e-4)


def test_a_real_fine_tune_of_one_parent_is_no_merge_and_its_fp16_resave_a_copy(tmp_path: Path, smol_zoo: Path):
    """Issue 27, on real 135M checkpoints (the smol family): nex_ft, nex_mini's top 12 layers trained
    further, given nex_mini and sibling as parents over their base, was "a merge, trained further"
    (sibling's weight 0.07, its CI just off the simplex's edge). Its departure from nex_mini points
    nowhere near sibling (cos about 0.04), so it is derived from nex_mini. nex_mini re-saved in fp16
    (no training) is a copy, named as a dtype conversion, and the 0.6 merge rio_mini stays what
    it is against these parents: nex_mini's update and nothing of sibling's."""
    from tests.bad_checkpoints import load, write

    fp16 = tmp_path / "nex_fp16"
    write(fp16 / "model.safetensors", load(smol_zoo / "nex_mini"), "F16")
    (fp16 / "config.json").write_text((smol_zoo / "nex_mini" / "config.json").read_text())
    suite = {
        "name": "smol-ft",
        "models": [
            {"name": "nex_ft", "role": "suspect", "path": str(smol_zoo / "nex_ft")},
            {"name": "nex_fp16", "role": "suspect", "path": str(fp16)},
            {"name": "nex_mini", "role": "parent", "path": str(smol_zoo / "nex_mini")},
            {"name": "sibling", "role": "parent", "path": str(smol_zoo / "sibling")},
        ],
        "probes": [{"kind": "weights", "params": {"base": str(smol_zoo / "smollm2")}}],
    }
    cfg = tmp_path / "suite.yaml"
    cfg.write_text(yaml.safe_dump(suite))
    run = run_isolated(tmp_path, cfg, "smol-ft")
    pm = _evidence(run)["per_model"]
    assert (pm["nex_ft"]["verdict"], pm["nex_ft"]["parent"]) == ("derived", "nex_mini"), pm["nex_ft"]["reasons"]
    assert pm["nex_ft"]["toward_others_lo"] < pm["nex_ft"]["toward_null"]
    assert (pm["nex_fp16"]["verdict"], pm["nex_fp16"]["parent"]) == ("copy", "nex_mini")
    assert "dtype conversion F32 -> F16" in " ".join(pm["nex_fp16"]["reasons"])
    report = (run / "report.md").read_text()
    assert "**Conclusion: derived from nex_mini (a fine-tune of it).**" in case_block(report, "nex_ft")


@pytest.fixture(scope="module")
def gguf_copies(tmp_path_factory, smol_zoo: Path, smollm2_gguf: Path) -> dict[str, Path]:
    """nex_mini as llama.cpp would ship it (float32 GGUF, then quantized by llama.cpp itself to Q8_0
    and Q4_K_M) and rio_mini, the 0.6 merge, quantized to Q8_0 (tests/gguf_copies.py)."""
    from tests.gguf_copies import quantize, to_gguf

    d = tmp_path_factory.mktemp("gguf")
    nex = to_gguf(smol_zoo / "nex_mini", smollm2_gguf, d / "nex_f32.gguf")
    rio = to_gguf(smol_zoo / "rio_mini", smollm2_gguf, d / "rio_f32.gguf")
    out = {f"nex_{q.lower()}": quantize(nex, d / f"nex_{q}.gguf", q) for q in ("Q8_0", "Q4_K_M")}
    out["rio_q8_0"] = quantize(rio, d / "rio_Q8_0.gguf", "Q8_0")
    rio.unlink()
    return {"nex_f32": nex, **out}


def test_gguf_copies_are_copies_with_their_quantization_and_a_quantized_merge_keeps_its_weight(
    tmp_path: Path, smol_zoo: Path, smollm2_gguf: Path, gguf_copies: dict[str, Path]
):
    """Issue 27: GGUF checkpoints read against safetensors parents. Tensors take the parents' names
    and llama.cpp's q/k permutation is undone (the float32 GGUF is an exact copy); quantized copies
    are "copy (..., quantized, GGUF Q8_0 / Q4_K_M)" with the quantization's own step as the
    tolerance; SmolLM2's own Q4_1 release is a copy of smollm2 (which the zoo dequantized from it);
    and the 0.6 merge quantized to Q8_0 is still a linear merge at a = 0.6."""
    models = [{"name": n, "role": "suspect", "path": str(p)} for n, p in gguf_copies.items()]
    models += [
        {"name": "smol_q4_1", "role": "suspect", "path": str(smollm2_gguf)},
        {"name": "nex_mini", "role": "parent", "path": str(smol_zoo / "nex_mini")},
        {"name": "smollm2", "role": "parent", "path": str(smol_zoo / "smollm2")},
    ]
    cfg = tmp_path / "suite.yaml"
    cfg.write_text(yaml.safe_dump({"name": "gguf", "models": models, "probes": [{"kind": "weights"}]}))
    pm = _evidence(run_isolated(tmp_path, cfg, "gguf"))["per_model"]
    assert (pm["nex_f32"]["verdict"], pm["nex_f32"]["parent"], pm["nex_f32"]["distance_to"]["nex_mini"]) == (
        "copy",
        "nex_mini",
        0.0,
    )
    for name, kind in (("nex_q8_0", "GGUF Q8_0"), ("nex_q4_k_m", "GGUF Q4_K_M"), ("smol_q4_1", "GGUF Q4_1")):
        parent = "smollm2" if name == "smol_q4_1" else "nex_mini"
        assert (pm[name]["verdict"], pm[name]["parent"]) == ("copy", parent), (name, pm[name]["reasons"])
        assert pm[name]["storage"] == kind and f"quantized, {kind}" in " ".join(pm[name]["reasons"])
    rio = pm["rio_q8_0"]
    assert (rio["verdict"], rio["family"]["name"]) == ("interpolation", "linear")
    assert rio["weights"]["nex_mini"]["value"] == pytest.approx(0.6, abs=0.005)


def test_the_sampled_mode_reads_two_percent_and_finds_the_same_merge(tmp_path: Path, smol_zoo: Path, capsys):
    """Issue 27's sampled mode on the Rio-mini family: about 2% of the bytes read (the estimate says
    so before), the 0.6 merge at a within 0.005 of the full pass's, the same verdicts, and CIs that
    cover the full pass's a."""
    models = [
        {"name": "rio_mini", "role": "suspect", "path": str(smol_zoo / "rio_mini")},
        {"name": "rio_mini_opd", "role": "suspect", "path": str(smol_zoo / "rio_mini_opd")},
        {"name": "nex_mini", "role": "parent", "path": str(smol_zoo / "nex_mini")},
        {"name": "smollm2", "role": "parent", "path": str(smol_zoo / "smollm2")},
    ]
    runs = {}
    for label, params in (("full", {}), ("sampled", {"sample": 0.02})):
        cfg = tmp_path / f"{label}.yaml"
        cfg.write_text(
            yaml.safe_dump({"name": label, "models": models, "probes": [{"kind": "weights", "params": params}]})
        )
        runs[label] = _evidence(run_isolated(tmp_path, cfg, label))
    reading = runs["sampled"]["tables"]["reading"][0]
    assert 0.01 < reading["bytes_read"] / reading["bytes_total"] <= 0.02
    capsys.readouterr()
    assert main(["run", str(tmp_path / "sampled.yaml"), "--estimate"]) == 0
    said = f"reads {reading['bytes_read'] / 1e9:.3g} GB of {reading['bytes_total'] / 1e9:.3g} GB"
    assert said in capsys.readouterr().err
    for m in ("rio_mini", "rio_mini_opd"):
        full, sampled = runs["full"]["per_model"][m], runs["sampled"]["per_model"][m]
        assert sampled["verdict"] == full["verdict"] == "interpolation"
        a_full, a = full["a"]["value"], sampled["a"]
        assert a["lo"] <= a_full <= a["hi"]
    assert abs(runs["sampled"]["per_model"]["rio_mini"]["a"]["value"] - 0.6) < 0.005
