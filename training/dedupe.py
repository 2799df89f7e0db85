"""Exact and near-duplicate conversations (MinHash + LSH banding), and a split that does not leak.

Near-duplicates are judged on what people said (``Conversation.turns``), never on the system
prompt or the rendered sources, which every example shares. Shingles are word 3-grams,
lowercased. MinHash signatures are computed for all exchanges at once with numpy (multiply-shift
hashing of 32-bit shingle hashes), which is what makes 100k conversations take seconds rather
than minutes; a conversation's signature is the element-wise minimum of its exchanges' (the
MinHash of the union of their shingles). The band layout (b bands of r rows) is the one
datasketch's ``MinHashLSH`` chooses for the threshold; every LSH candidate is confirmed by its
estimated Jaccard similarity before it counts.
"""

from __future__ import annotations

import hashlib
import random
import re
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from datasketch import MinHashLSH

from chatbot.types import Message
from training.transcripts import Conversation

_WORD = re.compile(r"\w+")
SHINGLE = 3
# Exchanges shorter than this ("Thanks!" / "Have a nice day.") recur in every corpus; sharing
# one is not a leak, so the split's check ignores them.
LEAK_MIN_WORDS = 12
_SHINGLES_PER_BLOCK = 100_000
_SEED = 20240601


@dataclass(frozen=True)
class Signatures:
    """MinHash signatures: one row per conversation, and one per exchange with its owner."""

    conversations: np.ndarray
    """(conversations, num_perm) uint32."""
    exchanges: np.ndarray
    """(exchanges, num_perm) uint32, only exchanges of at least ``LEAK_MIN_WORDS`` words."""
    owner: np.ndarray
    """Index of the conversation of each row of ``exchanges``."""

    def subset(self, keep: Sequence[int]) -> Signatures:
        keep = np.asarray(keep, dtype=np.int64)
        remap = np.full(len(self.conversations), -1, dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        rows = remap[self.owner] >= 0
        return Signatures(self.conversations[keep], self.exchanges[rows],
                          remap[self.owner[rows]])


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


def _permutations(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_SEED)
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    return a, b


def minhash_rows(texts: Sequence[str], num_perm: int) -> tuple[np.ndarray, list[int]]:
    """A MinHash signature per text, and each text's word count."""
    words = _WordHashes()
    hashed = [words(text) for text in texts]
    counts = [len(h) for h in hashed]
    shingle_arrays = [_shingle_hashes(np.asarray(h, dtype=np.uint64)) for h in hashed]
    a, b = _permutations(num_perm)
    rows = np.empty((len(texts), num_perm), dtype=np.uint32)
    start = 0
    while start < len(texts):
        end, total = start, 0
        while end < len(texts) and (total < _SHINGLES_PER_BLOCK or end == start):
            total += len(shingle_arrays[end])
            end += 1
        block = np.concatenate(shingle_arrays[start:end])
        offsets = np.cumsum([0] + [len(s) for s in shingle_arrays[start:end - 1]])
        permuted = ((a[:, None] * block[None, :] + b[:, None]) >> np.uint64(32)).astype(np.uint32)
        rows[start:end] = np.minimum.reduceat(permuted, offsets, axis=1).T
        start = end
    return rows, counts


def _shingle_hashes(words: np.ndarray) -> np.ndarray:
    if len(words) < SHINGLE:
        words = np.concatenate([words, np.zeros(SHINGLE - len(words), dtype=np.uint64)])
    mixed = (words[:-2] * np.uint64(0x9E3779B1) ^ words[1:-1] * np.uint64(0x85EBCA77)
             ^ words[2:])
    return mixed & np.uint64(0xFFFFFFFF)


def signatures(conversations: Sequence[Conversation], num_perm: int) -> Signatures:
    parts = [exchanges(c.turns) for c in conversations]
    flat = [text for texts in parts for text in texts]
    rows, words = minhash_rows(flat, num_perm)
    sizes = [len(texts) for texts in parts]
    offsets = np.cumsum([0] + sizes[:-1]).astype(np.int64)
    whole = (np.minimum.reduceat(rows, offsets, axis=0) if len(rows)
             else np.empty((0, num_perm), dtype=np.uint32))
    owner = np.repeat(np.arange(len(parts)), sizes)
    long_enough = np.asarray(words) >= LEAK_MIN_WORDS
    return Signatures(whole, rows[long_enough], owner[long_enough])


def exact_key(conversation: Conversation) -> str:
    """Equal for conversations whose turns differ at most in case and whitespace."""
    text = "\x1e".join(f"{m.role}\x1f{' '.join(m.content.lower().split())}"
                       for m in conversation.turns)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _Bands:
    """LSH banding: rows that agree on one whole band are candidates.

    Each band of r values is folded into one 64-bit key with numpy, for all rows at once.
    """

    def __init__(self, threshold: float, num_perm: int) -> None:
        layout = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.bands, self.rows = layout.b, layout.r
        self.tables: list[dict[int, list[int]]] = [{} for _ in range(self.bands)]
        rng = np.random.default_rng(_SEED + 1)
        self.fold = rng.integers(1, 2**63, size=self.rows, dtype=np.uint64) | np.uint64(1)

    def keys(self, signatures: np.ndarray) -> list[list[int]]:
        """Per row, one key per band (rows are signatures of ``num_perm`` values)."""
        used = signatures[:, :self.bands * self.rows].astype(np.uint64)
        banded = used.reshape(len(signatures), self.bands, self.rows)
        return (banded * self.fold).sum(axis=2, dtype=np.uint64).tolist()

    def insert(self, item: int, keys: list[int]) -> None:
        for table, key in zip(self.tables, keys):
            table.setdefault(key, []).append(item)

    def candidates(self, keys: list[int]) -> list[int]:
        found: set[int] = set()
        for table, key in zip(self.tables, keys):
            found.update(table.get(key, ()))
        return sorted(found)


def jaccard(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.count_nonzero(first == second)) / len(first)


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
    bands = _Bands(threshold, num_perm)
    all_keys = bands.keys(sigs.conversations)
    kept, near = [], []
    for index, conversation in enumerate(unique):
        row = sigs.conversations[index]
        match = next((j for j in bands.candidates(all_keys[index])
                      if jaccard(row, sigs.conversations[j]) >= threshold), None)
        if match is not None:
            near.append((conversation.id, unique[match].id))
            continue
        bands.insert(index, all_keys[index])
        kept.append(index)
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
    in_validation = np.array([c.split_key in validation_groups for c in conversations], bool)
    moved: list[tuple[str, str]] = []
    if threshold is not None and in_validation.any():
        moved = _leaks(conversations, sigs, in_validation, threshold)
        moved_ids = {first for first, _ in moved}
        validation_groups -= {c.split_key for c in conversations if c.id in moved_ids}
    train = [c for c in conversations if c.split_key not in validation_groups]
    validation = [c for c in conversations if c.split_key in validation_groups]
    return Split(train, validation, moved)


def _leaks(conversations: Sequence[Conversation], sigs: Signatures, in_validation: np.ndarray,
           threshold: float) -> list[tuple[str, str]]:
    bands = _Bands(threshold, sigs.exchanges.shape[1])
    all_keys = bands.keys(sigs.exchanges)
    for row in np.flatnonzero(~in_validation[sigs.owner]).tolist():
        bands.insert(row, all_keys[row])
    moved, seen = [], set()
    for row in np.flatnonzero(in_validation[sigs.owner]).tolist():
        owner = int(sigs.owner[row])
        if owner in seen:
            continue
        signature = sigs.exchanges[row]
        match = next((j for j in bands.candidates(all_keys[row])
                      if jaccard(signature, sigs.exchanges[j]) >= threshold), None)
        if match is not None:
            seen.add(owner)
            moved.append((conversations[owner].id,
                          conversations[int(sigs.owner[match])].id))
    return moved
