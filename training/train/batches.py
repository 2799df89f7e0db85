"""Padding-free batches: a micro-batch is its sequences packed end to end in one row.

No pad token is ever computed. Position ids restart at 0 for each sequence, so attention stays
within a sequence (transformers builds the block-diagonal mask from the position ids; on CUDA the
varlen kernel in ``training/train/attention.py`` reads ``cu_seq_lens`` and skips the masked blocks).
Only the positions whose next token is supervised are kept as targets, so the LM head and the
loss run on those alone.

The data order is a function of (seed, epoch): a resumed run rebuilds it from the step count.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch

from training.train.tokenize import IGNORE, RenderedExample


@dataclass(frozen=True)
class PackedBatch:
    """One micro-batch: ``input_ids``/``position_ids`` of shape (1, T), targets at positions."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    positions: torch.Tensor  # indices into T whose next token is supervised
    targets: torch.Tensor  # the supervised next tokens
    cu_seq_lens: torch.Tensor  # int32 (n + 1,) sequence boundaries, for varlen attention
    max_length: int

    @property
    def tokens(self) -> int:
        return int(self.input_ids.shape[1])

    @property
    def supervised(self) -> int:
        return int(self.targets.shape[0])

    def to(self, device: torch.device | str) -> PackedBatch:
        move = lambda tensor: tensor.to(device, non_blocking=True)  # noqa: E731
        return PackedBatch(move(self.input_ids), move(self.position_ids), move(self.positions),
                           move(self.targets), move(self.cu_seq_lens), self.max_length)


def pack(examples: Sequence[RenderedExample]) -> PackedBatch:
    """Concatenate examples into one row with per-sequence positions and shifted targets."""
    ids, positions_ids, positions, targets, bounds = [], [], [], [], [0]
    for example in examples:
        offset = len(ids)
        ids.extend(example.input_ids)
        positions_ids.extend(range(len(example.input_ids)))
        for index, label in enumerate(example.labels[1:]):
            if label != IGNORE:
                positions.append(offset + index)
                targets.append(label)
        bounds.append(len(ids))
    return PackedBatch(
        input_ids=torch.tensor([ids], dtype=torch.long),
        position_ids=torch.tensor([positions_ids], dtype=torch.long),
        positions=torch.tensor(positions, dtype=torch.long),
        targets=torch.tensor(targets, dtype=torch.long),
        cu_seq_lens=torch.tensor(bounds, dtype=torch.int32),
        max_length=max(len(example.input_ids) for example in examples))


def epoch_order(count: int, seed: int, epoch: int) -> list[int]:
    """The shuffled example order of one epoch; the same (seed, epoch) gives the same order."""
    order = list(range(count))
    random.Random(seed * 100_003 + epoch).shuffle(order)
    return order


def micro_batches(count: int, batch_size: int, seed: int, epoch: int, rank: int = 0,
                  world: int = 1) -> list[list[int]]:
    """Example indices of this rank's micro-batches in one epoch (ranks take turns)."""
    order = epoch_order(count, seed, epoch)
    batches = [order[start:start + batch_size] for start in range(0, count, batch_size)]
    usable = len(batches) - len(batches) % world if len(batches) >= world else len(batches)
    return batches[rank:usable:world] if world > 1 else batches


def steps_per_epoch(count: int, batch_size: int, grad_accum: int, world: int = 1) -> int:
    """Optimizer steps in one epoch (a last, shorter accumulation still makes a step)."""
    per_rank = -(-count // batch_size) // world if world > 1 else -(-count // batch_size)
    return max(1, -(-per_rank // grad_accum))


def eval_batches(examples: Sequence[RenderedExample], token_budget: int, rank: int = 0,
                 world: int = 1) -> list[PackedBatch]:
    """Validation examples in order, packed up to ``token_budget`` tokens per row."""
    batches, current, size = [], [], 0
    for example in examples[rank::world]:
        if current and size + len(example.input_ids) > token_budget:
            batches.append(pack(current))
            current, size = [], 0
        current.append(example)
        size += len(example.input_ids)
    if current:
        batches.append(pack(current))
    return batches
