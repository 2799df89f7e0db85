"""``chatbot eval``: offline A/B of variants on held-out data, with paired statistics and a gate."""

from __future__ import annotations

import math
import sys

import click

from app.commands.common import BotConfig, ctrl_c_ends_with, in_section, one_line_errors, \
    print_json, shown, with_config
from app.commands.progress import ProgressBar
from chatbot.errors import InputError

GATE_FAILED = 3
"""Exit status when the gate is not passed (1 is any other error)."""


def _positive(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """A difference worth detecting: a finite number above 0 (click's FloatRange lets NaN by)."""
    if not math.isfinite(value) or value <= 0:
        raise click.BadParameter(f"{value} is not a positive number, e.g. 0.05", ctx, param)
    return value


@in_section("Training and evaluation")
@click.command("eval")
@click.option("--variants", required=True,
              help="Comma-separated variants, baseline first: prompt,finetuned.")
@click.option("--data", required=True,
              help="Held-out JSONL (questions or conversations) or a dataset name in "
                   "<data_dir>/datasets (its validation split).")
@click.option("--out", "name", help="Eval name: results go to <data_dir>/evals/NAME "
                                    "[default: the data file's stem, with -firstN for --limit "
                                    "N]. Reruns reuse its answers.")
@click.option("--gate", help='Exit 3 unless every candidate passes, e.g. "token_f1>=0": the '
                             "lower 95% bound of candidate - baseline must reach the threshold.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N items.")
@click.option("--min-effect", type=float, default=0.05, show_default=True, callback=_positive,
              help="Smallest difference worth detecting; smaller samples get a warning.")
@click.option("--max-new-tokens", type=click.IntRange(min=1),
              help="Cap answer length [default: generation.max_new_tokens].")
@click.option("--json", "as_json", is_flag=True, help="Print metrics.json instead of tables.")
@with_config
@one_line_errors
def evaluate(config: BotConfig, variants: str, data: str, name: str | None, gate: str | None,
             limit: int | None, min_effect: float, max_new_tokens: int | None,
             as_json: bool) -> None:
    """Compare variants on held-out data: metrics with intervals, report.md/.html."""
    from training.eval.evaluate import default_name, keep_larger_run, parse_gate, run_eval

    if gate:
        parse_gate(gate)  # a typo fails before an hour of generation
    if name and limit:
        keep_larger_run(config.data_path, name, limit)
    names = [v.strip() for v in variants.split(",") if v.strip()]
    with ctrl_c_ends_with(f"run the same command again to continue eval "
                          f"{name or default_name(data, limit)!r}: the answers generated so far "
                          "are kept"):  # from the import of its libraries on
        from app.build import eval_settings
        from training.eval.report import comparison_rows, summary_rows

        with ProgressBar("item") as bar:
            result = run_eval(eval_settings(config), names, data, name=name, limit=limit,
                              min_effect=min_effect, max_new_tokens=max_new_tokens, gate=gate,
                              progress=lambda variants, done, total: bar.count(done, total))
    if as_json:
        print_json(result.record().to_json())
    else:
        _print_tables(result, summary_rows(result), comparison_rows)
    silent = [v for v in result.variants if all(g.error for g in result.run.answers[v])]
    if silent:
        raise InputError(f"{', '.join(silent)} answered none of the {len(result.items)} items, "
                         "so nothing was compared; the warning above says why")
    if result.gates and not all(g.passed for g in result.gates):
        sys.exit(GATE_FAILED)


def _print_tables(result, summaries, comparison_rows) -> None:
    click.echo(f"{len(result.items)} items; answers generated {result.run.generated}, "
               f"reused {result.run.reused} ({result.run.seconds:.0f} s)")
    click.echo("\nmean [95% CI] n per variant: " + " | ".join(result.variants))
    for row in summaries:
        click.echo(f"  {row[0]:<16}" + " | ".join(row[1:]))
    for candidate in result.candidates:
        click.echo(f"\n{candidate} - {result.baseline}: difference [95% CI], Wilcoxon p, "
                   "win/tie/loss, n")
        for line in comparison_lines(comparison_rows(result, candidate)):
            click.echo(line)
    for warning in result.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    for gate in result.gates:
        click.secho(gate.message, fg="green" if gate.passed else "red")
    click.echo(f"\nreports: {shown(result.out_dir / 'report.md')}, "
               f"{shown(result.out_dir / 'report.html')}")


def comparison_lines(rows: list[list[str]]) -> list[str]:
    """One aligned line per metric; the interval column is as wide as its widest cell, since
    a latency difference can take tens of characters."""
    width = max([26, *(len(row[1]) for row in rows)]) + 2
    return [f"  {row[0]:<16}{row[1]:<{width}}p={row[2]:<8}{row[4]:<10}n={row[5]}"
            + (f"  ({row[7]})" if row[7] else "") for row in rows]


COMMANDS = [evaluate]
