"""The rebuild probe's rule: what one family's equality test and curve say about a subject."""

from __future__ import annotations

from probes.rebuild.recipes import ON_CURVE, split_label
from probes.rebuild.result import FamilyFit, Verdict


def pinned(f: FamilyFit) -> bool:
    """Whether the weight is known to within the search's last bracket: equality is claimed only
    then (a flat curve's wide CI would excuse any distance)."""
    return all(i.lo is not None and i.hi is not None and i.hi - i.lo <= f.resolution for i in f.weights or [f.a])


def verdict_of(fit: FamilyFit, alpha: float) -> Verdict:
    """The rule (one family): equal within tolerance inside (0, 1) is a rebuild; equal at an end is
    the parent there (a copy); otherwise it differs, nearer than both parents or not. With several
    weights, "an end" is one parent's weight above 1 - the resolution."""
    method = split_label(fit.family)[0]
    if fit.weights:
        inside = all(w.value is not None and w.value <= 1 - fit.resolution for w in fit.weights)
        away = inside
    else:
        lo, hi, a = fit.a.lo, fit.a.hi, fit.a.value
        inside = lo is not None and hi is not None and lo > 0 and hi < 1
        # "Trained after merging" needs a minimum the search can tell from a parent: at least one
        # last bracket from either end (a parent converted to bfloat16 bottoms out at a = 0.9996).
        away = a is not None and fit.resolution <= a <= 1 - fit.resolution
    # Equality is claimed only where the weight is pinned to within the search's own last bracket:
    # a flat curve (a model no merge comes near) has a wide CI, and the weight error it would excuse
    # (curvature x half-width^2) is no evidence of anything.
    if fit.p_equal > alpha and pinned(fit):
        # Only linear and slerp pass through the parents themselves; a task-arithmetic, ties or dare
        # merge at a = 1 still differs from the first parent (base + a trimmed task vector).
        return "rebuilt" if inside or method not in ON_CURVE else "copy"
    near = inside and away and fit.nearer_than_parents and fit.distance.hi is not None and fit.distance.hi < 1
    return "near" if near else "differs"
