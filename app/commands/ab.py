"""``chatbot ab report``: the online A/B test's state, every rate with its interval."""

from __future__ import annotations

from pathlib import Path

import click

from app.commands.common import BotConfig, InOrderGroup, existing_log, in_section, \
    one_line_errors, output_path, print_json, shown, with_config
from chatbot.errors import InputError
from chatbot.paths import DataPaths
from index.jsonfile import write_bytes_atomic


@click.group(cls=InOrderGroup)
def ab() -> None:
    """The online A/B test: report the split's thumbs-up rates and the arena's votes."""


@ab.command("report")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--chart", type=click.Path(dir_okay=False),
              help="Where to write the chart PNG [default: <data_dir>/ab/report.png].")
@with_config
@one_line_errors
def report(config: BotConfig, as_json: bool, chart: str | None) -> None:
    """Thumbs-up rates, arena win rates, Bradley-Terry strengths, votes still needed."""
    from chatbot.ab import AbStore
    from chatbot.ab_report import build_report, chart_png, render_markdown

    path = chart_path(config, chart)
    store = AbStore(existing_log(config))
    settings = config.ab
    result = build_report(store, list(config.ab_split), settings.min_effect,
                          settings.alpha, settings.power, settings.bootstrap)
    if not settings.enabled:
        result.notes.append("ab.enabled is false: thumbs count only in sessions the A/B split "
                            "assigned a variant to; switch it on to start the test")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, chart_png(result))  # a reader never sees half a chart
    if as_json:
        print_json(result.as_dict() | {"chart": str(path)})
    else:
        click.echo(render_markdown(result))
        click.echo(f"\nchart: {shown(path)}")


def chart_path(config: BotConfig, chart: str | None) -> Path:
    """Where the chart goes: a PNG file, not written over any of the bot's own files."""
    default = DataPaths(config.data_path).ab / "report.png"
    path = output_path(config, Path(chart) if chart else default, "--chart")
    if path.suffix.lower() != ".png":
        raise InputError(f"{shown(path)}: the chart is a PNG image; give --chart a path ending in "
                         ".png")
    return path


ab = in_section("Conversations")(ab)  # reports on logged feedback and votes
COMMANDS = [ab]
