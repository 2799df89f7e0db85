"""Online A/B statistics: proportions with Wilson intervals, a two-proportion test, Bradley-Terry
strengths from arena votes with bootstrap and profile-likelihood intervals, and how many votes
are still needed.

Used by ``chatbot ab report`` and the Dashboard tab; every estimate comes with its interval.
numpy is imported here; scipy and statsmodels only inside the functions that need them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Proportion:
    successes: int
    n: int
    rate: float | None
    low: float | None
    high: float | None
    """Wilson interval at the report's ``alpha`` (``None`` with no observations)."""


@dataclass(frozen=True)
class ProportionTest:
    difference: float
    """rate(b) - rate(a)."""
    low: float
    high: float
    """Newcombe's interval of the difference, at the ``alpha`` of the two Wilson intervals."""
    z: float | None
    """The z statistic; ``None`` where Fisher's exact test was used."""
    p_value: float
    method: str = "z"
    """``"z"`` (pooled two-proportion z-test) or ``"Fisher exact"`` (small counts)."""


@dataclass(frozen=True)
class Strength:
    name: str
    strength: float
    """Bradley-Terry log-strength, centred so the strengths average 0."""
    low: float
    high: float
    """The wider of the percentile bootstrap and profile-likelihood intervals at the report's
    ``alpha``."""


def wilson(successes: int, n: int, alpha: float = 0.05) -> Proportion:
    """Rate with its Wilson score interval (good at small n and at rates near 0 or 1)."""
    if n == 0:
        return Proportion(successes, 0, None, None, None)
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, n, alpha=alpha, method="wilson")
    return Proportion(successes, n, successes / n, float(low), float(high))


def two_proportion_test(a: Proportion, b: Proportion) -> ProportionTest | None:
    """Two-sided test of equal rates; ``None`` while either side has no data. The pooled
    z-test needs at least 5 expected in every cell of the 2x2 table; below that (a handful of
    ratings, or rates that all agree so far) it calls noise significant, so Fisher's exact
    test answers instead."""
    if not a.n or not b.n:
        return None
    pooled = (a.successes + b.successes) / (a.n + b.n)
    difference = b.rate - a.rate
    low, high = _newcombe(a, b)
    if min(pooled, 1 - pooled) * min(a.n, b.n) < 5:
        from scipy.stats import fisher_exact

        table = [[b.successes, b.n - b.successes], [a.successes, a.n - a.successes]]
        return ProportionTest(difference, low, high, None, float(fisher_exact(table).pvalue),
                              "Fisher exact")
    from statsmodels.stats.proportion import proportions_ztest

    z, p = proportions_ztest([b.successes, a.successes], [b.n, a.n])
    return ProportionTest(difference, low, high, float(z), float(p))


def _newcombe(a: Proportion, b: Proportion) -> tuple[float, float]:
    """The interval of rate(b) - rate(a) from the two Wilson intervals (Newcombe 1998, method
    10): within [-1, 1], and true to its level at a handful of ratings, where the Wald
    interval is not."""
    difference = b.rate - a.rate
    return (difference - math.hypot(b.rate - b.low, a.high - a.rate),
            difference + math.hypot(b.high - b.rate, a.rate - a.low))


def votes_needed_two_groups(base_rate: float, min_effect: float, alpha: float = 0.05,
                            power: float = 0.8) -> int:
    """Observations per group to detect a rate change of ``min_effect`` from ``base_rate``:
    upward, or downward where the rate can't rise that far (every answer so far thumbed up)."""
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    changed = base_rate + min_effect if base_rate + min_effect <= 1 else base_rate - min_effect
    target = min(max(changed, 1e-6), 1 - 1e-6)
    effect = abs(proportion_effectsize(target, min(max(base_rate, 1e-6), 1 - 1e-6)))
    n = NormalIndPower().solve_power(effect_size=effect, alpha=alpha, power=power, ratio=1.0)
    return int(math.ceil(n))


def votes_needed_one_sample(min_effect: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Decisive votes for a pair to tell a win rate of ``0.5 + min_effect`` from 0.5."""
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    effect = abs(proportion_effectsize(min(0.5 + min_effect, 1 - 1e-6), 0.5))
    n = NormalIndPower().solve_power(effect_size=effect, alpha=alpha, power=power, ratio=0.0)
    return int(math.ceil(n))


def bradley_terry(winners: Sequence[int], losers: Sequence[int], ties: Sequence[bool],
                  n_players: int, iterations: int = 500, prior: float = 0.5) -> np.ndarray:
    """Log-strengths (mean 0) by the MM algorithm of Hunter (2004); a tie counts half a win
    each way. ``prior`` adds that many virtual half-wins between every pair, so a variant that
    never won still gets a finite strength."""
    wins = _win_counts(winners, losers, ties, n_players, prior)
    games = wins + wins.T
    total_wins = wins.sum(axis=1)
    p = np.ones(n_players)
    for _ in range(iterations):
        denom = (games / (p[:, None] + p[None, :])).sum(axis=1)
        new = total_wins / denom
        new /= np.exp(np.log(new).mean())
        if np.max(np.abs(new - p)) < 1e-10:
            p = new
            break
        p = new
    logp = np.log(p)
    return logp - logp.mean()


def bradley_terry_intervals(names: Sequence[str], winners: Sequence[int], losers: Sequence[int],
                            ties: Sequence[bool], n_boot: int = 500, seed: int = 0,
                            alpha: float = 0.05) -> list[Strength]:
    """Strengths with 1 - ``alpha`` intervals: the wider of the percentile bootstrap over whole
    votes (fixed seed) and the profile-likelihood interval (:func:`profile_intervals`). When
    every vote agrees, every resample is the same and the bootstrap shrinks to a point, so one
    vote alone would look certain; the profile interval keeps a few votes uncertain."""
    n = len(names)
    w, l, t = np.asarray(winners, int), np.asarray(losers, int), np.asarray(ties, bool)
    point = bradley_terry(w, l, t, n)
    rng = np.random.default_rng(seed)
    boot = np.empty((n_boot, n))
    for b in range(n_boot):
        pick = rng.integers(0, len(w), len(w)) if len(w) else np.array([], int)
        boot[b] = bradley_terry(w[pick], l[pick], t[pick], n, iterations=200)
    low, high = np.percentile(boot, [50 * alpha, 100 - 50 * alpha], axis=0)
    profile = profile_intervals(point, _win_counts(w, l, t, n), alpha)
    low, high = np.minimum(low, profile[:, 0]), np.maximum(high, profile[:, 1])
    return [Strength(name, float(point[i]), float(low[i]), float(high[i]))
            for i, name in enumerate(names)]


def profile_intervals(strengths: np.ndarray, wins: np.ndarray, alpha: float = 0.05
                      ) -> np.ndarray:
    """(low, high) per player: the centred log-strengths whose profile log-likelihood, pseudo
    wins included, lies within ``chi2(1).ppf(1 - alpha) / 2`` of its maximum at ``strengths``.

    Why not the normal (Wald) interval: at separation (10 votes to 0) the estimate and its
    standard error grow together (the Hauck-Donner effect), so the interval held 0 however
    one-sided the votes. Likelihood-ratio intervals of the penalised likelihood are what
    Heinze & Schemper (2002, Statistics in Medicine 21:2409) recommend for separated logistic
    data, and Bradley-Terry is logistic in the strength differences. With two variants and
    unanimous votes they exclude 0 exactly where the pair's Wilson win-rate interval excludes
    0.5, so the report's tables agree."""
    from scipy.optimize import brentq
    from scipy.stats import chi2

    drop = chi2.ppf(1 - alpha, 1) / 2
    top = _log_likelihood(strengths, wins)
    ends = np.empty((len(strengths), 2))
    for player, centre in enumerate(strengths):
        def excess(value: float) -> float:
            return top - _profile_log_likelihood(player, value, wins) - drop

        for side, direction in enumerate((-1.0, 1.0)):
            step = 1.0
            while excess(centre + direction * step) < 0 and step < 1e3:
                step *= 2
            ends[player, side] = brentq(excess, centre, centre + direction * step, xtol=1e-9)
    return ends


def _profile_log_likelihood(player: int, value: float, wins: np.ndarray) -> float:
    """Largest log-likelihood with ``player``'s centred log-strength fixed at ``value``: the
    others move in the plane where they sum to ``-value``."""
    from scipy.optimize import minimize

    n = len(wins)
    others = [i for i in range(n) if i != player]
    # orthonormal directions of zero sum among the others
    basis = np.linalg.svd(np.ones((1, n - 1)))[2][1:].T

    def strengths(free: np.ndarray) -> np.ndarray:
        theta = np.empty(n)
        theta[player] = value
        theta[others] = -value / (n - 1) + basis @ free
        return theta

    if n == 2:
        return _log_likelihood(strengths(np.zeros(0)), wins)

    def negative(free: np.ndarray) -> tuple[float, np.ndarray]:
        theta = strengths(free)
        return -_log_likelihood(theta, wins), -basis.T @ _gradient(theta, wins)[others]

    return -minimize(negative, np.zeros(n - 2), jac=True, method="BFGS").fun


def _log_likelihood(strengths: np.ndarray, wins: np.ndarray) -> float:
    """sum of wins[i, j] * log P(i beats j), P = logistic(strength_i - strength_j)."""
    return float(-(wins * np.logaddexp(0.0, strengths[None, :] - strengths[:, None])).sum())


def _gradient(strengths: np.ndarray, wins: np.ndarray) -> np.ndarray:
    weighted = wins / (1 + np.exp(strengths[:, None] - strengths[None, :]))  # wins * P(loss)
    return weighted.sum(axis=1) - weighted.sum(axis=0)


def _win_counts(winners: Sequence[int], losers: Sequence[int], ties: Sequence[bool],
                n_players: int, prior: float = 0.5) -> np.ndarray:
    """wins[i, j]: times i beat j, a tie half a win each way, plus ``prior / 2`` each way."""
    wins = np.full((n_players, n_players), prior / 2)
    np.fill_diagonal(wins, 0.0)
    w, l, t = np.asarray(winners, int), np.asarray(losers, int), np.asarray(ties, dtype=bool)
    np.add.at(wins, (w[~t], l[~t]), 1.0)
    np.add.at(wins, (w[t], l[t]), 0.5)
    np.add.at(wins, (l[t], w[t]), 0.5)
    return wins
