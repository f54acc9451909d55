"""Which of the logit probe's tests cannot reach alpha at a given size, in words.

One place for the sentences, because two callers say them: the pre-flight (``probe.power``,
printed by ``validate`` and ``run --estimate`` before anything is sent) and the analysis (the
evidence's limitations, from the sizes the run actually had).
"""

from __future__ import annotations

from harness.stats import paired_floor, paired_units_for, rank_floor


def controls_note(controls: int, alpha: float) -> str | None:
    """The calibration's rank among ``controls`` bottoms out at 1 / (controls + 1)."""
    floor = rank_floor(controls)
    if controls == 0 or floor < alpha:
        return None
    return (
        f"with {controls} control{'s' if controls > 1 else ''}, a model's rank among them "
        f"(the calibration's empirical p) can be no smaller than {floor:.2g}, not below alpha "
        f"{alpha:g}: it places the suspect among the controls, it does not test it "
        "(the verdict's comparison with each control is the paired bootstrap test)"
    )


def selection_note(n_select: int, alpha: float) -> str | None:
    """Pool selection tests each added member on the selection half of the texts."""
    floor = paired_floor(n_select)
    if floor < alpha:
        return None
    return (
        f"no merge of the pool can be shown: on the {n_select} texts of the selection half the test's smallest "
        f"possible p is {floor:.2g}, not below alpha {alpha:g}; use at least {2 * paired_units_for(alpha)} texts"
    )


def cv_note(n_texts: int, alpha: float) -> str | None:
    """The held-out gain over the better parent is a signed-rank test over texts."""
    floor = paired_floor(n_texts)
    if floor < alpha:
        return None
    return (
        f"the held-out gain over the better parent is tested over {n_texts} texts, where its smallest possible "
        f"p is {floor:.2g}, not below alpha {alpha:g}: no merge verdict can be drawn; use at least "
        f"{paired_units_for(alpha)} texts"
    )
