"""Statistics helpers against values derived by hand or by simulation with a known truth."""

from __future__ import annotations

import numpy as np
import pytest

from harness.stats import adjust, bootstrap_weights, cluster_bootstrap, paired_bootstrap, z_pvalue


def test_holm_matches_hand_computation():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    assert adjust([0.01, 0.04, 0.03, 0.005], "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjust([0.5, float("nan")], "holm")[0] == 0.5


def test_bh_matches_hand_computation():
    # sorted p: 0.005, 0.01, 0.03, 0.04 -> p*m/rank: 0.02, 0.02, 0.04, 0.04
    assert adjust([0.01, 0.04, 0.03, 0.005], "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])


def test_z_pvalue_reference_values():
    assert z_pvalue(1.96, 0.0, 1.0) == pytest.approx(0.05, abs=1e-3)
    assert z_pvalue(1.0, 0.0, 1.0, "greater") == pytest.approx(0.158655, abs=1e-6)


def ratio(s: np.ndarray) -> np.ndarray:
    return s[..., 1] / s[..., 0]


def test_cluster_bootstrap_ci_covers_truth_at_nominal_rate():
    """200 simulated data sets of 40 clusters with a known ratio a = 0.6; the 95% CI should
    cover it in 90-99% of them."""
    rng = np.random.default_rng(12345)
    covered = 0
    for _ in range(200):
        x = rng.gamma(2.0, 1.0, size=(40, 30))
        y = 0.6 * x + rng.normal(0, 0.8, size=x.shape) + rng.normal(0, 0.3, size=(40, 1))  # cluster effect
        per = np.stack([(x * x).sum(1), (x * y).sum(1)], axis=1)
        iv = cluster_bootstrap(per, ratio, rng, replicates=400)
        covered += iv.low <= 0.6 <= iv.high
    assert 180 <= covered <= 198, covered


def test_bootstrap_is_deterministic_given_the_generator():
    per = np.random.default_rng(0).normal(1, 0.1, size=(20, 2))
    a = cluster_bootstrap(per, ratio, np.random.default_rng(7), replicates=100)
    b = cluster_bootstrap(per, ratio, np.random.default_rng(7), replicates=100)
    assert (a.low, a.high) == (b.low, b.high)
    assert a.value == pytest.approx(per[:, 1].sum() / per[:, 0].sum())


def test_chunked_bootstrap_draws_the_same_replicates_as_one_block():
    # Chunking bounds memory; it must not change a single replicate (same draws, same pairing).
    rng = np.random.default_rng(0)
    per = {"m": rng.normal(size=(37, 3)), "c": rng.normal(size=(37, 3))}
    stat = lambda v: {"sum0": v[..., 0], "ratio": v[..., 1] / v[..., 2]}  # noqa: E731
    whole = bootstrap_weights(37, 2500, np.random.default_rng(5))
    for chunk in (1, 7, 1000, 10**6):
        got = paired_bootstrap(per, stat, 2500, np.random.default_rng(5), chunk=chunk)
        for key, x in per.items():
            assert got[key]["sum0"].shape == (2500,)
            np.testing.assert_allclose(got[key]["sum0"], whole @ x[:, 0], rtol=0, atol=1e-12)
            np.testing.assert_allclose(got[key]["ratio"], (whole @ x[:, 1]) / (whole @ x[:, 2]), rtol=1e-12)


def test_question_level_claim_test_holds_its_level_where_pooled_fisher_does_not():
    """Issue 14: the identity probe's Fisher test counted 4 samples of one question as 4
    independent trials. Simulated control pair (same claim behaviour, 24 questions x 4 samples,
    answers correlated within a question through a model x question effect): the question-level
    sign-flip test rejects at about its level, pooled Fisher about twice as often."""
    from scipy import stats as sps
    from scipy.special import expit

    from harness.stats import signflip_pvalue

    rng = np.random.default_rng(2026)
    reps, questions, samples = 1000, 24, 4
    new = fisher = 0
    for _ in range(reps):
        u = rng.normal(0, 0.5, questions)  # question difficulty, shared by both models
        ks, kc = (rng.binomial(samples, expit(-1 + u + rng.normal(0, 3, questions))) for _ in range(2))
        new += signflip_pvalue((ks - kc) / samples, rng, 2000) < 0.05
        n = questions * samples
        table = [[ks.sum(), n - ks.sum()], [kc.sum(), n - kc.sum()]]
        fisher += sps.fisher_exact(table, alternative="greater").pvalue < 0.05
    assert 0.02 <= new / reps <= 0.08, new / reps  # measured: 0.036
    assert fisher / reps > 0.08, fisher / reps  # measured: 0.109


def test_clustered_wilson_widens_with_within_question_agreement():
    from harness.stats import clustered_wilson, wilson

    lo1, hi1 = clustered_wilson(np.array([1, 0] * 12), np.ones(24))  # one answer per question: plain Wilson
    assert (lo1, hi1) == pytest.approx(wilson(12, 24))
    lo4, hi4 = clustered_wilson(np.array([4, 0] * 6), np.full(12, 4))  # 4 identical answers per question
    assert (lo4, hi4) == pytest.approx(wilson(6, 12))  # counts as 12 answers, not 48
    lo0, hi0 = clustered_wilson(np.zeros(12), np.full(12, 4))  # no claim at all: each question counts once
    assert lo0 == pytest.approx(0, abs=1e-12) and hi0 == pytest.approx(wilson(0, 12)[1])
