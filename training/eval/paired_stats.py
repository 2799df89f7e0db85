"""Paired statistics for offline evaluation: two variants answered the same items, so compare
them item by item.

Every comparison carries a paired bootstrap 95% interval of the mean difference, a paired
test (Wilcoxon signed-rank from scipy and an exact-in-the-limit sign-flip permutation test),
win/tie/loss counts and, for small samples, the smallest effect the sample could detect.

    chatbot eval --variants prompt,finetuned --data heldout.jsonl
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

N_BOOT = 2000
SEED = 0


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class PairedComparison:
    n: int
    baseline: Interval
    candidate: Interval
    difference: Interval
    """candidate - baseline, with its paired bootstrap 95% interval."""
    difference_t: Interval
    """candidate - baseline with a Student t 95% interval: on few items the percentile
    bootstrap is too narrow (3 items that all gained can't give it a bound below 0)."""
    wilcoxon_p: float | None
    """``None`` when every difference is zero (the test is undefined)."""
    permutation_p: float
    wins: int
    ties: int
    losses: int
    """Counted from the candidate's side, with the metric's direction."""
    min_detectable: float | None
    """Smallest difference detectable with 80% power at this n and spread (paired t)."""
    warning: str | None
    difference_bound: Interval | None = None
    """When every difference is equal: their exact binomial bound
    (:func:`equal_differences_interval`), which the interval is then."""

    @property
    def interval(self) -> Interval:
        """candidate - baseline with the wider of the bootstrap and Student t 95% intervals:
        the one the report shows and the gate judges by (the bootstrap alone is too narrow on
        few items). Equal differences have no spread for either: their binomial bound."""
        if self.difference_bound is not None:
            return self.difference_bound
        boot, student = self.difference, self.difference_t
        if np.isnan(student.low):  # fewer than 2 items: no interval (NaN bounds) either way
            return boot
        return Interval(boot.mean, min(boot.low, student.low), max(boot.high, student.high))


def bootstrap_mean(values: Sequence[float], n_boot: int = N_BOOT, seed: int = SEED
                   ) -> Interval:
    """Mean with a percentile bootstrap 95% interval (fixed seed: reports are reproducible);
    NaN bounds below 2 values, since every resample of one value is that value: a point that
    would read as certain."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        mean = float(x.mean()) if x.size else float("nan")
        return Interval(mean, float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, (n_boot, x.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Interval(float(x.mean()), float(low), float(high))


def t_interval(values: Sequence[float]) -> Interval:
    """Mean with a Student t 95% interval (NaN bounds below 2 values)."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean()) if x.size else float("nan")
    if x.size < 2:
        return Interval(mean, float("nan"), float("nan"))
    from scipy.stats import t

    half = float(t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return Interval(mean, mean - half, mean + half)


def equal_differences_interval(difference: float, n: int,
                               value_range: tuple[float, float] | None) -> Interval:
    """95% interval of the mean difference when all ``n`` differences equal ``difference``.

    Bootstrap and t intervals have zero width then, as if n items proved the mean exactly.
    Chosen over a minimum item count because it holds at every n and needs no magic number:
    the share of items that differ by ``difference`` is at least ``0.025 ** (1 / n)`` (the
    exact one-sided 97.5% binomial bound when all n did); the other items may differ by
    anything the metric's ``value_range`` allows, at worst its full width either way. For a
    0-1 metric and +1 on every item the lower bound clears 0 from 6 items on, where the sign
    test first reaches p < 0.05. An unbounded metric (``None``) has no finite bound."""
    width = None if value_range is None else value_range[1] - value_range[0]
    return equal_values_interval(difference, n, None if width is None else (-width, width))


def equal_values_interval(value: float, n: int,
                          value_range: tuple[float, float] | None) -> Interval:
    """95% interval of the mean of ``n`` values that all equal ``value``: at least
    ``0.025 ** (1 / n)`` of such items score ``value``, the others anywhere in
    ``value_range`` (for a 0-1 metric, Clopper-Pearson's bound; ``None``: unbounded)."""
    if value_range is None:
        return Interval(value, -math.inf, math.inf)
    share = 0.025 ** (1 / n)
    return Interval(value, share * value + (1 - share) * value_range[0],
                    share * value + (1 - share) * value_range[1])


def mean_interval(values: Sequence[float], value_range: tuple[float, float] | None,
                  n_boot: int = N_BOOT, seed: int = SEED) -> Interval:
    """Mean with its bootstrap 95% interval; equal values, where the bootstrap has no width
    (as if n items proved the mean exactly), with their exact bound instead."""
    x = np.asarray(values, dtype=float)
    if x.size >= 2 and np.ptp(x) == 0:
        return equal_values_interval(float(x[0]), x.size, value_range)
    return bootstrap_mean(x, n_boot, seed)


def permutation_p(diffs: Sequence[float], n_perm: int = 10_000, seed: int = SEED) -> float:
    """Two-sided sign-flip permutation test of mean difference 0 (paired, no distribution
    assumed); the observed statistic counts as one permutation, so p is never 0."""
    d = np.asarray(diffs, dtype=float)
    if d.size == 0 or not np.any(d):
        return 1.0
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_perm, d.size))
    observed = abs(d.mean())
    extreme = np.sum(np.abs((signs * d).mean(axis=1)) >= observed - 1e-12)
    return float((extreme + 1) / (n_perm + 1))


def wilcoxon_p(diffs: Sequence[float]) -> float | None:
    d = np.asarray(diffs, dtype=float)
    if d.size == 0 or not np.any(d):
        return None
    from scipy.stats import wilcoxon

    return float(wilcoxon(d, zero_method="zsplit").pvalue)


def win_tie_loss(diffs: Sequence[float], higher_is_better: bool = True, tol: float = 1e-9
                 ) -> tuple[int, int, int]:
    d = np.asarray(diffs, dtype=float) * (1 if higher_is_better else -1)
    return int(np.sum(d > tol)), int(np.sum(np.abs(d) <= tol)), int(np.sum(d < -tol))


def min_detectable_effect(diffs: Sequence[float], alpha: float = 0.05, power: float = 0.8
                          ) -> float | None:
    """Smallest mean difference a paired t-test at this n and spread detects with ``power``."""
    d = np.asarray(diffs, dtype=float)
    if d.size < 3:
        return None
    spread = float(d.std(ddof=1))
    if spread == 0:
        return None  # every difference equal: the sample says nothing about power
    from statsmodels.stats.power import TTestPower

    effect = TTestPower().solve_power(nobs=d.size, alpha=alpha, power=power)
    return float(np.asarray(effect).item()) * spread  # a 1-element array at some n


def compare_paired(baseline: Sequence[float], candidate: Sequence[float],
                   higher_is_better: bool = True, min_effect: float | None = None,
                   n_boot: int = N_BOOT, seed: int = SEED,
                   value_range: tuple[float, float] | None = None) -> PairedComparison:
    """Candidate vs baseline on the same items (equal length, same order); ``value_range`` is
    the metric's (None: unbounded), used when every difference is equal."""
    a, b = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.size} vs {b.size}")
    d = b - a
    mde = min_detectable_effect(d)
    warning = _small_sample_warning(d.size, mde, min_effect)
    wins, ties, losses = win_tie_loss(d, higher_is_better)
    return PairedComparison(
        n=int(d.size), baseline=mean_interval(a, value_range, n_boot, seed),
        candidate=mean_interval(b, value_range, n_boot, seed),
        difference=bootstrap_mean(d, n_boot, seed),
        difference_t=t_interval(d), wilcoxon_p=wilcoxon_p(d),
        permutation_p=permutation_p(d, seed=seed), wins=wins, ties=ties, losses=losses,
        min_detectable=mde, warning=warning,
        difference_bound=equal_differences_interval(float(d[0]), d.size, value_range)
        if d.size >= 2 and np.ptp(d) == 0 else None)


SIGNIFICANCE = 0.05


def _small_sample_warning(n: int, mde: float | None, min_effect: float | None) -> str | None:
    if n < 3:
        return f"only {n} paired item(s): no interval or test is meaningful"
    if 2 / 2**n > SIGNIFICANCE:  # the signed-rank test's smallest two-sided p at this n
        return (f"{n} items: the signed-rank test can't reach p < {SIGNIFICANCE:g} below 6 "
                f"items (its smallest p here is {2 / 2**n:.3f}), whatever the answers")
    if min_effect is not None and mde is not None and mde > min_effect:
        return (f"{n} items can only detect differences of ±{mde:.3f} or more (80% power); "
                f"the configured minimum effect {min_effect:.3f} needs more items")
    return None
