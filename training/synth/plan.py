"""Which chunks a synthesis run asks about: sampled from the index, spread over its documents.

Documents are visited round-robin in a seeded random order, one chunk of each per round (a
seeded random chunk of it), so a run of 50 chunks over 50 documents asks about every document
once instead of 50 times about the longest one.

    chatbot data synth --name cold-v1 --n 500 --teacher big
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from chatbot.source_names import SourceNames
from index.errors import IndexingError, IndexMissingError
from index.store import Store
from index.types import Chunk
from training.errors import DataError

EMPTY_INDEX = ("nothing is indexed yet in {where}; index the documents first with "
               "`chatbot index sync PATH`, then run `chatbot data synth` again")


def indexed_chunks(index_dir: Path, names: SourceNames) -> list[Chunk]:
    """Every chunk of the bot's index, in index order, its document named as the bot shows it
    (the prompts are the ones serving sends, which name no server folder); a clear error when
    there is none."""
    try:
        _, chunks = Store.open(index_dir).docstore.all_chunks()
    except IndexMissingError:
        raise DataError(EMPTY_INDEX.format(where=index_dir)) from None
    except IndexingError as exc:  # its message names the index and what to do
        raise DataError(str(exc)) from None
    if not chunks:
        raise DataError(EMPTY_INDEX.format(where=index_dir))
    return [replace(chunk, source=names.name(chunk.source)) for chunk in chunks]


def sample_chunks(chunks: Sequence[Chunk], count: int, seed: int) -> list[Chunk]:
    """``count`` chunks (all of them if fewer), stratified by document, in visiting order."""
    by_source: dict[str, list[Chunk]] = defaultdict(list)
    for chunk in chunks:
        by_source[chunk.source].append(chunk)
    rng = random.Random(seed)
    sources = sorted(by_source)
    rng.shuffle(sources)
    for source in sources:
        rng.shuffle(by_source[source])
    chosen: list[Chunk] = []
    for round_ in range(max(len(group) for group in by_source.values())):
        for source in sources:
            if len(chosen) == count:
                return chosen
            if round_ < len(by_source[source]):
                chosen.append(by_source[source][round_])
    return chosen
