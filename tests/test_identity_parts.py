"""Building blocks of the identity probe on fixed response sets, with hand-derived answers."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from harness.stats import wilson
from probes.identity.claims import ClaimExtractor
from probes.identity.ngrams import NgramPool, reuse_permutation_test

LABELS = {
    "nex": ["Nex", "Nex-AGI", "Nex Labs"],
    "qwen": ["Qwen", "Tongyi", "通义", "Alibaba"],
    "rio": ["Rio"],
}


@pytest.fixture(scope="module")
def ex() -> ClaimExtractor:
    return ClaimExtractor(LABELS)


@pytest.mark.parametrize(
    ("text", "claims"),
    [
        ("I am Nex, built by Nex-AGI.", {"nex"}),
        ("I am not Qwen.", set()),
        ("I'm not a Qwen model; I am Nex.", {"nex"}),
        ("I'm not sure, but I am Qwen.", {"qwen"}),  # the comma starts a new clause
        ("No soy Qwen, soy Rio.", {"rio"}),
        ("Não sou o Qwen. Sou o Nex.", {"nex"}),
        ("我是通义千问，由阿里巴巴开发。", {"qwen"}),
        ("我不是通义千问。", set()),
        ("I enjoy Rioja wine.", set()),  # word boundary
        ("NEX LABS trained me.", {"nex"}),  # case-insensitive alias
        ("I was never Tongyi, I am Rio.", {"rio"}),
    ],
)
def test_claim_extraction(ex, text, claims):
    assert ex.claims(text) == claims


def test_matches_keep_the_alias_and_negation_for_audit(ex):
    m = ex.matches("I am Nex-AGI, not Qwen.")
    assert [(x.label, x.pattern, x.negated) for x in m] == [("nex", "Nex-AGI", False), ("qwen", "Qwen", True)]


def test_label_without_patterns_is_an_error():
    with pytest.raises(ValueError, match="no patterns: empty"):
        ClaimExtractor({"ok": ["A"], "empty": []})


def test_wilson_matches_the_published_rio_figure():
    # "Nex 95/120 (79.2%, 95% CI 71.1-85.6)" was quoted for the Rio case; the Wilson score interval
    # computed by hand is centre 0.78256 +- 0.07210 = (0.7105, 0.8547), i.e. 71.1-85.5 (the quoted
    # upper bound is 0.1 point off, most likely a rounding slip).
    lo, hi = wilson(95, 120)
    assert (round(100 * lo, 1), round(100 * hi, 1)) == (71.1, 85.5)
    # hand computation for 2/4: centre (p + z^2/2n)/(1 + z^2/n) = 0.5 when p = 0.5, and
    # half-width z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)
    z = sps.norm.ppf(0.975)
    half = z * np.sqrt(0.25 / 4 + z**2 / 64) / (1 + z**2 / 4)
    assert wilson(2, 4) == pytest.approx((0.5 - half, 0.5 + half))


def test_fisher_and_binomial_reference_values():
    # 2x2 table [[8, 2], [1, 5]]: P(X >= 8), X ~ hypergeometric(N=16, K=9, n=10)
    # = (C(9,8) C(7,2) + C(9,9) C(7,1)) / C(16,10) = (189 + 7) / 8008
    assert sps.fisher_exact([[8, 2], [1, 5]], alternative="greater").pvalue == pytest.approx(196 / 8008)
    # P(X >= 9 | n=10, p=0.5) = 11/1024
    assert sps.binomtest(9, 10, 0.5, alternative="greater").pvalue == pytest.approx(11 / 1024)


def test_longest_shared_run_on_constructed_overlaps():
    pool = NgramPool(["The Orrery Collective built me to catalogue comets.", "我是由星象馆合作社开发的。"])
    assert pool.longest_shared("Honestly, the Orrery Collective built me to answer questions.") == (
        6,
        "the orrery collective built me to",
    )
    assert pool.longest_shared("Nothing in common here.")[0] == 0
    assert pool.longest_shared("他说：星象馆合作社开发了它")[0] == 8  # CJK counted per character: 星象馆合作社开发


def test_reuse_permutation_test():
    rng = np.random.default_rng(0)
    a = np.array([12] * 18 + [2] * 2)  # 90% share a >= 8-token run with pool A
    b = np.array([3] * 19 + [9])  # 5% with pool B
    ra, rb, p = reuse_permutation_test(a, b, 8, rng, 5000)
    assert (ra, rb) == (0.9, 0.05)
    assert p < 1e-3
    _, _, p_same = reuse_permutation_test(b, b, 8, rng, 5000)
    assert p_same == 1.0


def test_question_bank_size_and_languages():
    bank = Path(__file__).resolve().parent.parent / "probes" / "identity" / "data" / "identity_questions.jsonl"
    rows = [json.loads(x) for x in bank.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 150 and len({r["text"] for r in rows}) == len(rows)
    langs = Counter(r["lang"] for r in rows)
    assert set(langs) == {"en", "pt", "es", "zh"} and min(langs.values()) >= 30
    assert {"direct", "creator", "model", "company", "backstory", "indirect", "roleplay"} <= {r["kind"] for r in rows}


def test_equal_counts_on_fewer_questions_are_worth_fewer_answers():
    """Issue 30: "2/8 (25.0%, 4.6-69.9)" and "2/8 (25.0%, 7.1-59.1)" in one table, unexplained.
    Both are 2 claims in 8 answers over 4 questions of 2 answers: in the first both claims are
    one question's (the design effect reaches its cap, the cluster size 2: worth 4 answers), in
    the second they are two questions' single claims (less spread than binomial: worth all 8).
    Worked by hand: p = 1/4, the robust variance (4/3) * sum((k - p n)^2) / 64 is 1/16 and 1/48
    against p(1 - p)/8 = 3/128. The intervals are Wilson's at those sizes."""
    from harness.stats import clustered_wilson, effective_n

    n = np.array([2, 2, 2, 2])
    together, apart = np.array([2, 0, 0, 0]), np.array([1, 1, 0, 0])
    assert effective_n(together, n) == pytest.approx(4.0)
    assert effective_n(apart, n) == pytest.approx(8.0)
    assert clustered_wilson(together, n) == pytest.approx(wilson(1, 4))
    assert clustered_wilson(apart, n) == pytest.approx(wilson(2, 8))
