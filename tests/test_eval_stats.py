"""Offline paired statistics against reference results and by simulation."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from training.eval.paired_stats import (bootstrap_mean, compare_paired, min_detectable_effect,
                                        permutation_p, wilcoxon_p, win_tie_loss)


def test_bootstrap_interval_matches_the_normal_interval_on_a_large_sample() -> None:
    x = np.random.default_rng(1).normal(0.3, 1.0, 2000)
    interval = bootstrap_mean(x)
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert interval.mean == pytest.approx(x.mean())
    assert interval.low == pytest.approx(x.mean() - half, abs=0.1 * half)
    assert interval.high == pytest.approx(x.mean() + half, abs=0.1 * half)
    assert bootstrap_mean(x) == interval  # fixed seed: the report is reproducible


def test_permutation_p_matches_scipy_exact_sign_flip_test() -> None:
    d = np.array([0.4, 0.1, -0.2, 0.5, 0.3, 0.0, 0.25, -0.05])
    exact = sps.permutation_test((d,), np.mean, permutation_type="samples",
                                 alternative="two-sided", n_resamples=np.inf).pvalue
    assert permutation_p(d) == pytest.approx(exact, abs=0.01)
    assert permutation_p(np.zeros(5)) == 1.0


def test_wilcoxon_matches_scipy_and_is_undefined_without_differences() -> None:
    d = [0.3, -0.1, 0.2, 0.5, 0.4, -0.2, 0.6, 0.1, 0.0, 0.35]
    assert wilcoxon_p(d) == pytest.approx(sps.wilcoxon(d, zero_method="zsplit").pvalue)
    assert wilcoxon_p([0.0, 0.0, 0.0]) is None


def test_win_tie_loss_follows_the_metric_direction() -> None:
    assert win_tie_loss([0.2, 0.0, -0.1, 0.3]) == (2, 1, 1)
    assert win_tie_loss([0.2, 0.0, -0.1, 0.3], higher_is_better=False) == (1, 1, 2)


def test_min_detectable_effect_is_the_paired_t_power_solution() -> None:
    d = np.random.default_rng(2).normal(0, 1, 50)
    normal_approx = (1.959964 + 0.841621) / math.sqrt(50) * d.std(ddof=1)
    assert normal_approx < min_detectable_effect(d) < 1.05 * normal_approx


def test_min_detectable_effect_is_a_number_at_every_n() -> None:
    """statsmodels answers some n (73, 87, 92...) with a 1-element array."""
    for n in (72, 73, 87, 92, 120):
        d = np.random.default_rng(n).normal(0, 1, n)
        assert isinstance(min_detectable_effect(d), float)


def test_the_gate_does_not_promote_on_noise_from_few_items() -> None:
    """With no true difference, ``token_f1>=0`` passes about 2.5% of the time (one side of a
    95% interval), at 3 items as at 8; the percentile bootstrap alone passed 12% at 3."""
    from training.eval.evaluate import check_gate, parse_gate
    from training.eval.result import EvalResult

    def gate(baseline, candidate):
        comparison = compare_paired(baseline, candidate, n_boot=500)
        result = EvalResult("e", "d", [], ["base", "new"], None, {}, {},
                            {"new": {"token_f1": comparison}}, 0.05)
        return check_gate(result, parse_gate("token_f1>=0"), "new")

    rng = np.random.default_rng(5)
    for n in (3, 5, 8):
        passed = sum(gate(np.zeros(n), rng.normal(0, 0.1, n)).passed for _ in range(400))
        assert passed / 400 <= 0.05, n
    few = gate([0, 0, 0], [0.1, 0.3, 0.2])
    assert not few.passed and "[-0.0484, +0.4484]" in few.message


def test_small_samples_warn_and_report_every_part() -> None:
    result = compare_paired([0.1, 0.5, 0.2, 0.9], [0.3, 0.5, 0.1, 1.0], min_effect=0.01)
    assert result.n == 4 and (result.wins, result.ties, result.losses) == (2, 1, 1)
    assert result.difference.low <= result.difference.mean <= result.difference.high
    assert result.warning == ("4 items: the signed-rank test can't reach p < 0.05 below 6 "
                              "items (its smallest p here is 0.125), whatever the answers")
    rng = np.random.default_rng(3)
    base = rng.uniform(0, 1, 8)
    eight = compare_paired(base, base + rng.normal(0, 0.2, 8), min_effect=0.01)
    assert eight.warning.startswith("8 items can only detect differences of ±")
    with pytest.raises(ValueError, match="differ in length"):
        compare_paired([1, 2], [1])


def intervals(rows: np.ndarray) -> np.ndarray:
    """(low, high) of each row's bootstrap interval of the mean."""
    return np.array([[i.low, i.high] for i in (bootstrap_mean(row, n_boot=500) for row in rows)])


def test_simulation_detects_a_true_effect_at_the_stated_power_and_not_an_aa_difference() -> None:
    """400 simulated evals of 60 items: a difference equal to the minimum detectable effect is
    found ~80% of the time; with no difference the 95% interval excludes 0 ~5% of the time."""
    rng = np.random.default_rng(7)
    n, seeds, spread = 60, 400, 0.3
    sample = rng.normal(size=n)
    effect = min_detectable_effect((sample - sample.mean()) / sample.std(ddof=1) * spread)
    noise = rng.normal(0, spread, (seeds, n))
    aa = intervals(noise)
    ab = intervals(noise + effect)
    false_positive = np.mean((aa[:, 0] > 0) | (aa[:, 1] < 0))
    detected = np.mean(ab[:, 0] > 0)
    assert 0.02 <= false_positive <= 0.09, false_positive
    assert 0.65 <= detected <= 0.95, detected


def test_the_printed_comparison_keeps_a_wide_latency_interval_apart_from_its_p_value() -> None:
    from app.commands.evaluate import comparison_lines

    rows = [["token_f1", "+0.010 [-0.020, +0.040]", "0.41", "0.40", "3/1/2", "6", "0.05", ""],
            ["latency_ms", "+3310.400 [-10095.100, +22716.900]", "0.5", "0.5", "2/0/4", "6",
             "900", "small sample"]]
    lines = comparison_lines(rows)
    assert "+22716.900] " in lines[1] and lines[1].endswith("n=6  (small sample)")
    assert lines[0].index("p=") == lines[1].index("p=")


def test_the_report_shows_the_interval_the_gate_judges_by() -> None:
    """Three items that all gained printed +0.200 [+0.133, +0.267], an interval clear of 0,
    while the gate (rightly) failed on [-0.048, +0.448]: the report now shows the latter."""
    from training.eval.report import comparison_rows
    from training.eval.result import EvalResult

    comparison = compare_paired([0, 0, 0], [0.1, 0.3, 0.2], n_boot=500)
    result = EvalResult("e", "d", [], ["base", "new"], None, {}, {},
                        {"new": {"token_f1": comparison}}, 0.05)
    assert comparison_rows(result, "new")[0][1] == "+0.200 [-0.048, +0.448]"


def test_one_item_says_its_interval_needs_more_items_instead_of_a_point() -> None:
    """An eval of one item printed token_f1 0.500 [0.500, 0.500]: a point that reads as
    certain. One value has no interval; the tables say so."""
    from training.eval.evaluate import summarize
    from training.eval.metrics import BY_NAME
    from training.eval.report import comparison_rows, summary_rows
    from training.eval.result import EvalResult

    scores = {name: [{**dict.fromkeys(BY_NAME), "token_f1": value}]
              for name, value in (("base", 0.2), ("new", 0.5))}
    comparison = compare_paired([0.2], [0.5], n_boot=500)
    result = EvalResult("e", "d", [], ["base", "new"], None, scores, summarize(scores),
                        {"new": {"token_f1": comparison}}, 0.05)
    row = next(row for row in summary_rows(result) if row[0] == "token_f1")
    assert row[1:] == ["0.200 [interval needs 2+ items] n=1",
                       "0.500 [interval needs 2+ items] n=1"]
    assert comparison_rows(result, "new")[0][1] == (
        "+0.300 [interval needs 2+ items]")
    assert math.isnan(bootstrap_mean([0.5]).low)  # metrics.json: null, not a point


def test_a_variant_that_scored_alike_on_every_item_gets_an_exact_bound_not_a_point() -> None:
    """exact_match 0 on each of 5 items showed 0.000 [0.000, 0.000] n=5, as if five items
    proved the variant never matches; up to 52% of such items could (the exact binomial bound,
    Clopper-Pearson's for 0 of 5), and its row now says so."""
    from training.eval.evaluate import summarize
    from training.eval.metrics import BY_NAME
    from training.eval.report import summary_rows
    from training.eval.result import EvalResult

    scores = {name: [{**dict.fromkeys(BY_NAME), "exact_match": value}] * 5
              for name, value in (("base", 0.0), ("new", 1.0))}
    result = EvalResult("e", "d", [], ["base", "new"], None, scores, summarize(scores), {}, 0.05)
    row = next(row for row in summary_rows(result) if row[0] == "exact_match")
    assert row[1:] == ["0.000 [0.000, 0.522] n=5", "1.000 [0.478, 1.000] n=5"]
    assert 1 - 0.025 ** (1 / 5) == pytest.approx(0.5218, abs=1e-4)


def test_a_length_the_same_on_every_item_is_bounded_below_by_zero_not_minus_infinity() -> None:
    from training.eval.evaluate import summarize
    from training.eval.metrics import BY_NAME

    scores = {"base": [{**dict.fromkeys(BY_NAME), "length": 4.0}] * 5}
    interval, n = summarize(scores)["base"]["length"]
    assert (interval.low, interval.high) == (pytest.approx(4 * 0.025 ** (1 / 5)), math.inf)


def test_equal_differences_on_few_items_give_an_interval_that_does_not_pass_the_gate() -> None:
    """exact_match +1 on each of 3 items showed +1.000 [+1.000, +1.000] and passed
    ``exact_match>=0``: three items can't establish a difference. Equal differences now get an
    exact binomial bound, which clears 0 only from 6 items on, and the gate says why."""
    from training.eval.evaluate import check_gate, parse_gate
    from training.eval.report import comparison_rows
    from training.eval.result import EvalResult

    def gated(n):
        comparison = compare_paired([0] * n, [1] * n, n_boot=500, value_range=(0.0, 1.0))
        result = EvalResult("e", "d", [], ["base", "new"], None, {}, {},
                            {"new": {"exact_match": comparison}}, 0.05)
        return result, check_gate(result, parse_gate("exact_match>=0"), "new")

    three, gate = gated(3)
    assert comparison_rows(three, "new")[0][1] == "+1.000 [-0.415, +1.000]"
    assert not gate.passed
    assert gate.message.endswith("; all 3 differences are equal (+1): an exact binomial bound "
                                 "clears 0 only from 6 such items")
    assert not gated(5)[1].passed and gated(6)[1].passed
    unbounded = compare_paired([10, 10, 10], [12, 12, 12], value_range=None)
    assert unbounded.interval.low == -math.inf and unbounded.interval.high == math.inf
