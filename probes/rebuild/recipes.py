"""What a rebuild is: the families searched, a merge's mergekit recipe and name, and its
rounding twin. Collection builds from these, analysis reads the records back through them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.suite import ModelSpec
from probes.rebuild.params import RebuildParams

NARROW = ("bfloat16", "float16")


BASED = ("task_arithmetic", "ties", "dare_ties")  # families whose recipe needs the parents' base
ON_CURVE = ("linear", "slerp")  # families whose ends (a = 1, a = 0) are the parents themselves
KINKED = ("ties", "dare_ties")  # sign election: the distance has a kink, not a parabola, at its minimum


def family_labels(params: RebuildParams) -> list[str]:
    """The families searched, in order: ties and dare_ties once per density ("ties@0.5")."""
    return [
        label
        for m in params.families
        for label in ([f"{m}@{d:g}" for d in params.densities] if m in ("ties", "dare_ties") else [m])
    ]


def untried_reason(label: str, base: str | None, parents: int) -> str | None:
    """Why a family cannot be searched here (None: it can). slerp, ties and dare_ties merge two
    models; three or more parents are merged linearly or by task arithmetic."""
    method, _ = split_label(label)
    if parents > 2 and method not in ("linear", "task_arithmetic"):
        return f"merges two models; this suite has {parents} parents"
    if method in BASED and not base:
        return "needs the parents' base (params.base)"
    return None


def split_label(label: str) -> tuple[str, float | None]:
    """A family label as (mergekit merge_method, density or None)."""
    method, _, density = label.partition("@")
    return method, float(density) if density else None


@dataclass(frozen=True)
class Want:
    """A merge some subject's search needs served next."""

    subject: str
    family: str  # a label of family_labels
    a: float  # the first parent's share: linear weight, slerp's t, the first task vector's weight
    more: tuple[float, ...] = ()  # the next parents' free weights (task arithmetic; linear of 3+)
    dtype: str = "float32"  # the weights as written
    math: str = "float32"  # the arithmetic: float64 for the twin that measures float32's own rounding

    def weights(self, parents: int) -> list[float]:
        """Every parent's weight: a linear merge's last completes the sum to 1; task arithmetic's
        are all free."""
        free = [self.a, *self.more]
        if len(free) == parents:
            return free
        return [*free, round(1 - sum(free), 6)]

    def recipe(self, dirs: list[str], base: str | None = None) -> dict[str, Any]:
        """The mergekit recipe over the parents' weight folders ``dirs`` (and the base's)."""
        method, density = split_label(self.family)
        out: dict[str, Any] = {"dtype": self.math, "out_dtype": self.dtype}
        if method == "slerp":
            first, second = dirs
            return {
                "merge_method": "slerp",
                "base_model": second,
                "models": [{"model": second}, {"model": first}],
                "parameters": {"t": self.a},
                **out,
            }
        sparse: dict[str, Any] = {"density": density} if density is not None else {}
        models = [{"model": d, "parameters": {"weight": w, **sparse}} for d, w in zip(dirs, self.weights(len(dirs)))]
        if method == "linear":
            return {"merge_method": "linear", "models": models, **out}
        if density is not None:
            out["parameters"] = {"normalize": True}
        return {"merge_method": method, "base_model": base, "models": models, **out}

    def model_name(self, backend: str) -> str:
        twin = "-float64-math" if self.math != "float32" else ""
        weights = "-".join(f"{w:.6f}" for w in (self.a, *self.more))
        label = self.family.replace("@", "-d")
        return f"rebuild-{backend}-{label}-{weights}-{self.dtype}{twin}"


def storage_dtype(model: ModelSpec, fallback: ModelSpec) -> str:
    """The dtype a subject's weights are stored in (its config.json), else the first parent's."""
    for m in (model, fallback):
        config = Path(m.path or "") / "config.json"
        if m.path and config.is_file():
            try:
                cfg = json.loads(config.read_text())
            except (OSError, ValueError):
                continue
            dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "float32")
            return dtype if dtype in NARROW else "float32"
    return "float32"


def twin_want(subject: str, family: str, a: float, storage: str, more: tuple[float, ...] = ()) -> Want:
    """The rebuild that measures rounding at weight ``a``: written in the subject's storage dtype
    where narrower than float32; else the same float32 weights computed in float64, whose
    difference from the float32 rebuild is float32 arithmetic's own rounding (the subject's maker
    rounded too: measured on Rio-mini, 3.5e-11 of the parents' distance at 2e-6 from its weight)."""
    if storage != "float32":
        return Want(subject, family, a, more, storage)
    return Want(subject, family, a, more, "float32", "float64")


def twin_model(rebuilds: dict[str, dict], twin: Want | None) -> str | None:
    """The served rebuild that is ``twin``, if any."""
    if twin is None:
        return None
    key = (twin.family, twin.a, list(twin.more), twin.dtype, twin.math)
    return next(
        (
            n
            for n, r in rebuilds.items()
            if (r.get("family"), float(r["a"]), r.get("more") or [], r.get("dtype"), r.get("math", "float32")) == key
        ),
        None,
    )


def is_twin(recipe: dict[str, Any]) -> bool:
    return recipe.get("dtype") != "float32" or recipe.get("math", "float32") != "float32"
