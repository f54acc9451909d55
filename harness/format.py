"""How numbers are printed in reports: one place, so every section writes NaN, CIs and p-values alike."""

from __future__ import annotations

import math

from harness.evidence import Estimate


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def fmt_range(lo: float | None, hi: float | None, digits: int = 3) -> str:
    """An interval's ends joined by "to": "-4.99 to 5.04", where a hyphen read "-4.99-5.04"."""
    return f"{fmt(lo, digits)} to {fmt(hi, digits)}"


def ci_label(level: float) -> str:
    """'95%' for 0.95, '99%' after ``analyze --alpha 0.01``: intervals are never labelled by habit."""
    return f"{100 * level:g}%"


def fmt_ci(e: Estimate, digits: int = 3) -> str:
    return f"{fmt(e.value, digits)} [{fmt(e.ci_low, digits)}, {fmt(e.ci_high, digits)}]"


def fmt_p(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "n/a"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def estimates_table(estimates: list[Estimate]) -> str:
    rows = ["| estimate | model | value [CI] | p | n |", "|---|---|---|---|---|"]
    rows += [f"| {e.name} | {e.model} | {fmt_ci(e)} | {fmt_p(e.p_value)} | {e.n} |" for e in estimates]
    return "\n".join(rows) + "\n"
