"""Neighbouring chunks of one document merged into one passage, so that ``k`` passages carry
more distinct evidence: two hits that are consecutive chunks of one page take one slot of the
prompt, not two, and the text they share (the chunk overlap) is given once.

    chatbot index search "can I get carer's allowance" --k 4     # retrieval.merge_neighbours
"""

from __future__ import annotations

import hashlib

from index.types import Chunk

MAX_CHUNKS = 3
"""Chunks one passage may hold: three 200-token chunks still leave room for four passages, the
question and the answer in a 4k-token window."""
MIN_OVERLAP = 16
"""Characters two chunks must share before they are taken for the splitter's overlap."""


def group_neighbours(order: list[int], chunks: dict[int, Chunk], k: int) -> list[list[int]]:
    """Up to ``k`` groups of chunk ids, best first.

    Walking ``order`` (best first), a chunk next to a group's chunks in the same document joins
    that group (up to :data:`MAX_CHUNKS`); any other starts a new group while there are fewer
    than ``k``. Only retrieved chunks are merged: a gap is never filled with one not retrieved.
    """
    groups: list[list[int]] = []
    for chunk_id in order:
        if chunk_id not in chunks:
            continue
        group = next((g for g in groups if _adjoins(g, chunks[chunk_id], chunks)), None)
        if group is not None:
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
    if len(members) >= MAX_CHUNKS or any(_document(m) != _document(chunk) for m in members):
        return False
    positions = [m.metadata["index"] for m in members]
    return chunk.metadata["index"] in (min(positions) - 1, max(positions) + 1)


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
