"""The case rule (harness/case.py) on each probe's real stance functions, fed evidence shaped as
the probes write it: conclusions, conflicts and what the rule refuses to conclude."""

from __future__ import annotations

from harness.case import ProbeCase, conclude, stances
from probes.identity.case import identity_case
from probes.logit.case import logit_case
from probes.logit.result import ControlCalibration, Interval, LogitResult
from probes.text.case import text_case
from probes.text.result import TextResult
from probes.tokenizer.case import tokenizer_case
from probes.tokenizer.result import Match, TokenizerResult

PARENTS = ["a", "b"]


def logit(verdict: str, a: float = 0.6, residual: float = 0.08, near: float = 0.4) -> LogitResult:
    """A suspect's result in logit evidence, typed as the probe writes it."""

    def iv(v: float) -> Interval:
        return Interval(value=v, lo=v - 0.01, hi=v + 0.01)

    cal = ControlCalibration(value=residual, controls={"ctl": 0.7}, empirical_p=0.5)
    return LogitResult(
        role="suspect",
        n_texts=64,
        a_hat=iv(a),
        weights={"a": iv(a), "b": iv(1 - a)},
        residual=iv(residual),
        nearest_parent_distance=iv(near),
        nearest_parent="a",
        cv_gain=0.9,
        cv_p=1e-9,
        p_weights_inside=1e-9,
        calibration={"residual": cal},
        verdict=verdict,
    )


def tokenizer(k_a: int, k_b: int, n: int = 284) -> TokenizerResult:
    vs = [Match(candidate=f"model:{p}", k=k, n=n, rate=k / n, ci=(0.0, 1.0)) for p, k in (("a", k_a), ("b", k_b))]
    return TokenizerResult(role="suspect", method="tokenizer", n_strings=n, matches=vs, verdict="-", vs_models=vs)


def claims(k: int, k_controls: int, p_adjusted: float) -> list[dict]:
    row = {"suspect": "s", "condition": "none", "parent": "a", "label": "alpha", "k": k, "n": 48, "questions": 12}
    return [
        row
        | {"ci": [k / 48 - 0.1, k / 48 + 0.05], "k_controls": k_controls, "n_controls": 96, "p_adjusted": p_adjusted}
    ]


def test_a_merge_with_agreeing_probes_is_concluded_a_merge_without_conflict():
    cases = [
        identity_case("identity", claims(40, 2, 1e-12), ["s"], PARENTS, 0.05),
        tokenizer_case("tokenizer", tokenizer(284, 284), PARENTS),
        logit_case("logit (full)", logit("interpolation"), PARENTS, 0.95),
    ]
    c = conclude([x for x in cases if x is not None])
    assert c.explanations == ["merge"] and c.flags == []
    assert "a = 0.600 (95% CI 0.590 to 0.610)" in cases[2].sentence
    assert "40/48 answers (83%" in cases[0].sentence and "284/284" in cases[1].sentence


def test_persona_claims_with_unrelated_logits_are_flagged_and_never_make_a_merge():
    """A model trained on a parent's persona data from its own initialisation: it claims the
    parent's name, its logits say unrelated. The conclusion rests on the logits."""
    cases = [
        identity_case("identity", claims(45, 1, 1e-15), ["s"], PARENTS, 0.05),
        tokenizer_case("tokenizer", tokenizer(284, 284), PARENTS),
        logit_case("logit (full)", logit("unrelated", a=0.3, residual=3.1, near=2.5), PARENTS, 0.95),
    ]
    c = conclude([x for x in cases if x is not None])
    assert "merge" not in c.explanations and c.explanations == ["original", "distilled"]
    assert len(c.flags) == 1 and "not lineage evidence" in c.flags[0] and "45/48" in c.flags[0]


def test_a_tokenizer_differing_from_both_parents_contradicts_a_merge_outright():
    cases = [
        tokenizer_case("tokenizer", tokenizer(226, 230), PARENTS),
        logit_case("logit (topk)", logit("interpolation"), PARENTS, 0.95),
    ]
    c = conclude([x for x in cases if x is not None])
    assert c.explanations == [] and "no conclusion" in c.text
    assert "contradicts a merge of the parents" in c.flags[0] and "226/284" in c.flags[0]


def test_lineage_probes_that_disagree_give_no_conclusion_and_identity_never_decides():
    disagree = conclude(
        [
            logit_case("topk", logit("interpolation"), PARENTS, 0.95),
            logit_case("full", logit("unrelated"), PARENTS, 0.95),
        ]
    )
    assert disagree.explanations == [] and "disagree" in disagree.flags[0]
    # A merge that one mode reads as trained further (tiny zoo dare_ties and ties in next-token
    # data) is still a merge in every probe: both are named, as a note, not a conflict.
    mixed = conclude(
        [
            logit_case("full", logit("interpolation"), PARENTS, 0.95),
            logit_case("next-token", logit("interpolation_plus_training", residual=0.6), PARENTS, 0.95),
        ]
    )
    assert mixed.explanations == ["merge", "merge_trained"] and not mixed.flags, mixed
    assert mixed.text.startswith("one of: a merge of the parents; a merge, trained further") and mixed.notes
    # ... but a merge beside anything else is still a conflict
    other = conclude(
        [
            logit_case("full", logit("interpolation_plus_training", residual=0.6), PARENTS, 0.95),
            logit_case("next-token", logit("derived_from_one_parent"), PARENTS, 0.95),
        ]
    )
    assert other.explanations == [] and "disagree" in other.flags[0]
    only_identity = conclude([identity_case("identity", claims(45, 1, 1e-15), ["s"], PARENTS, 0.05)])
    assert only_identity.explanations == [] and only_identity.text.startswith("not determined")


def test_no_parent_persona_above_controls_is_silent_and_a_copy_is_a_copy():
    silent = identity_case("identity", claims(3, 6, 1.0), ["s"], PARENTS, 0.05)
    assert silent is not None and all(cell.stance == "silent" for cell in silent.cells.values())
    copy = conclude([logit_case("full", logit("copy", a=1.0, residual=0.01, near=0.01), PARENTS, 0.95)])
    assert copy.explanations == ["copy"]


def test_derived_names_its_parent_and_related_names_both_lineages():
    """Issue 26: "derived from P" names P only where the evidence singled it out; where it could
    not separate a fine-tune of one parent from a sibling, the conclusion names both."""
    derived = logit("derived_from_one_parent", a=0.95, residual=0.7, near=0.5)
    derived.parent = "a"
    c = conclude([logit_case("full", derived, PARENTS, 0.95)])
    assert c.explanations == ["derived"] and c.text == "derived from a (a fine-tune of it)"
    related = conclude([logit_case("full", logit("related", residual=0.9, near=1.0), PARENTS, 0.95)])
    assert related.explanations == ["derived", "sibling"]
    assert related.text.startswith("one of: derived from one parent") and "shares the parents' base" in related.text
    assert "cannot tell these apart" in related.text
    sib = conclude([logit_case("full", logit("sibling", residual=0.9, near=1.0), PARENTS, 0.95)])
    assert sib.text == "shares the parents' base (a sibling)"


def test_an_own_initialisation_supports_distilled_and_contradicts_every_shared_weight_claim():
    case = logit_case("full", logit("unrelated", residual=1.0, near=0.9), PARENTS, 0.95)
    assert case.cells["distilled"].stance == "supports" and case.cells["original"].stance == "supports"
    for e in ("merge", "merge_trained", "derived", "sibling", "copy"):
        assert case.cells[e].stance == "contradicts", e


def _text(verdict: str, parent: str | None = None) -> TextResult:
    iv = Interval(value=0.6, lo=0.55, hi=0.65)
    return TextResult(
        role="suspect",
        prompts=32,
        samples=128,
        tokens=3000,
        weights={"a": iv, "b": Interval(value=0.4, lo=0.35, hi=0.45)},
        temperature=Interval(value=1.0, lo=0.98, hi=1.02),
        sampling_temperature=1.0,
        nll=2.0,
        excess=Interval(value=0.01, lo=0.0, hi=0.02),
        excess_p=0.3,
        cv_gain=0.1,
        cv_p=1e-8,
        fit_statistic=3.0,
        fit_df=3,
        fit_p=0.4,
        verdict=verdict,
        parent=parent,
    )


def test_text_evidence_takes_part_in_the_case_and_never_claims_weights():
    """Issue 26 item 4: a suspect with text-only evidence is no longer "not determined"; text
    supports a merge or a student's imitation of one (it cannot see weights), never a sibling."""
    alone = conclude([text_case("text", _text("interpolation"), 0.95)])  # type: ignore[list-item]
    assert alone.explanations == ["distilled", "merge", "merge_trained"]
    assert "cannot tell these apart" in alone.text
    with_logits = conclude(
        [
            x
            for x in (
                text_case("text", _text("interpolation"), 0.95),
                logit_case("full", logit("interpolation"), PARENTS, 0.95),
            )
            if x
        ]
    )
    assert with_logits.explanations == ["merge"]
    derived = text_case("text", _text("derived_from_one_parent", "a"), 0.95)
    assert derived is not None and derived.parent == "a" and derived.cells["sibling"].stance == "silent"
    assert text_case("text", _text("inconclusive"), 0.95) is None


def test_without_lineage_verdicts_a_tokenizer_unlike_every_parent_leaves_independent_or_distilled():
    """Issue 26: a model of another family gets no logit verdict; the tokenizer's verdict stands."""
    c = conclude([x for x in (tokenizer_case("tokenizer", tokenizer(12, 10), PARENTS),) if x])
    assert c.explanations == ["original", "distilled"] and "rules out every explanation" in c.notes[0]
    assert c.flags == []  # not a conflict: the only evidence there is
    same = conclude([x for x in (tokenizer_case("tokenizer", tokenizer(284, 284), PARENTS),) if x])
    assert same.explanations == [] and same.text.startswith("not determined")


def test_behavioural_lineage_is_set_aside_where_the_weights_show_the_parents_share_none():
    """Rule 4: the logit probe reads lineage in units of the parents' distance, a unit of strangers
    when the parents share no weights. A weights case that says so (``strangers``) sets the logit
    and text cases aside, and the conclusion rests on the weights; without it, the same two cases
    conflict."""
    weights = ProbeCase(
        "weights",
        "lineage",
        stances({"original", "distilled"}, {"merge", "merge_trained", "derived", "sibling", "copy"}, {}),
        "Its weights share nothing with the parents'.",
    )
    merge = logit_case("logit (full)", logit("interpolation"), PARENTS, 0.95)
    assert merge.behavioural
    assert conclude([merge, weights]).explanations == []  # the usual conflict
    weights.strangers = "The weights show that a ~ b share none (median cosine 0.001, below 0.052)"
    c = conclude([merge, weights])
    assert c.explanations == ["original", "distilled"] and c.set_aside == ["logit (full)"]
    assert c.notes[0].startswith("The weights show that a ~ b share none") and "set aside" in c.notes[0]
