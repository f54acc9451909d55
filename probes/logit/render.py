"""Presentation of the logit probe's evidence: summary paragraph, report tables, forest plot.

Reads only the evidence (and the thresholds it was decided with), so a report can be rendered
again from a saved ``evidence.json`` without any model or record.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.evidence import ProbeEvidence
from harness.format import ci_label, fmt, fmt_ci, fmt_p, fmt_range
from harness.suite import Suite
from probes.base import save_figure, subplots
from probes.logit.result import MERGE_VERDICTS, LogitResult
from probes.logit.verdict import VerdictThresholds


def cv_gain_text(r: LogitResult, p_text: str) -> str:
    """The CV gain as a percentage, or why it has none. Against a copy the better single parent
    already predicts the suspect to within the noise floor, so the relative gain is a ratio of
    noise to noise (values of 1e290 were printed): it is not a number to quote."""
    if r.verdict == "copy":
        return "n/a (a copy: nothing is left for an interpolation to explain)"
    if not np.isfinite(r.cv_gain) or abs(r.cv_gain) > 10:
        return "n/a (undefined: the better parent leaves almost nothing to explain)"
    return f"{100 * r.cv_gain:.1f}% ({p_text})"


def merge_weight_text(r: LogitResult) -> str:
    """The weight-space reading of a_hat (``estimators.merge_weight_range``), or '' without one or
    for a model not read as a merge (a merge weight of -4.9 to 5.0 for an unrelated model says
    nothing and widened the forest plot's axis until the suspect's CI could not be seen)."""
    w = r.merge_weight
    if w is None or w.lo is None or w.hi is None or r.verdict not in MERGE_VERDICTS:
        return ""
    return f"; as a merge weight {fmt_range(w.lo, w.hi, 2)} (the CI widened by the residual, the logits' nonlinearity)"


def _verdict(r: LogitResult) -> str:
    return r.verdict.replace("_", " ") + (f" ({r.parent})" if r.parent else "")


def summary(results: dict[str, LogitResult], ci_level: float, suite: Suite, parents: list[str], n: int) -> str:
    """One paragraph per suspect: the verdict and the numbers that decide it."""
    lines = []
    level = ci_label(ci_level)
    for m in (x.name for x in suite.by_role("suspect")):
        r = results.get(m)
        if r is None:
            continue
        if r.a_hat is not None:
            a = r.a_hat
            weights = f"a_hat = {fmt(a.value)} ({level} CI {fmt_range(a.lo, a.hi)}) towards {(r.parents or parents)[0]}"
            weights += merge_weight_text(r)
        else:
            weights = ", ".join(f"{x} {fmt(w.value, 2)}" for x, w in r.weights.items())
        p_adj = "n/a" if r.cv_p_adjusted is None else format(r.cv_p_adjusted, ".2g")
        lines.append(
            f"**{m}: {r.verdict.replace('_', ' ')}**"
            + (f" ({r.parent})" if r.parent else "")
            + f". {weights}; residual off the parents' line {fmt(r.residual.value)} "
            f"(CI {fmt_range(r.residual.lo, r.residual.hi)}); CV gain over the better parent "
            f"{cv_gain_text(r, 'p_adj ' + p_adj)}; over {n} texts."
        )
    return "\n\n".join(lines)


def report_section(evidence: ProbeEvidence, parents: list[str], t: VerdictThresholds) -> str:
    """The verdict table, why each verdict, the divergences and the calibration against controls."""
    level = ci_label(evidence.ci_level)
    results = evidence.results(LogitResult)
    out = [
        f"| model | role | verdict | weights [{level} CI] | residual [CI] | nearest parent [CI] | CV gain (p_adj) | "
        "betweenness [CI] | lineage signal: task-free distance; excess [CI] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m, r in results.items():
        if r.a_hat is not None:
            w = r.a_hat.text()
            mw = r.merge_weight
            if merge_weight_text(r) and mw is not None:
                w += f"; as a merge weight {fmt_range(mw.lo, mw.hi, 2)}"
        else:
            w = "; ".join(f"{x}: {iv.text(2)}" for x, iv in r.weights.items())
        if r.unsupported:
            w += f" (on {', '.join(r.parents)}; not supported: {', '.join(r.unsupported)})"
        btw = r.betweenness.text() if r.betweenness else "n/a"
        tf, ex = r.task_free_distance.get(r.nearest_parent), r.lineage_excess.get(r.nearest_parent)
        signal = f"{tf.text()}; {ex.text() if ex else 'n/a'} ({r.n_task_free} inputs)" if tf else "n/a"
        out.append(
            f"| {m} | {r.role} | **{_verdict(r)}** | {w} | {r.residual.text()} | "
            f"{r.nearest_parent} {r.nearest_parent_distance.text()} | "
            f"{cv_gain_text(r, fmt_p(r.cv_p_adjusted))} | {btw} | {signal} |"
        )
    out += ["", "**Why each verdict** (rule in `probes/logit/verdict.py`):", ""]
    for m, r in results.items():
        out.append(f"- {m}: " + "; ".join(r.reasons))
    out += [
        "",
        f"Thresholds: copy <= {t.copy_max_distance} (or 3x noise floor); CV gain >= {t.min_cv_gain}; "
        f"weight CIs inside ({t.a_margin}, "
        f"{1 - t.a_margin}); merge residual <= {t.merge_max_residual}; merge+training residual <= "
        f"{t.trained_max_residual}; derived ratio <= {t.derived_max_ratio} (sibling: > {t.derived_max_ratio}); lineage "
        f"signal: inherited weights when the task-free distance CI is at or below 1 (the parents' own distance "
        f"there), an initialisation of its own when above {t.own_min_task_free}, undecided between (units of the "
        "parents' distance).",
        "",
    ]
    if len(parents) == 2:
        a, b = parents
        out += [
            "| model | KL to " + a + " | KL to " + b + " | JS to " + a + " | JS to " + b + " | a (geometric) | "
            "w (mixture) | KL geometric - KL mixture | unexplained from " + a + " | unexplained from " + b + " |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for m in evidence.per_model:
            e = {x.name: x for x in evidence.estimates if x.model == m}
            out.append(
                f"| {m} | {fmt_ci(e[f'kl[{a}]'])} | {fmt_ci(e[f'kl[{b}]'])} | {fmt_ci(e[f'js[{a}]'])} | "
                f"{fmt_ci(e[f'js[{b}]'])} | {fmt_ci(e['a_geometric'])} | {fmt_ci(e['w_mixture'])} | "
                f"{fmt_ci(e['kl_geometric_minus_mixture'], 4)} | {fmt_ci(e[f'unexplained_from[{a}]'])} | "
                f"{fmt_ci(e[f'unexplained_from[{b}]'])} |"
            )
        out.append("")
    out += _selection_section(evidence)
    cal_rows = [(m, st, c) for m, r in results.items() for st, c in r.calibration.items()]
    if cal_rows:
        out += [
            "Calibration against the controls (leave-one-out for controls):",
            "",
            "| model | statistic | value | controls | empirical p | z |",
            "|---|---|---|---|---|---|",
        ]
        for m, st, c in cal_rows:
            ctl = ", ".join(f"{k} {fmt(v)}" for k, v in c.controls.items())
            out.append(f"| {m} | {st} | {fmt(c.value)} | {ctl} | {fmt(c.empirical_p)} | {fmt(c.z, 2)} |")
        fewest = min(len(c.controls) for _, _, c in cal_rows)
        out += [
            "",
            "Empirical p = (1 + controls at least as merge-like) / (1 + controls): with "
            f"{fewest} control{'s' if fewest != 1 else ''} it cannot go below {1 / (fewest + 1):.2g}; "
            "z is undefined with fewer than two.",
        ]
        out.append("")
    return "\n".join(out) + "\n"


def _selection_section(evidence: ProbeEvidence) -> list[str]:
    """Parents from a pool: per model, what was selected, confirmed on held-out texts, dropped
    and why, and the sets that predict the held-out texts about as well."""
    rows = evidence.tables.get("selection", [])
    if not rows:
        return []
    alpha = 1 - evidence.ci_level
    out = [
        "**Parents from the pool** (`probes/logit/selection.py`: sizes chosen on a random half of the texts by "
        "the cross-validated gain test, each member confirmed on the other half, Holm-corrected):",
        "",
        "| model | parents found | best set per size (residual, CV gain, p) | confirmed on held-out texts (p_adj) | "
        "near-equivalent sets (held-out loss ratio) | per member: best swap and nearest relative (held-out loss "
        "ratio, p) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        steps = "; ".join(
            f"{st['size']}: {', '.join(st['members'])}"
            + ("" if st["size"] == 1 else f" ({fmt(st['residual'])}, {100 * st['cv_gain']:.0f}%, {fmt_p(st['p'])})")
            for st in r["steps"]
        )
        confirmed = ", ".join(f"{m} {fmt_p(p)}" for m, p in r["confirmed_p"].items()) or "-"
        equivalent = "; ".join(
            f"{', '.join(e['set'])} ({e['held_out_loss_ratio']:.2f})" for e in r["near_equivalent"][:4]
        )
        told = {True: "told apart", False: "not told apart"}
        per_member = []
        for m, alts in r.get("swaps", {}).items():
            if not alts:
                continue
            best, rel = alts[0], min(alts, key=lambda a: a["distance"])
            text = f"{m}: {best['alternative']} ({best['held_out_loss_ratio']:.2f}, {fmt_p(best['p_worse'])}, "
            text += f"{told[best['p_worse'] < alpha]})"
            if rel is not best:
                text += (
                    f"; nearest relative {rel['alternative']} at {rel['distance']:.2f} parent distances "
                    f"({rel['held_out_loss_ratio']:.2f}, {fmt_p(rel['p_worse'])}, {told[rel['p_worse'] < alpha]})"
                )
            per_member.append(text)
        closest = "; ".join(per_member)
        found = ", ".join(r["parents_found"]) or f"none ({(r['verdict'] or 'n/a').replace('_', ' ')})"
        out.append(f"| {r['model']} | {found} | {steps} | {confirmed} | {equivalent or '-'} | {closest or '-'} |")
    out += ["", "Candidates not taken, and why:", ""]
    for r in rows:
        out.append(f"- {r['model']}: " + "; ".join(f"{c}: {why}" for c, why in r["dropped"].items()))
    return [*out, "", *_genealogy_section(evidence)]


def _weights_text(weights: dict[str, float]) -> str:
    return " + ".join(f"{m} {w:.3f}" for m, w in sorted(weights.items(), key=lambda t: -t[1]))


def _genealogy_section(evidence: ProbeEvidence) -> list[str]:
    """The pool's genealogy (which candidates are merges of which), and each set that had a merge
    of the pool among its members, in roots."""
    rows = evidence.tables.get("genealogy", [])
    merges = [r for r in rows if not r["root"]]
    out = [
        "**The pool's genealogy** (`probes/logit/genealogy.py`: each candidate selected from the rest of the "
        "pool as a suspect is; a merge of the pool is then selected again from the roots alone): "
        + (
            f"{len(merges)} of {len(rows)} candidates are merges of the others."
            if merges
            else f"none of the {len(rows)} candidates is a merge of the others; every one is a root."
        ),
        "",
    ]
    if merges:
        out += ["| candidate | a merge of (direct) | in roots | near-equivalent sets |", "|---|---|---|---|"]
        for r in merges:
            equivalent = "; ".join(", ".join(e) for e in r["near_equivalent"][:3]) or "-"
            in_roots = _weights_text(r["in_roots"]) if r["in_roots"] else "not resolved in roots"
            out.append(f"| {r['candidate']} | {_weights_text(r['merge_of'])} | {in_roots} | {equivalent} |")
        out += ["", "Roots: " + ", ".join(r["candidate"] for r in rows if r["root"]) + ".", ""]
    vetoed = [r for r in rows if r["root"] and r.get("verdict")]
    if vetoed:
        out += [
            "Selected from the others but not a merge by the verdict rule (so kept as roots): "
            + "; ".join(f"{r['candidate']} ({r['verdict'].replace('_', ' ')})" for r in vetoed)
            + ".",
            "",
        ]
    for r in evidence.tables.get("selection", []):
        form = r.get("roots")
        if not form:
            continue
        better = {
            "direct": f"the direct set predicts them better ({fmt_p(form['p_direct_better'])})",
            "roots": f"the roots predict them better ({fmt_p(form['p_roots_better'])})",
            "neither": "neither predicts them significantly better",
        }[form["predicts_better"]]
        out.append(
            f"- {r['model']}: selected {_weights_text(form['direct'])}; in roots {_weights_text(form['composed'])} "
            f"(composed), {_weights_text(form['refit'])} (refitted). Held-out loss of the roots over the direct "
            f"set: {form['held_out_loss_ratio']:.2f}: {better}. Both are one merge; log-probs are not linear in "
            "the weights, so merges nearer the suspect interpolate it better whatever it was made from. The "
            "verdict is drawn against the roots."
        )
    return [*out, ""]


def genealogy_figure(evidence: ProbeEvidence, out_dir: Path) -> list[tuple[str, Path]]:
    """The genealogy as a graph: roots on top, each merge of the pool below, an arrow from each
    root it is made of, labelled with the weight."""
    rows = evidence.tables.get("genealogy", [])
    merges = [r for r in rows if not r["root"] and r["in_roots"]]
    if not merges:
        return []
    roots = [r["candidate"] for r in rows if r["root"]]
    fig, ax = subplots(figsize=(max(6, 1.3 * max(len(roots), len(merges))), 3.2))
    top = {m: (i - (len(roots) - 1) / 2, 1.0) for i, m in enumerate(roots)}
    low = {r["candidate"]: (i - (len(merges) - 1) / 2, 0.0) for i, r in enumerate(merges)}
    for r in merges:
        x1, y1 = low[r["candidate"]]
        for root, w in r["in_roots"].items():
            x0, y0 = top[root]
            ax.annotate("", (x1, y1 + 0.08), (x0, y0 - 0.08), arrowprops={"arrowstyle": "->", "alpha": 0.5})
            ax.text(x0 + 0.65 * (x1 - x0), y0 + 0.65 * (y1 - y0), f"{w:.2f}", fontsize=7, ha="center")
    for (name, (x, y)), colour in [*((i, "tab:blue") for i in top.items()), *((i, "tab:red") for i in low.items())]:
        ax.text(
            x, y, name, ha="center", va="center", fontsize=8, bbox={"boxstyle": "round", "fc": "white", "ec": colour}
        )
    ax.set_xlim(-max(len(roots), len(merges)) / 2 - 0.5, max(len(roots), len(merges)) / 2 + 0.5)
    ax.set_ylim(-0.4, 1.4)
    ax.axis("off")
    path = save_figure(fig, out_dir / f"{evidence.instance}_genealogy.png")
    return [("The pool's genealogy: roots (blue) and the merges of the pool made of them (red), with weights", path)]


def figures(evidence: ProbeEvidence, out_dir: Path, t: VerdictThresholds) -> list[tuple[str, Path]]:
    """Forest plot: the weight and the residual per model with CIs and the verdict thresholds."""
    from matplotlib.ticker import ScalarFormatter

    if not evidence.per_model:
        return []
    results = evidence.results(LogitResult)
    models = list(results)
    colours = {"suspect": "tab:red", "control": "tab:blue"}
    # Two parents: a_hat. More: the first parent's simplex weight (the table has all of them).
    first = next(e.name for e in evidence.estimates if e.name in ("a_hat",) or e.name.startswith("weight["))
    fig, axes = subplots(1, 2, figsize=(11, 0.45 * len(models) + 1.8), sharey=True)
    for ax, stat, label in ((axes[0], first, first), (axes[1], "residual", "residual off the parents' line")):
        for i, m in enumerate(models):
            e = next((x for x in evidence.estimates if x.name == stat and x.model == m), None)
            c = colours.get(results[m].role, "grey")
            if e is None or e.value is None or e.ci_low is None or e.ci_high is None:
                continue  # no finite estimate: nothing to draw (the table says n/a)
            mw = results[m].merge_weight
            if stat == "a_hat" and merge_weight_text(results[m]) and mw is not None:  # thin and light behind
                ax.hlines(i, mw.lo, mw.hi, color=c, alpha=0.35, lw=1)
            ax.errorbar(e.value, i, xerr=[[e.value - e.ci_low], [e.ci_high - e.value]], fmt="o", color=c, capsize=3)
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
    axes[0].axvline(0, color="grey", lw=0.8)
    axes[0].axvline(1, color="grey", lw=0.8)
    lo, hi = axes[0].get_xlim()
    axes[0].set_xlim(max(lo, -0.5), min(hi, 1.5))  # a weight beyond that says "not between": no need to see how far
    # Residuals span decades (a merge's 0.1, an unrelated model's 5): on a linear axis the largest
    # squeezes every CI near the thresholds into a dot.
    axes[1].set_xscale("log", nonpositive="clip")
    axes[1].xaxis.set_major_formatter(ScalarFormatter())  # 0.1, 1, not 10^-1, 10^0
    axes[1].axvline(t.merge_max_residual, color="tab:green", ls="--", lw=0.8, label="merge threshold")
    axes[1].axvline(t.trained_max_residual, color="tab:orange", ls="--", lw=0.8, label="merge+training threshold")
    axes[1].legend(loc="upper right", fontsize=8)
    axes[0].set_yticks(range(len(models)), [f"{m} ({results[m].verdict.replace('_', ' ')})" for m in models])
    axes[0].invert_yaxis()
    fig.suptitle(
        f"Logit interpolation, {ci_label(evidence.ci_level)} cluster-bootstrap CIs\n"
        "red: suspects, blue: controls; thin line: a_hat as a merge weight (merges only), widened by the residual",
        fontsize=10,
    )
    path = save_figure(fig, out_dir / f"{evidence.instance}_forest.png")
    return [("weights and residual per model, with the verdict thresholds", path)]
