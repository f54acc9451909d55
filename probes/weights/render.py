"""Presentation of the weights probe's evidence: summary, tables, artifacts, per-layer heatmap."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from harness.evidence import ProbeEvidence
from harness.format import ci_label
from probes.base import save_figure, subplots
from probes.weights.result import WeightsResult
from probes.weights.verdict import RULE, conversion


def _n(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def label(r: WeightsResult) -> str:
    """The verdict with the parent it names and, for a copy, how it was stored: "copy (parent_a, dtype
    conversion F32 -> F16)"."""
    how = conversion(r, r.parent) if r.verdict == "copy" and r.parent else ""
    named = ", ".join(x for x in (r.parent, how) if x)
    return f"{r.verdict} ({named})" if named else r.verdict


def summary(ev: ProbeEvidence) -> str:
    out = []
    for m, r in ev.results(WeightsResult).items():
        if r.role != "suspect":
            continue
        a = r.a.text() if r.a else "n/a"
        out.append(
            f"{m}: {label(r)}, family {r.family.name}; a = {a} "
            f"({ci_label(ev.ci_level)} CI, tensors resampled), cos fit {_n(r.cos_fit, 4)} vs null {_n(r.null_cos)}, "
            f"residual {r.rel_residual:.2g} (floor {r.storage_floor:.2g}), {r.tensors} tensors."
        )
    return " ".join(out)


def report_section(evidence: ProbeEvidence) -> str:
    level = ci_label(evidence.ci_level)
    results = evidence.results(WeightsResult)
    out = [
        f"| model | role | verdict | family | weights ({level} CI) | cos fit | toward the others (lower) | null "
        "| residual | floor | tensors | spread (SE) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, r in results.items():
        w = "; ".join(f"{p} {iv.text()}" for p, iv in r.weights.items())
        out.append(
            f"| {m} | {r.role} | {label(r)} | {r.family.name} | {w} | "
            f"{_n(r.cos_fit, 4)} | {_n(r.toward_others)} ({_n(r.toward_others_lo)}) | {_n(r.null_cos)} | "
            f"{r.rel_residual:.2g} | {r.storage_floor:.2g} | {r.tensors} "
            f"(+{r.tensors_identical} identical) | {_n(r.spread_in_se, 1)} |"
        )
    out += [
        "",
        "Reference R: " + ", ".join(sorted({r.reference for r in results.values()})) + ". Weights are fitted on S - R "
        "for all tensors at once (non-negative least squares); the CI resamples tensors. 'spread (SE)' is "
        "sqrt(Q/df) of the per-tensor a around it (1: the tensors agree within their own noise). 'toward the "
        "others' is the cos fit of S minus the parent carrying the weight on the other parents' differences "
        "from it: a merge's departure from one parent points to the others, a fine-tune's does not.",
        "",
        "Family evidence:",
        "",
        "| model | line residual | slerp residual (t) | zero where parents moved | rescale | sign agreement |",
        "|---|---|---|---|---|---|",
    ]
    for m, r in results.items():
        f = r.family
        out.append(
            f"| {m} | {f.linear_residual:.2g} | {f.slerp_residual:.2g} ({_n(f.slerp_t)}) | "
            f"{100 * f.zero_where_parents_moved:.2f}% | {_n(f.rescale)} | {_n(f.sign_agreement)} |"
        )
    for m, r in results.items():
        if r.role != "suspect":
            continue
        out += [
            "",
            f"{m}, per module class (first parent's a over tensors):",
            "",
            "| module | tensors | a mean | sd | min | max | cos median | residual |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for g, s in r.modules.items():
            out.append(
                f"| {g} | {s.tensors} | {_n(s.a_mean, 4)} | {_n(s.a_sd, 4)} | {_n(s.a_min, 4)} | {_n(s.a_max, 4)} | "
                f"{_n(s.cos_median, 4)} | {s.residual_rms:.2g} |"
            )
    unmatched = sorted({u for r in results.values() for u in r.unmatched})
    if unmatched:
        out += [
            "",
            f"Tensors not compared ({len(unmatched)}): "
            + "; ".join(unmatched[:10])
            + (" ..." if len(unmatched) > 10 else ""),
        ]
    arts = evidence.tables.get("artifacts", [])
    if arts:
        out += ["", "Artifacts in the repositories (circumstantial, not scored):", ""]
        out += [f"- {a['subject']}: {a['kind']} ({a['where']}): {a['finding']}" for a in arts]
    out += ["", "Checkpoints read:", "", "| model | path | files | GB | tensors | dtypes | headers sha256 |"]
    out.append("|---|---|---|---|---|---|---|")
    for c in evidence.tables.get("checkpoints", []):
        out.append(
            f"| {c['model']} | `{c['path']}` | {c['files']} | {c['bytes'] / 1e9:.2f} | {c['tensors']} | "
            f"{', '.join(c['dtypes'])} | {c['headers_sha256'][:12]} |"
        )
    out += ["", "Rule:", "", "```", RULE.rstrip(), "```"]
    return "\n".join(out) + "\n"


def figures(evidence: ProbeEvidence, out_dir: Path) -> list[tuple[str, Path]]:
    """Per suspect: the first parent's a per layer (rows) and module class (columns)."""
    results = evidence.results(WeightsResult)
    rows = evidence.tables.get("tensors", [])
    out = []
    for m, r in results.items():
        if r.role != "suspect":
            continue
        mine = [x for x in rows if x["subject"] == m and x["a"] is not None and math.isfinite(x["a"])]
        if not mine:  # nothing fitted (a copy of R, an all-zero subject): no picture to draw
            continue
        layers = sorted({x["layer"] for x in mine}, key=lambda v: (v == "-", int(v) if v.isdigit() else 0))
        modules = sorted({x["module"] for x in mine})
        grid = np.full((len(layers), len(modules)), np.nan)
        for i, lay in enumerate(layers):
            for k, mod in enumerate(modules):
                vals = [x["a"] for x in mine if x["layer"] == lay and x["module"] == mod]
                if vals:
                    grid[i, k] = float(np.mean(vals))
        a = r.a.value if r.a and r.a.value is not None else float(np.nanmean(grid))
        span = max(float(np.nanmax(np.abs(grid - a))) if np.isfinite(grid).any() else 0.0, 0.01)
        fig, ax = subplots(figsize=(1.2 * len(modules) + 2.5, 0.22 * len(layers) + 2))
        im = ax.imshow(grid, aspect="auto", cmap="coolwarm", vmin=a - span, vmax=a + span)
        ax.set_xticks(range(len(modules)), modules, rotation=30, fontsize=8)
        ax.set_yticks(range(len(layers)), [f"layer {v}" if v != "-" else "no layer" for v in layers], fontsize=7)
        fig.colorbar(im, ax=ax, label=f"a ({r.parents[0] if r.parents else ''})")
        ax.set_title(f"{m}: per-tensor a; single a = {a:.4f}", fontsize=9)
        path = save_figure(fig, out_dir / f"{evidence.instance}_{m}_a.png")
        out.append((f"{m}: first parent's weight per layer and module (mean over tensors), against the single a", path))
    return out
