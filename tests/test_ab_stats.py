"""Online A/B statistics against closed-form reference values and by simulation."""

import math

import numpy as np
import pytest

from chatbot.ab_stats import (bradley_terry, bradley_terry_intervals, profile_intervals,
                              two_proportion_test, votes_needed_one_sample,
                              votes_needed_two_groups, wilson)

Z = 1.959963985


def test_wilson_interval_matches_the_closed_form() -> None:
    k, n = 7, 10
    p = k / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z / (1 + Z**2 / n) * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    result = wilson(k, n)
    assert result.rate == 0.7
    assert (result.low, result.high) == pytest.approx((centre - half, centre + half), abs=1e-6)
    assert wilson(0, 0).rate is None and wilson(0, 0).low is None
    assert wilson(0, 20).low == 0.0 and wilson(0, 20).high > 0.1  # no bare "0%"


def test_two_proportion_z_test_matches_the_pooled_formula() -> None:
    a, b = wilson(30, 100), wilson(45, 100)
    pooled = 75 / 200
    z = (0.45 - 0.30) / math.sqrt(pooled * (1 - pooled) * (2 / 100))
    result = two_proportion_test(a, b)
    assert result.difference == pytest.approx(0.15)
    assert result.z == pytest.approx(z)
    assert result.p_value == pytest.approx(math.erfc(abs(z) / math.sqrt(2)))
    assert two_proportion_test(wilson(0, 0), b) is None


def test_rates_that_agree_so_far_show_no_difference_with_its_interval_not_a_dash() -> None:
    """3 of 3 thumbs up against 4 of 4 showed '–' for the difference, as if nothing could be
    said; it is +0% with an interval that 7 ratings leave wide, and Fisher's p of 1."""
    same = two_proportion_test(wilson(3, 3), wilson(4, 4))
    assert (same.difference, same.p_value, same.method) == (0.0, 1.0, "Fisher exact")
    assert same.low < -0.4 and same.high > 0.4
    assert two_proportion_test(wilson(0, 5), wilson(0, 9)).p_value == 1.0


def test_the_difference_of_two_rates_comes_with_newcombes_interval() -> None:
    """Newcombe (1998), method 10, his example: 56/70 against 48/80 differ by +0.2000
    [0.0524, 0.3339]. The interval is built from the two Wilson intervals, so it stays within
    [-1, 1] and keeps its coverage at a handful of ratings."""
    result = two_proportion_test(wilson(48, 80), wilson(56, 70))
    assert result.difference == pytest.approx(0.2)
    assert (result.low, result.high) == pytest.approx((0.0524, 0.3339), abs=5e-5)
    few = two_proportion_test(wilson(1, 2), wilson(1, 1))
    assert -1 <= few.low < 0 < few.difference < few.high <= 1


def test_votes_needed_match_the_arcsine_formula() -> None:
    h = 2 * math.asin(math.sqrt(0.6)) - 2 * math.asin(math.sqrt(0.5))
    one = ((Z + 0.8416212) / h) ** 2
    assert votes_needed_one_sample(0.1) == math.ceil(one)
    assert votes_needed_two_groups(0.5, 0.1) == math.ceil(2 * one)
    # every answer thumbed up so far: the rate can only fall, so a fall is what is sized
    assert votes_needed_two_groups(1.0, 0.1) == votes_needed_two_groups(0.0, 0.1) > 0


def test_bradley_terry_two_players_with_ties_as_half_wins() -> None:
    # A beats B 3 times, B beats A once: strength ratio 3. A tie plus one win is the same.
    strengths = bradley_terry([0, 0, 0, 1], [1, 1, 1, 0], [False] * 4, 2, prior=0.0)
    assert strengths[0] - strengths[1] == pytest.approx(math.log(3), abs=1e-6)
    with_tie = bradley_terry([0, 0], [1, 1], [False, True], 2, prior=0.0)
    assert with_tie[0] - with_tie[1] == pytest.approx(math.log(3), abs=1e-6)
    assert 1 / (1 + math.exp(strengths[1] - strengths[0])) == pytest.approx(0.75)


def test_bradley_terry_recovers_simulated_strengths_within_its_intervals() -> None:
    rng = np.random.default_rng(3)
    true = np.array([0.8, 0.0, -0.8])
    pairs = rng.integers(0, 3, (900, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    p_first = 1 / (1 + np.exp(true[pairs[:, 1]] - true[pairs[:, 0]]))
    first_wins = rng.random(len(pairs)) < p_first
    winners = np.where(first_wins, pairs[:, 0], pairs[:, 1])
    losers = np.where(first_wins, pairs[:, 1], pairs[:, 0])
    result = bradley_terry_intervals(["a", "b", "c"], winners, losers,
                                     np.zeros(len(pairs), bool), n_boot=200)
    for strength, value in zip(result, true):
        assert strength.low <= value <= strength.high
        assert strength.high - strength.low < 0.6
    sure = bradley_terry_intervals(["a", "b", "c"], winners, losers,
                                   np.zeros(len(pairs), bool), n_boot=200, alpha=0.01)
    for wide, usual in zip(sure, result):  # ab.alpha 0.01: 99% intervals hold the 95% ones
        assert wide.low < usual.low and wide.high > usual.high


def test_simulated_thumbs_up_ab_is_detected_and_aa_is_not_at_the_stated_rates() -> None:
    """300 simulated experiments at the computed sample size: a true +0.1 difference is
    found ~80% of the time; with equal rates p < 0.05 happens ~5% of the time."""
    rng = np.random.default_rng(11)
    n = votes_needed_two_groups(0.5, 0.1)
    runs = 300
    a = rng.binomial(n, 0.5, runs)
    same = rng.binomial(n, 0.5, runs)
    better = rng.binomial(n, 0.6, runs)
    aa = [two_proportion_test(wilson(x, n), wilson(y, n)).p_value for x, y in zip(a, same)]
    ab = [two_proportion_test(wilson(x, n), wilson(y, n)).p_value for x, y in zip(a, better)]
    assert 0.02 <= np.mean(np.array(aa) < 0.05) <= 0.09
    assert 0.72 <= np.mean(np.array(ab) < 0.05) <= 0.9


@pytest.mark.parametrize("a, b, exact_p", [((2, 2), (0, 2), 1 / 3), ((3, 3), (0, 3), 0.1),
                                           ((1, 1), (0, 1), 1.0)])
def test_a_handful_of_ratings_is_tested_exactly_not_by_the_normal_approximation(
        a, b, exact_p) -> None:
    """2/2 against 0/2 thumbs up gave p = 0.046 by the z-test: 'significant' after 4 ratings.
    Below 5 expected in any cell, Fisher's exact test is used, and says which test it is."""
    result = two_proportion_test(wilson(*a), wilson(*b))
    assert result.p_value == pytest.approx(exact_p)
    assert (result.method, result.z) == ("Fisher exact", None)
    assert result.difference == pytest.approx(b[0] / b[1] - a[0] / a[1])
    assert two_proportion_test(wilson(30, 100), wilson(45, 100)).method == "z"


@pytest.mark.parametrize("a_wins", [1, 3])
def test_a_few_unanimous_votes_leave_the_strengths_interval_around_zero(a_wins) -> None:
    """Every resample of one vote is that vote: the bootstrap gave +0.80 [+0.80, +0.80], a
    certain-looking strength. Three wins out of three (exact p = 0.25) are not established
    either; twenty are."""
    for wins, established in ((a_wins, False), (20, True)):
        a, b = bradley_terry_intervals(["a", "b"], [0] * wins, [1] * wins, [False] * wins,
                                       n_boot=100)
        assert a.low < a.strength < a.high and b.low < b.strength < b.high
        assert (a.low > 0 and b.high < 0) is established


def test_ten_unanimous_votes_establish_the_winner_as_the_exact_test_does() -> None:
    """10-0 has exact two-sided p = 0.002, yet the fit's normal interval held 0 ([-0.13, +3.84]):
    at separation its standard error grows with the estimate. Unanimous votes now establish a
    difference exactly where the pair's Wilson win-rate interval leaves 0.5, so the report's
    two tables agree."""
    for wins in range(1, 13):
        a, b = bradley_terry_intervals(["a", "b"], [0] * wins, [1] * wins, [False] * wins,
                                       n_boot=50)
        assert (a.low > 0 and b.high < 0) is (wilson(wins, wins).low > 0.5), wins
    a, _ = bradley_terry_intervals(["a", "b"], [0] * 10, [1] * 10, [False] * 10, n_boot=50)
    assert a.low > 0.5


def test_the_strength_interval_is_where_the_penalised_likelihood_drops_by_the_chi2_quantile(
        ) -> None:
    """Two variants, 7 wins to 2: the centred strength is half the log-odds d, and each end of
    its profile interval is where twice the drop of the log-likelihood (with the 0.25
    pseudo-wins each way) from its maximum reaches 3.84; the reported interval holds it."""
    wins, losses = 7 + 0.25, 2 + 0.25

    def loglik(d: float) -> float:
        return -wins * math.log1p(math.exp(-d)) - losses * math.log1p(math.exp(d))

    point = np.array([1, -1]) * math.log(wins / losses) / 2
    (low, high), _ = profile_intervals(point, np.array([[0, wins], [losses, 0]]))
    for end in (low, high):
        assert 2 * (loglik(2 * point[0]) - loglik(2 * end)) == pytest.approx(Z**2, abs=1e-6)
    a, _ = bradley_terry_intervals(["a", "b"], [0] * 7 + [1] * 2, [1] * 7 + [0] * 2,
                                   [False] * 9, n_boot=50)
    assert a.strength == pytest.approx(point[0], abs=1e-6)
    assert a.low <= low < a.strength < high <= a.high
