"""Intervals and the paired test, checked against their defining equations."""
import math

import pytest

from densepolicy.stats import Z95, compare, mcnemar_exact, wilson_interval


@pytest.mark.parametrize("k, n", [(0, 10), (3, 6), (57, 200), (200, 200), (1, 500)])
def test_wilson_bounds_solve_the_score_equation(k, n):
    lo, hi = wilson_interval(k, n)
    p_hat = k / n
    assert 0 <= lo <= p_hat <= hi <= 1
    for p in (lo, hi):  # each bound is a p with |p_hat - p| = z * sqrt(p (1 - p) / n)
        assert (p_hat - p) ** 2 == pytest.approx(Z95 ** 2 * p * (1 - p) / n, abs=1e-12)


def test_mcnemar_exact_is_the_two_sided_binomial_on_discordant_pairs():
    def two_sided(a, b):  # every outcome at most as likely as the one seen, under p = 1/2
        n = a + b
        pmf = [math.comb(n, i) / 2 ** n for i in range(n + 1)]
        return min(1.0, sum(q for q in pmf if q <= pmf[a] * (1 + 1e-12)))
    for a, b in [(1, 0), (3, 12), (10, 10), (0, 9), (25, 40)]:
        assert mcnemar_exact(a, b) == pytest.approx(two_sided(a, b), rel=1e-9)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) < 0.05 < mcnemar_exact(1, 6)


def test_compare_pairs_episodes_by_key():
    base = {("t", i): i % 2 == 0 for i in range(10)}
    trained = {("t", i): True for i in range(10)}
    trained[("extra", 0)] = True  # not in base: ignored
    c = compare(base, trained)
    assert (c.episodes, c.base_acc, c.trained_acc, c.only_base, c.only_trained) == (10, 0.5, 1.0, 0, 5)
    assert math.isclose(c.p_value, 2 / 2 ** 5)
    assert c.base_ci[0] < 0.5 < c.base_ci[1] and c.trained_ci[1] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        compare({1: True}, {2: True})


def test_paired_bootstrap_separates_a_real_shift_from_none():
    from densepolicy.stats import paired_bootstrap_p
    base = {i: 0.25 for i in range(100)}
    assert paired_bootstrap_p(base, dict(base)) == 1.0
    better = {i: 0.25 + (0.5 if i % 2 else 0.0) for i in range(100)}
    assert 2 / 2001 <= paired_bootstrap_p(base, better, resamples=2000) < 0.01
    noisy = {i: 0.25 + (0.25 if i % 2 else -0.25) for i in range(100)}  # mean shift 0
    assert paired_bootstrap_p(base, noisy, resamples=2000) > 0.3
