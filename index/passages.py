"""Neighbouring chunks of one document merged into one passage, so that ``k`` passages carry
more distinct evidence: two hits that are consecutive chunks of one page take one slot of the
prompt, not two, and the text they share (the chunk overlap) is given once.

    chatbot index search "can I get carer's allowance" --k 4     # retrieval.merge_neighbours
"""

from __future__ import annotations

import hashlib

from index.types import Chunk

MAX_WORDS = 130
"""Words one merged passage may hold: neighbours join a passage while it stays within this, so
``k`` passages stay near ``k`` chunks' worth of prompt (README, "Retrieval quality")."""
MIN_OVERLAP = 16
"""Characters two chunks must share before they are taken for the splitter's overlap."""


def group_neighbours(order: list[int], chunks: dict[int, Chunk], k: int,
                     max_words: int = MAX_WORDS) -> list[list[int]]:
    """Up to ``k`` groups of chunk ids, best first.

    Walking ``order`` (best first), a chunk next to a group's chunks in the same document joins
    that group while the merged passage stays within ``max_words``; any other starts a new
    group while there are fewer than ``k``. Only retrieved chunks are merged: a gap is never
    filled with one not retrieved. A chunk longer than ``max_words`` is still a passage alone.
    """
    groups: list[list[int]] = []
    for chunk_id in order:
        if chunk_id not in chunks:
            continue
        group = next((g for g in groups if _adjoins(g, chunks[chunk_id], chunks)), None)
        if group is not None and _words([chunks[i] for i in (*group, chunk_id)]) <= max_words:
            group.append(chunk_id)
        elif len(groups) < k:
            groups.append([chunk_id])
        else:
            break
    return groups


def merged_chunk(parts: list[Chunk]) -> Chunk:
    """One chunk of ``parts`` (neighbours of one document) in document order, overlaps removed;
    a part from another section is introduced by its heading. ``metadata["parts"]`` lists the
    chunk ids and ``metadata["locations"]`` the locations it covers."""
    parts = sorted(parts, key=lambda c: c.metadata["index"])
    if len(parts) == 1:
        return parts[0]
    text = parts[0].text
    for before, part in zip(parts, parts[1:]):
        heading = part.location.split(" > ")[-1]
        if part.location == before.location:
            text = _join(text, part.text)
        else:
            text += f"\n\n{heading}\n{part.text}" if heading else f"\n\n{part.text}"
    first = parts[0]
    metadata = {**first.metadata, "parts": [c.chunk_id for c in parts],
                "locations": list(dict.fromkeys(c.location for c in parts))}
    return Chunk(chunk_id="+".join(c.chunk_id for c in parts), source=first.source, text=text,
                 location=first.location, content_hash=hashlib.sha256(text.encode()).hexdigest(),
                 metadata=metadata)


def _adjoins(group: list[int], chunk: Chunk, chunks: dict[int, Chunk]) -> bool:
    members = [chunks[i] for i in group]
    if any(_document(m) != _document(chunk) for m in members):
        return False
    positions = [m.metadata["index"] for m in members]
    return chunk.metadata["index"] in (min(positions) - 1, max(positions) + 1)


def _words(parts: list[Chunk]) -> int:
    return len(merged_chunk(parts).text.split())


def _document(chunk: Chunk) -> tuple:
    """Chunks of one file (or one row of a .csv/.jsonl file) share this."""
    return chunk.source, chunk.metadata.get("row")


def _join(left: str, right: str) -> str:
    """``right`` after ``left``, without the text the splitter repeated at the start of
    ``right`` (the chunk overlap)."""
    for size in range(min(len(left), len(right)), MIN_OVERLAP - 1, -1):
        if left.endswith(right[:size]):
            return left + right[size:]
    return f"{left}\n{right}"
