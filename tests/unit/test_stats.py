"""Bootstrap confidence intervals (esc/stats.py) on samples whose answers are known."""

import math

import pytest

from esc.stats import correlation_ci, mean_ci, paired_difference_ci


def test_mean_ci_brackets_the_mean_and_narrows_with_more_data():
    small = mean_ci([0.0, 1.0] * 10, seed=1)
    large = mean_ci([0.0, 1.0] * 500, seed=1)
    assert small.value == pytest.approx(0.5) and large.value == pytest.approx(0.5)
    assert small.lo < 0.5 < small.hi and large.lo < 0.5 < large.hi
    assert (large.hi - large.lo) < (small.hi - small.lo) / 3  # width shrinks ~ 1/sqrt(n): sqrt(50) ~ 7
    # the normal approximation for n=1000 Bernoulli(0.5): half-width 1.96 * 0.5 / sqrt(1000) = 0.031
    assert (large.hi - large.lo) / 2 == pytest.approx(0.031, abs=0.006)
    assert small.n == 20 and large.n == 1000


def test_constant_sample_has_a_point_interval_and_is_seeded():
    est = mean_ci([2.0, 2.0, 2.0])
    assert (est.value, est.lo, est.hi) == (2.0, 2.0, 2.0)
    assert mean_ci([1.0, 5.0, 2.0, 8.0], seed=3) == mean_ci([1.0, 5.0, 2.0, 8.0], seed=3)
    with pytest.raises(ValueError, match="at least one"):
        mean_ci([])


def test_paired_difference_sees_a_consistent_small_gain_that_unpaired_noise_hides():
    before = [float(i) for i in range(40)]  # large spread between units
    after = [b + 0.1 + (0.01 if i % 2 else -0.01) for i, b in enumerate(before)]
    diff = paired_difference_ci(after, before)
    assert diff.value == pytest.approx(0.1)
    assert diff.excludes_zero() and diff.lo > 0.09
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference_ci([1.0], [1.0, 2.0])


def test_correlation_ci_signs_and_spearman_ignores_monotone_transforms():
    x = [float(i) for i in range(30)]
    y = [math.exp(v / 5) for v in x]  # monotone, far from linear
    spearman = correlation_ci(x, y, method="spearman")
    pearson = correlation_ci(x, y, method="pearson")
    assert spearman.value == pytest.approx(1.0)
    assert pearson.value < 0.9
    negative = correlation_ci(x, [-v for v in x])
    assert negative.value == pytest.approx(-1.0) and negative.hi < 0
    with pytest.raises(ValueError, match="method"):
        correlation_ci(x, y, method="kendall")
    with pytest.raises(ValueError, match=">= 3"):
        correlation_ci([1.0, 2.0], [1.0, 2.0])


def test_no_interval_for_one_value_or_a_value_that_is_not_a_number():
    for values in ([0.01], [1.0, float("nan"), 2.0], [0.5, float("inf")]):
        est = mean_ci(values)
        assert est.lo != est.lo and est.hi != est.hi, values  # NaN bounds
        assert not est.excludes_zero()  # so no report marks it as a change
    assert mean_ci([0.01]).value == 0.01
