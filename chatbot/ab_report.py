"""The A/B report: thumbs-up rate per variant (Wilson intervals, two-proportion tests), arena win
rates with ties shown apart, Bradley-Terry strengths with intervals, and the votes
still needed to detect the configured effect. Shared by the CLI and the Dashboard tab.

    chatbot ab report [--json]
"""

from __future__ import annotations

import io
import itertools
from collections import Counter
from dataclasses import asdict, dataclass, field

from chatbot.ab import AbStore, Vote
from chatbot.ab_stats import (Proportion, ProportionTest, Strength, bradley_terry_intervals,
                              two_proportion_test, votes_needed_one_sample,
                              votes_needed_two_groups, wilson)
from index.text import counted


NO_VOTES = "no arena votes yet: open the Arena tab of `chatbot serve`"
NO_RATINGS = ("no rated answers in A/B sessions yet: thumbs up/down in the Chat tab of sessions "
              "the split assigned are counted")


@dataclass(frozen=True)
class ThumbsTest:
    a: str
    b: str
    test: ProportionTest | None
    needed_per_variant: int
    """More rated answers each variant needs to detect ``min_effect`` (0: enough)."""


@dataclass(frozen=True)
class PairRecord:
    a: str
    b: str
    a_wins: int
    b_wins: int
    ties: int
    both_bad: int
    a_win_rate: Proportion
    """Share of decisive votes won by ``a``, with its Wilson interval."""
    needed: int
    """More decisive votes needed to tell ``0.5 ± min_effect`` from 0.5 (0: enough)."""


@dataclass
class AbReport:
    variants: list[str]
    assignments: dict[str, int]
    thumbs: dict[str, Proportion]
    thumbs_tests: list[ThumbsTest]
    pairs: list[PairRecord]
    strengths: list[Strength]
    min_effect: float
    alpha: float = 0.05
    votes: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def thumbs_section(counts: dict[str, tuple[int, int]], variants: list[str], min_effect: float,
                   alpha: float, power: float) -> tuple[dict, list[ThumbsTest]]:
    rates = {v: wilson(*counts.get(v, (0, 0)), alpha=alpha) for v in variants}
    tests = []
    for a, b in itertools.combinations(variants, 2):
        ups = rates[a].successes + rates[b].successes
        total = rates[a].n + rates[b].n
        base = ups / total if total else 0.5
        need = votes_needed_two_groups(base, min_effect, alpha, power)
        tests.append(ThumbsTest(a, b, two_proportion_test(rates[a], rates[b]),
                                max(0, need - min(rates[a].n, rates[b].n))))
    return rates, tests


def pair_records(votes: list[Vote], min_effect: float, alpha: float, power: float
                 ) -> list[PairRecord]:
    """Per unordered pair, votes counted from the alphabetically first variant's side."""
    tallies: dict[tuple[str, str], Counter] = {}
    for vote in votes:
        a, b = sorted((vote.variant_a, vote.variant_b))
        outcome = vote.choice
        if outcome in ("a", "b"):
            winner = vote.variant_a if outcome == "a" else vote.variant_b
            outcome = "a_wins" if winner == a else "b_wins"
        tallies.setdefault((a, b), Counter())[outcome] += 1
    need = votes_needed_one_sample(min_effect, alpha, power)
    records = []
    for (a, b), tally in sorted(tallies.items()):
        decisive = tally["a_wins"] + tally["b_wins"]
        records.append(PairRecord(a, b, tally["a_wins"], tally["b_wins"], tally["tie"],
                                  tally["both_bad"], wilson(tally["a_wins"], decisive, alpha),
                                  max(0, need - decisive)))
    return records


def strengths(votes: list[Vote], n_boot: int, alpha: float) -> list[Strength]:
    """Bradley-Terry over all votes; ties and both-bad count as half a win each way."""
    names = sorted({v.variant_a for v in votes} | {v.variant_b for v in votes})
    if len(names) < 2:
        return []
    index = {name: i for i, name in enumerate(names)}
    winners, losers, ties = [], [], []
    for vote in votes:
        a, b = index[vote.variant_a], index[vote.variant_b]
        winners.append(b if vote.choice == "b" else a)
        losers.append(a if vote.choice == "b" else b)
        ties.append(vote.choice in ("tie", "both_bad"))
    return bradley_terry_intervals(names, winners, losers, ties, n_boot=n_boot, alpha=alpha)


def build_report(store: AbStore, variants: list[str], min_effect: float = 0.05,
                 alpha: float = 0.05, power: float = 0.8, n_boot: int = 500) -> AbReport:
    votes = store.votes()
    rates, tests = thumbs_section(store.thumbs(), variants, min_effect, alpha, power)
    report = AbReport(variants, store.assignments(), rates, tests,
                      pair_records(votes, min_effect, alpha, power),
                      strengths(votes, n_boot, alpha), min_effect, alpha, len(votes))
    if not votes:
        report.notes.append(NO_VOTES)
    if not any(p.n for p in rates.values()):
        report.notes.append(NO_RATINGS)
    return report


def _rate(p: Proportion) -> str:
    if not p.n:
        return "no data"
    return f"{p.rate:.1%} [{p.low:.1%}, {p.high:.1%}] ({p.successes}/{p.n})"


def render_markdown(report: AbReport) -> str:
    lines = [f"Thumbs-up rate, Wilson {1 - report.alpha:.0%} intervals (minimum effect "
             f"{report.min_effect:.0%}):", "",
             "| variant | sessions the A/B split sent to it | thumbs up |",
             "|---|---|---|"]
    lines += [f"| {v} | {report.assignments.get(v, 0)} | {_rate(p)} |"
              for v, p in report.thumbs.items()]
    lines += ["", f"| pair | difference [{1 - report.alpha:.0%} interval] | "
              "p (two-proportion test) | "
              "more ratings needed per variant |", "|---|---|---|---|"]
    for t in report.thumbs_tests:
        diff = (f"{t.test.difference:+.1%} [{t.test.low:+.1%}, {t.test.high:+.1%}]"
                if t.test else "–")
        p_value = f"{t.test.p_value:.3g} ({t.test.method})" if t.test else "–"
        lines.append(f"| {t.b} vs {t.a} | {diff} | {p_value} | {t.needed_per_variant} |")
    votes = counted(report.votes, "vote")
    if not report.pairs:  # no table header over no rows; the notes say what to do
        lines += ["", f"Arena ({votes})."]
    else:
        lines += ["", f"Arena ({votes}): win rate of the first variant among decisive votes; "
                  "ties and both-bad shown apart.", "",
                  "| pair | wins | losses | ties | both bad | win rate "
                  "| more decisive votes needed |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {p.a} vs {p.b} | {p.a_wins} | {p.b_wins} | {p.ties} | {p.both_bad} | "
                  f"{_rate(p.a_win_rate)} | {p.needed} |" for p in report.pairs]
    if report.strengths:
        lines += ["", "Bradley-Terry log-strength (a tie or both-bad vote is half a win for each), "
                  f"{1 - report.alpha:.0%} interval (the wider of the bootstrap percentile and "
                  "the profile likelihood):",
                  "", "| variant | strength |", "|---|---|"]
        lines += [f"| {s.name} | {s.strength:+.2f} [{s.low:+.2f}, {s.high:+.2f}] |"
                  for s in sorted(report.strengths, key=lambda s: -s.strength)]
    lines += [f"\n_{note}_" for note in report.notes]
    return "\n".join(lines)


def chart_figure(report: AbReport):
    """Two panels: thumbs-up rates with Wilson intervals; Bradley-Terry strengths. A panel
    with nothing to plot says so, rather than showing bare axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    rated = [(v, p) for v, p in report.thumbs.items() if p.n]
    for y, (name, p) in enumerate(rated):
        left.errorbar(p.rate, y, xerr=[[p.rate - p.low], [p.high - p.rate]], fmt="o", capsize=3)
    left.set_yticks(range(len(rated)), [v for v, _ in rated])
    left.set_xlim(0, 1)
    left.set_title(f"thumbs-up rate (Wilson {1 - report.alpha:.0%})")
    for y, s in enumerate(report.strengths):
        right.errorbar(s.strength, y, xerr=[[s.strength - s.low], [s.high - s.strength]],
                       fmt="s", capsize=3, color="tab:purple")
    right.set_yticks(range(len(report.strengths)), [s.name for s in report.strengths])
    right.axvline(0, color="black", linewidth=0.8)
    right.set_title("arena Bradley-Terry strength")
    if not rated:
        _say_empty(left, "no rated answers in A/B sessions yet")
    if not report.strengths:
        _say_empty(right, "no arena votes yet")
    fig.tight_layout()
    return fig


def _say_empty(axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, color="gray")
    axes.set_xticks([])
    axes.set_yticks([])


def chart_png(report: AbReport) -> bytes:
    import matplotlib.pyplot as plt

    fig = chart_figure(report)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()
