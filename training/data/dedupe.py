"""Exact and near-duplicate conversations (datasketch MinHash + MinHashLSH), and a split that
does not leak.

Near-duplicates are judged on what people said (``Conversation.turns``), never on the system
prompt or the rendered sources, which every example shares. Shingles are word 3-grams,
lowercased, hashed to 32 bits with numpy (crc32 words, mixed in threes) and handed to datasketch
as they are: its default, SHA-1 per shingle in Python, costs more than the MinHash itself. A
conversation's MinHash is the union of its exchanges'. ``MinHashLSH`` proposes candidates and
every one is confirmed by its estimated Jaccard similarity before it counts.
"""

from __future__ import annotations

import hashlib
import random
import re
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

from chatbot.types import Message
from training.data.transcripts import Conversation

_WORD = re.compile(r"\w+")
SHINGLE = 3
# Exchanges shorter than this ("Thanks!" / "Have a nice day.") recur in every corpus; sharing
# one is not a leak, so the split's check ignores them.
LEAK_MIN_WORDS = 12
_SEED = 20240601


@dataclass(frozen=True)
class Signatures:
    """MinHashes: one per conversation, and one per exchange with its owner."""

    conversations: list[LeanMinHash]
    exchanges: list[LeanMinHash]
    """Only exchanges of at least ``LEAK_MIN_WORDS`` words."""
    owner: list[int]
    """Index of the conversation of each of ``exchanges``."""

    def subset(self, keep: Sequence[int]) -> Signatures:
        remap = {old: new for new, old in enumerate(keep)}
        rows = [row for row, owner in enumerate(self.owner) if owner in remap]
        return Signatures([self.conversations[i] for i in keep],
                          [self.exchanges[row] for row in rows],
                          [remap[self.owner[row]] for row in rows])


@dataclass(frozen=True)
class DedupeResult:
    kept: list[Conversation]
    exact: list[tuple[str, str]]
    """(dropped id, kept id) pairs."""
    near: list[tuple[str, str]]


@dataclass(frozen=True)
class Split:
    train: list[Conversation]
    validation: list[Conversation]
    moved: list[tuple[str, str]]
    """(validation id moved to train, the train id it nearly duplicates)."""


def exchanges(turns: Sequence[Message]) -> list[str]:
    """The text of each user message joined with the assistant reply that follows it."""
    found, question = [], None
    for message in turns:
        if message.role == "user":
            question = message.content
        elif message.role == "assistant":
            found.append(f"{question or ''}\n{message.content}")
            question = None
    return found or ["\n".join(m.content for m in turns)]


class _WordHashes:
    """Deterministic 32-bit word hashes (crc32), cached: corpora repeat their words."""

    def __init__(self) -> None:
        self.cache: dict[str, int] = {}

    def __call__(self, text: str) -> list[int]:
        words = _WORD.findall(text.lower())
        hashes = list(map(self.cache.get, words))
        if None in hashes:
            for index, word in enumerate(words):
                if hashes[index] is None:
                    hashes[index] = self.cache.setdefault(word, zlib.crc32(word.encode("utf-8")))
        return hashes


def _minhashes(texts: Sequence[str], num_perm: int) -> tuple[list[LeanMinHash], list[int]]:
    """A MinHash per text, and each text's word count."""
    words = _WordHashes()
    hashed = [words(text) for text in texts]
    minhash = MinHash(num_perm=num_perm, seed=_SEED, hashfunc=_as_is)
    found = []
    for word_hashes in hashed:
        minhash.clear()
        minhash.update_batch(_shingle_hashes(np.asarray(word_hashes, dtype=np.uint64)).tolist())
        found.append(LeanMinHash(minhash))
    return found, [len(h) for h in hashed]


def _as_is(value: int) -> int:
    """Shingles arrive already hashed to 32 bits; datasketch's scheme pre-mixes them."""
    return value


def _shingle_hashes(words: np.ndarray) -> np.ndarray:
    if len(words) < SHINGLE:
        words = np.concatenate([words, np.zeros(SHINGLE - len(words), dtype=np.uint64)])
    mixed = (words[:-2] * np.uint64(0x9E3779B1) ^ words[1:-1] * np.uint64(0x85EBCA77)
             ^ words[2:])
    return mixed & np.uint64(0xFFFFFFFF)


def signatures(conversations: Sequence[Conversation], num_perm: int) -> Signatures:
    parts = [exchanges(c.turns) for c in conversations]
    found, words = _minhashes([text for texts in parts for text in texts], num_perm)
    whole, owner, start = [], [], 0
    for index, texts in enumerate(parts):
        mine = found[start:start + len(texts)]
        whole.append(mine[0] if len(mine) == 1 else LeanMinHash.union(*mine))
        owner += [index] * len(texts)
        start += len(texts)
    long_enough = [row for row, count in enumerate(words) if count >= LEAK_MIN_WORDS]
    return Signatures(whole, [found[row] for row in long_enough],
                      [owner[row] for row in long_enough])


def exact_key(conversation: Conversation) -> str:
    """Equal for conversations whose turns differ at most in case and whitespace."""
    text = "\x1e".join(f"{m.role}\x1f{' '.join(m.content.lower().split())}"
                       for m in conversation.turns)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _first_match(index: MinHashLSH, minhash: LeanMinHash, known: Sequence[LeanMinHash],
                 threshold: float) -> int | None:
    """The lowest-numbered indexed item whose estimated Jaccard similarity reaches ``threshold``."""
    return next((j for j in sorted(index.query(minhash))
                 if minhash.jaccard(known[j]) >= threshold), None)


def dedupe(conversations: Sequence[Conversation], threshold: float | None,
           num_perm: int) -> tuple[DedupeResult, Signatures]:
    """Keep the first of each exact duplicate, then the first of each near-duplicate cluster.

    ``threshold`` is the estimated Jaccard similarity from which two are near-duplicates;
    ``None`` only removes exact duplicates.
    """
    first_by_key: dict[str, str] = {}
    unique, exact = [], []
    for conversation in conversations:
        key = exact_key(conversation)
        if key in first_by_key:
            exact.append((conversation.id, first_by_key[key]))
        else:
            first_by_key[key] = conversation.id
            unique.append(conversation)
    sigs = signatures(unique, num_perm)
    if threshold is None:
        return DedupeResult(unique, exact, []), sigs
    index = MinHashLSH(threshold=threshold, num_perm=num_perm)
    kept, near = [], []
    for row, (conversation, minhash) in enumerate(zip(unique, sigs.conversations)):
        match = _first_match(index, minhash, sigs.conversations, threshold)
        if match is not None:
            near.append((conversation.id, unique[match].id))
            continue
        index.insert(row, minhash, check_duplication=False)
        kept.append(row)
    return DedupeResult([unique[i] for i in kept], exact, near), sigs.subset(kept)


def split(conversations: Sequence[Conversation], sigs: Signatures, validation_share: float,
          seed: int, threshold: float | None) -> Split:
    """Split by ``split_key`` with a fixed seed; move validation groups that leak into train.

    A validation conversation with an exchange that is a near-duplicate (``threshold``) of an
    exchange in a training conversation is moved to train (with its whole group), so the
    validation loss is not measured on answers the model was trained on.
    """
    groups = sorted({c.split_key for c in conversations})
    random.Random(seed).shuffle(groups)
    count = round(len(groups) * validation_share)
    if validation_share > 0 and len(groups) > 1:
        count = min(max(count, 1), len(groups) - 1)
    validation_groups = set(groups[:count])
    in_validation = [c.split_key in validation_groups for c in conversations]
    moved: list[tuple[str, str]] = []
    if threshold is not None and any(in_validation):
        moved = _leaks(conversations, sigs, in_validation, threshold)
        moved_ids = {first for first, _ in moved}
        validation_groups -= {c.split_key for c in conversations if c.id in moved_ids}
    train = [c for c in conversations if c.split_key not in validation_groups]
    validation = [c for c in conversations if c.split_key in validation_groups]
    return Split(train, validation, moved)


def _leaks(conversations: Sequence[Conversation], sigs: Signatures, in_validation: list[bool],
           threshold: float) -> list[tuple[str, str]]:
    if not sigs.exchanges:
        return []
    index = MinHashLSH(threshold=threshold, num_perm=len(sigs.exchanges[0]))
    with index.insertion_session() as session:
        for row, owner in enumerate(sigs.owner):
            if not in_validation[owner]:
                session.insert(row, sigs.exchanges[row], check_duplication=False)
    moved, seen = [], set()
    for row, owner in enumerate(sigs.owner):
        if not in_validation[owner] or owner in seen:
            continue
        match = _first_match(index, sigs.exchanges[row], sigs.exchanges, threshold)
        if match is not None:
            seen.add(owner)
            moved.append((conversations[owner].id, conversations[sigs.owner[match]].id))
    return moved
