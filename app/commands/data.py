"""``chatbot data``: build, list, show and export fine-tuning datasets.

    chatbot data build --name v1 --from logs --from samples/transcripts.jsonl
    chatbot data show v1
    chatbot data export v1 --out v1.jsonl
    chatbot data build --name v2 --from v1.jsonl    # after editing the export
    chatbot data export v1 --format csv --out v1.csv  # one message a row, for a spreadsheet
    chatbot data build --kind preference --name prefs-v1  # KTO rows and DPO pairs (TRL formats)
"""

from __future__ import annotations

from pathlib import Path

import click

from app.commands.common import BotConfig, InOrderGroup, in_section, one_line_errors, output_path, \
    print_json, shown, with_config
from app.commands.data_synth import synth

PROBLEMS_SHOWN = 10


@in_section("Training and evaluation")
@click.group("data", cls=InOrderGroup)
def data_group() -> None:
    """Build fine-tuning datasets from the conversation log and transcripts."""


@data_group.command("build")
@click.option("--name", required=True, help="Dataset name (a folder under <data_dir>/datasets).")
@click.option("--from", "sources", multiple=True, metavar="logs|FILE",
              help="'logs' for the conversation log, or a .jsonl/.csv transcript file; repeat "
                   "[default: logs].")
@click.option("--strict", is_flag=True,
              help="Build nothing when any line is invalid, and list them all, instead of "
                   "skipping them (sft builds).")
@click.option("--overwrite", is_flag=True, help="Replace an existing dataset of that name.")
@click.option("--kind", type=click.Choice(["sft", "preference"]), default="sft", show_default=True,
              help="sft: conversations to fine-tune on; preference: KTO rows and DPO pairs "
                   "from the log's thumbs, corrections and arena votes.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@with_config
@one_line_errors
def build(config: BotConfig, name: str, sources: tuple[str, ...], strict: bool, overwrite: bool,
          kind: str, as_json: bool) -> None:
    """Select, clean, deduplicate, scrub and split; write the dataset and its report."""
    from app.build import data_settings
    from chatbot.errors import InputError
    from training.data.build import build_dataset

    if kind == "preference":
        if strict:  # it would change nothing: say so rather than ignore it
            raise InputError("--strict is for a build without --kind preference; leave it out")
        return _build_preference(config, name, sources, overwrite, as_json)
    summary = build_dataset(data_settings(config), name, sources or ("logs",), strict=strict,
                            overwrite=overwrite)
    if as_json:
        print_json(summary.as_dict())
        return
    for problem in summary.problems[:PROBLEMS_SHOWN]:
        click.echo(f"skipped: {problem}", err=True)
    if summary.problem_count > PROBLEMS_SHOWN:
        click.echo(f"skipped: ... {summary.problem_count - PROBLEMS_SHOWN} more in the report",
                   err=True)
    for line in summary.lines():
        click.echo(line)


def _build_preference(config: BotConfig, name: str, sources: tuple[str, ...], overwrite: bool,
                      as_json: bool) -> None:
    from app.build import data_settings
    from chatbot.errors import InputError
    from training.data.preference_build import build_preference_dataset

    if set(sources) - {"logs"}:
        raise InputError("a preference dataset is built from the conversation log only; "
                         "leave out --from or pass --from logs")
    summary = build_preference_dataset(data_settings(config), name, overwrite=overwrite)
    if as_json:
        print_json(summary.as_dict())
        return
    for line in summary.lines():
        click.echo(line)


@data_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@with_config
@one_line_errors
def list_command(config: BotConfig, as_json: bool) -> None:
    """The bot's datasets with their split sizes."""
    from app.build import data_settings
    from training.data.build import list_datasets

    found = list_datasets(data_settings(config))
    if as_json:
        print_json(found)
    elif not found:
        click.echo("no datasets yet; build one with `chatbot data build --name NAME --from FILE`")
    for entry in [] if as_json else found:
        if "problem" in entry:
            click.echo(f"{entry['name']}\tnot usable: {entry['problem']}")
        else:
            click.echo(f"{entry['name']}\t{entry['created_at']}\t{_sizes(entry)}")


def _sizes(entry: dict) -> str:
    """Split sizes in the dataset's own units: conversations, or KTO rows and DPO pairs."""
    if entry["kind"] != "preference":
        return f"train {entry['train']}\tvalidation {entry['validation']}"
    counts = entry["counts"]
    return (f"KTO rows train {counts['kto_train']}, validation {counts['kto_validation']}\t"
            f"DPO pairs train {counts['dpo_train']}, validation {counts['dpo_validation']}")


@data_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@with_config
@one_line_errors
def show(config: BotConfig, name: str, as_json: bool) -> None:
    """Where a dataset's report is, and its counts."""
    from app.build import data_settings
    from training.data.build import dataset_path, read_dataset_manifest

    settings = data_settings(config)
    manifest = read_dataset_manifest(settings, name)
    if as_json:
        print_json(manifest.to_json())
        return
    counts, tokens = manifest.counts, manifest.tokens
    click.echo(f"dataset {name} (built {manifest.created_at})")
    if manifest.kind == "preference":
        click.echo(f"preference: KTO rows train {counts['kto_train']}, validation "
                   f"{counts['kto_validation']} ({counts['desirable']} desirable, "
                   f"{counts['undesirable']} undesirable); DPO pairs train "
                   f"{counts['dpo_train']}, validation {counts['dpo_validation']}")
        click.echo(f"report: {shown(dataset_path(settings, name) / 'data_report.md')}")
        return
    click.echo(f"train {counts['train']}, validation {counts['validation']} conversations; "
               f"{counts['skipped']} skipped as invalid; {counts['review']} kept for review")
    click.echo(f"supervised share {tokens['supervised_share']:.1%} of {tokens['total']} tokens")
    click.echo(f"sha256 {manifest.sha256}")
    click.echo(f"report: {shown(dataset_path(settings, name) / 'data_report.md')}")


@data_group.command("export")
@click.argument("name")
@click.option("--out", required=True,
              type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help="File to write; - for standard output.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default=None,
              help="jsonl: OpenAI {\"messages\": [...]} lines, to edit and build from again; "
                   "csv: one message a row, for review in a spreadsheet. [default: csv for a "
                   ".csv --out, else jsonl]")
@with_config
@one_line_errors
def export(config: BotConfig, name: str, out: Path, fmt: str | None) -> None:
    """Write a dataset's examples as OpenAI JSONL (to edit and rebuild from) or CSV."""
    from app.build import data_settings
    from training.data.build import export_dataset

    # JSON lines in a .csv file open in a spreadsheet as one column of JSON
    fmt = fmt or ("csv" if out.suffix.lower() == ".csv" else "jsonl")

    if str(out) == "-":  # the summary goes to stderr, so stdout holds only the rows
        count = export_dataset(data_settings(config), name, None, fmt)
        click.echo(f"wrote {count} conversations to stdout", err=True)
        return
    count = export_dataset(data_settings(config), name, output_path(config, out, "--out"), fmt)
    click.echo(f"wrote {count} conversations to {shown(out)}")


data_group.add_command(synth)
COMMANDS = [data_group]
