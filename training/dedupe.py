"""Exact and near-duplicate conversations (MinHash/LSH), and a split that does not leak them.

Near-duplicates are judged on what people said (``Conversation.turns``), never on the system
prompt or the rendered sources, which every example shares. Word 3-gram shingles, lowercased;
a conversation's MinHash is the element-wise minimum of its exchanges' (the MinHash of the
union of their shingles), so the split's per-exchange check costs no extra hashing.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Sequence

from datasketch import MinHash, MinHashLSH

from chatbot.types import Message
from training.transcripts import Conversation

_WORD = re.compile(r"\w+")
SHINGLE = 3


@dataclass(frozen=True)
class Signatures:
    """MinHashes of each conversation and of each of its user/assistant exchanges."""

    conversations: list[MinHash]
    exchanges: list[list[MinHash]]


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


def shingles(text: str) -> list[bytes]:
    words = _WORD.findall(text.lower())
    if len(words) < SHINGLE:
        return [" ".join(words).encode("utf-8")]
    return [" ".join(words[i:i + SHINGLE]).encode("utf-8")
            for i in range(len(words) - SHINGLE + 1)]


def signatures(conversations: Sequence[Conversation], num_perm: int) -> Signatures:
    parts = [exchanges(c.turns) for c in conversations]
    flat = MinHash.bulk([shingles(text) for texts in parts for text in texts], num_perm=num_perm)
    per_exchange, whole, at = [], [], 0
    for texts in parts:
        own = flat[at:at + len(texts)]
        at += len(texts)
        merged = own[0].copy()
        for other in own[1:]:
            merged.merge(other)
        per_exchange.append(own)
        whole.append(merged)
    return Signatures(whole, per_exchange)


def exact_key(conversation: Conversation) -> str:
    """Equal for conversations whose turns differ at most in case and whitespace."""
    text = "\x1e".join(f"{m.role}\x1f{' '.join(m.content.lower().split())}"
                       for m in conversation.turns)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    stored: dict[str, MinHash] = {}
    kept, kept_sigs, near = [], Signatures([], []), []
    for index, conversation in enumerate(unique):
        signature = sigs.conversations[index]
        match = _closest(lsh, stored, signature, threshold)
        if match is not None:
            near.append((conversation.id, match))
            continue
        lsh.insert(conversation.id, signature)
        stored[conversation.id] = signature
        kept.append(conversation)
        kept_sigs.conversations.append(signature)
        kept_sigs.exchanges.append(sigs.exchanges[index])
    return DedupeResult(kept, exact, near), kept_sigs


def _closest(lsh: MinHashLSH, stored: dict[str, MinHash], signature: MinHash,
             threshold: float) -> str | None:
    """A candidate whose estimated Jaccard really reaches the threshold (LSH over-reports)."""
    for key in sorted(lsh.query(signature)):
        if signature.jaccard(stored[key]) >= threshold:
            return key
    return None


def split(conversations: Sequence[Conversation], sigs: Signatures, validation_share: float,
          seed: int, threshold: float | None, num_perm: int) -> Split:
    """Split by ``split_key`` with a fixed seed; move validation groups that leak into train.

    A validation conversation with an exchange that is a near-duplicate (``threshold``) of an
    exchange in a training conversation is moved to train, so the validation loss is not
    measured on answers the model was trained on.
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
        moved = _leaks(conversations, sigs, in_validation, threshold, num_perm)
        moved_groups = {c.split_key for c in conversations if c.id in dict(moved)}
        validation_groups -= moved_groups
    train = [c for c in conversations if c.split_key not in validation_groups]
    validation = [c for c in conversations if c.split_key in validation_groups]
    return Split(train, validation, moved)


def _leaks(conversations: Sequence[Conversation], sigs: Signatures, in_validation: list[bool],
           threshold: float, num_perm: int) -> list[tuple[str, str]]:
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    owners: dict[str, MinHash] = {}
    for index, conversation in enumerate(conversations):
        if not in_validation[index]:
            for number, signature in enumerate(sigs.exchanges[index]):
                key = f"{conversation.id}\x1f{number}"
                lsh.insert(key, signature)
                owners[key] = signature
    moved = []
    for index, conversation in enumerate(conversations):
        if not in_validation[index]:
            continue
        for signature in sigs.exchanges[index]:
            hits = [k for k in lsh.query(signature) if signature.jaccard(owners[k]) >= threshold]
            if hits:
                moved.append((conversation.id, hits[0].split("\x1f")[0]))
                break
    return moved
