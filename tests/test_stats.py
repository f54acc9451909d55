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
