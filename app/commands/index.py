"""``chatbot index ...``: sync documents into the index, search it, measure it, list, remove,
stats.

    chatbot index sync docs/        # incremental; exit 1 if any file failed
    chatbot index search "how do I install it" --k 5 --mode hybrid --json
    chatbot index eval --data questions.jsonl --k 2,4,8
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import click

from app.commands.common import FreeTextCommand, InOrderGroup, counted, ctrl_c_ends_with, \
    in_section, one_line_errors, print_json, with_config
from app.commands.progress import ProgressBar
from chatbot.config import BotConfig
from index.manifest import MANIFEST
from index.text import shown

MODES = ("dense", "bm25", "hybrid")


def _ks(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(part) for part in value.split(",")}))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected numbers such as 2,4,8") from None
    if not ks or min(ks) < 1 or max(ks) > 100:
        raise click.BadParameter(f"{value!r}: each k must be from 1 to 100")
    return ks


def _paths(ctx: click.Context, param: click.Parameter, value):
    """Path arguments as ``Path``s; an empty one (an unset shell variable) names no file, where
    ``Path("")`` would be the current folder: all of it synced, or removed."""
    values = value if isinstance(value, tuple) else (value,)
    if any(not text for text in values):
        raise click.BadParameter("an empty path names no file or folder")
    return tuple(Path(text) for text in values) if isinstance(value, tuple) else Path(value)


@in_section("Documents")
@click.group("index", cls=InOrderGroup)
def index_group() -> None:
    """Index documents and search them."""


@index_group.command("sync", cls=FreeTextCommand)
@click.argument("paths", nargs=-1, type=click.Path(), callback=_paths)
@click.option("--rebuild", is_flag=True,
              help="Re-index everything from scratch (after changing the embedder or chunking).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@with_config
@one_line_errors
def sync_command(config: BotConfig, paths: tuple[Path, ...], rebuild: bool, as_json: bool) -> None:
    """Index PATHS (files or folders; default: the config's index.paths) incrementally."""
    # The sync commits once, at its end: a Ctrl-C (from its first import on, or `kill -INT`
    # of a sync started as `cmd &`) leaves nothing half-written.
    with ctrl_c_ends_with("the index is as the last finished sync left it (`chatbot index "
                          "stats` shows it); run the sync again to index the files"):
        from app.build import bot_index

        index = bot_index(config)
        if not (paths or index.paths):
            raise click.UsageError("nothing to sync: name files or folders, or list them "
                                   "under index.paths in the config")
        report = _sync_with_a_bar(index, paths, rebuild, as_json)
    where = ", ".join(shown(p) for p in paths or index.paths)
    if not (report.added or report.updated or report.unchanged or report.failed):
        click.echo(f"warning: no document found in {where}: none there matches index.include "
                   f"({', '.join(index.include)}); check the paths and index.include", err=True)
    if report.held_unknown:
        click.echo(f"warning: the index's list of documents "
                   f"({shown(index.directory / MANIFEST)}) can't be read, so files it held "
                   f"outside {where} were not re-indexed; sync each again by path (web UI "
                   f"uploads are in {shown(index.upload_dir)}): chatbot index sync PATH",
                   err=True)
    if as_json:
        print_json({**report.__dict__, "failed": [f.__dict__ for f in report.failed]})
    else:
        for failure in report.failed:  # the full path, not `index list`'s short name: the
            # file is one to find and fix, and a failed file has no name in the index yet
            click.echo(f"failed: {shown(failure.source)}: {failure.reason}", err=True)
        click.echo(report.summary())
    if not report.ok:
        sys.exit(1)


def _sync_with_a_bar(index, paths: tuple[Path, ...], rebuild: bool, quiet: bool):
    """The sync's report, with a bar of files (and of one file's chunks being embedded):
    short syncs print none, long ones show progress after two seconds."""
    from chatbot.indexing import sync_paths

    with ProgressBar("file", disable=quiet) as bar:
        def progress(done: int, total: int, source: str) -> None:
            bar.count(done, total)

        def embedding(done: int, total: int) -> None:  # one large file is minutes of this
            bar.detail(f"embedding {done}/{total} chunks")

        return sync_paths(index, list(paths), progress=progress, rebuild=rebuild,
                          embedding=embedding)


@index_group.command("search", cls=FreeTextCommand)
@click.argument("query")
@click.option("--k", type=click.IntRange(1, 100), default=None, help="Hits [default: retrieval.k].")
@click.option("--mode", type=click.Choice(MODES), default=None,
              help="[default: retrieval.mode]")
@click.option("--source", "source_glob", default=None, help="Only files matching this glob.")
@click.option("--json", "as_json", is_flag=True, help="Print the hits as JSON.")
@with_config
@one_line_errors
def search_command(config: BotConfig, query: str, k: int | None, mode: str | None,
                   source_glob: str | None, as_json: bool) -> None:
    """Search the index; print score, source, location and text of each hit."""
    from chatbot.errors import DocumentIndexError, InputError
    from app.build import bot_index
    from chatbot.indexing import open_retriever
    from index.text import clean_text

    query = clean_text(query)  # a byte that is not UTF-8 in the shell's argument, say
    if not query.strip():
        raise InputError("the query is empty; give the words to search for")
    retriever = open_retriever(bot_index(config))
    if retriever is None:
        raise DocumentIndexError("nothing is indexed yet; run `chatbot index sync PATH` first")
    hits = bot_index(config).names.hits(  # named as the chat names them, not by server path
        retriever.search(query, k=k, mode=mode, source_glob=source_glob))
    if as_json:
        print_json([{"rank": h.rank, "chunk_id": h.chunk.chunk_id, "source": h.source,
                     "location": h.location, "score": h.score, "scores": h.scores,
                     "text": h.text} for h in hits])
        return
    for hit in hits:
        where = shown(hit.source) + (f" ({hit.location})" if hit.location else "")
        click.echo(f"{hit.rank}. [{hit.score:.3f}] {where}")
        click.echo("   " + hit.text.replace("\n", "\n   ") + "\n")
    if not hits:
        click.echo("no hits")


@index_group.command("eval")
@click.option("--data", "data", required=True, type=click.Path(exists=True, dir_okay=False,
                                                               path_type=Path),
              help="JSONL: question + gold_sentences (or gold_passages, or chatbot eval's "
                   "gold_ids or gold_sources) per line.")
@click.option("--k", "ks", default="2,4,8", show_default=True, callback=_ks,
              help="Comma-separated cut-offs.")
@click.option("--mode", type=click.Choice(MODES), default=None,
              help="[default: retrieval.mode]")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@with_config
@one_line_errors
def eval_command(config: BotConfig, data: Path, ks: tuple[int, ...], mode: str | None,
                 as_json: bool) -> None:
    """Measure retrieval on your questions: context hit@k, evidence recall@k, MRR."""
    # from its first import on; a long question set started as `cmd &` can be stopped too
    with ctrl_c_ends_with("index eval writes nothing, so run it again for the metrics"):
        from app.build import bot_index
        from chatbot.indexing import evaluate_index

        with ProgressBar("question") as bar:
            report = evaluate_index(bot_index(config), data, ks, mode, bar.count)
    for warning in report.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    if as_json:
        print_json(report.to_json())
    else:
        click.echo(report.table())


@index_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the documents as JSON.")
@with_config
@one_line_errors
def list_command(config: BotConfig, as_json: bool) -> None:
    """Indexed documents with their chunk counts and when they were indexed."""
    from app.build import bot_index
    from chatbot.indexing import list_documents

    index = bot_index(config)
    documents = list_documents(index)
    if as_json:  # "source" as search and the chat name it, "path" where the file is
        print_json([{**d.__dict__, "source": index.names.name(d.source), "path": d.source}
                    for d in documents])
        return
    names = [index.names.name(doc.source) for doc in documents]
    held = Counter(names)
    for doc, name in zip(documents, names):
        # two files of one name synced from outside index.paths: which is which
        where = f" ({shown(doc.source)})" if held[name] > 1 else ""
        chunks = "chunk" if doc.chunks == 1 else "chunks"  # the column after stays in line
        click.echo(f"{doc.chunks:6d} {chunks:<6}  {doc.indexed_at}  {shown(name)}{where}")
    click.echo(counted(len(documents), "document"))
    if not documents:  # on stderr: standard output stays the list
        click.echo("note: nothing is indexed yet; index the config's index.paths with "
                   "`chatbot index sync`", err=True)


@index_group.command("remove", cls=FreeTextCommand)
@click.argument("path", type=click.Path(), callback=_paths)
@with_config
@one_line_errors
def remove_command(config: BotConfig, path: Path) -> None:
    """Drop a file, or every file under a folder, from the index; a web UI upload's file is
    deleted too."""
    from app.build import bot_index
    from chatbot.indexing import remove_documents

    index = bot_index(config)
    removed = remove_documents(index, path)
    uploads = sum(index.is_upload(source) and not os.path.lexists(source) for source in removed)
    click.echo(f"removed {counted(len(removed), 'document')}" + (
        f"; deleted {counted(uploads, 'uploaded file')} from uploads/" if uploads else ""))


@index_group.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@with_config
@one_line_errors
def stats_command(config: BotConfig, as_json: bool) -> None:
    """Documents, chunks, embedder, dimension, FAISS index type, size on disk."""
    from app.build import bot_index
    from chatbot.indexing import index_stats

    stats = index_stats(bot_index(config))
    if as_json:
        print_json(stats)
    else:
        for key, value in stats.items():
            click.echo(f"{key}: {value}")


COMMANDS = [index_group]
