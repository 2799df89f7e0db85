"""``chatbot data synth``: a training set and a test set from the indexed documents alone.

    chatbot data synth --name cold-v1 --n 500 --teacher big
    chatbot train --data cold-v1 --name cold-v1
    chatbot eval --variants prompt,cold-v1 --data cold-v1 --gate "token_f1>=0"
"""

from __future__ import annotations

import click

from app.commands.common import (BotConfig, ctrl_c_ends_with, one_line_errors, print_json,
                                 with_config)
from app.commands.progress import ProgressBar
from chatbot.interrupts import raise_if_interrupted


def synth_settings(config: BotConfig, engine=None):
    """The run's flat settings: the bot's engine (no log), its attribution (lexical when the
    config switches attribution off) and the default variant's passages per prompt."""
    from app.build import bot_index, build_engine, data_settings
    from chatbot.attribution import Attributor
    from training.synth.settings import SynthSettings

    engine = engine or build_engine(config, log=False)
    variant = engine.variant(None)
    index = bot_index(config)
    return SynthSettings(data=data_settings(config), index_dir=index.directory,
                         source_names=index.names, engine=engine,
                         attributor=engine.attributor or Attributor(None),
                         k=variant.k or engine.retrieval.k)


@click.command("synth")
@click.option("--name", required=True, help="Dataset name (a folder under <data_dir>/datasets).")
@click.option("--teacher", required=True,
              help="Variant that writes the questions and answers (a `backend:` variant asks a "
                   "big model on a server).")
@click.option("--n", type=click.IntRange(min=1), default=500, show_default=True,
              help="Questions to ask for in all.")
@click.option("--questions-per-chunk", type=click.IntRange(min=1), default=3, show_default=True,
              help="Questions asked about each sampled chunk.")
@click.option("--test-share", type=float, default=0.2, show_default=True,
              help="Share of the documents whose questions form the test split.")
@click.option("--seed", type=int, default=1234, show_default=True,
              help="Seed of the chunks sampled and of the test split's documents.")
@click.option("--overwrite", is_flag=True, help="Replace an existing dataset of that name.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@with_config
@one_line_errors
def synth(config: BotConfig, name: str, teacher: str, n: int, questions_per_chunk: int,
          test_share: float, seed: int, overwrite: bool, as_json: bool) -> None:
    """Questions and grounded answers from the indexed documents, split by document."""
    with ctrl_c_ends_with(f"run the same command again to continue dataset {name!r}: the "
                          "chunks finished are kept"):  # from its first import on
        from training.synth.run import synthesize
        from training.synth.settings import SynthRequest

        request = SynthRequest(name, teacher, n, seed, questions_per_chunk, test_share,
                               overwrite)
        request.check()  # a typo fails before the models load
        # a run that fails at once (a typo in --teacher) prints no bar.
        with ProgressBar("chunk", disable=as_json) as bar:
            def progress(done: int, total: int) -> None:
                bar.count(done, total)
                raise_if_interrupted()  # a press dropped while a chunk was asked about

            summary = synthesize(synth_settings(config), request, progress)
    if as_json:
        print_json(summary.as_dict())
        return
    for line in summary.lines():
        click.echo(line)
