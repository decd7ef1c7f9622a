"""Length-bucketed batches: sentences of similar length share a batch, so little compute goes
to padding. Shuffled within and across buckets every epoch; the same seed gives the same order."""

from __future__ import annotations

import random
from collections.abc import Iterator

import torch

from nerlab.tokenize import IGNORE

BUCKET_BATCHES = 50  # sort by length within chunks of this many batches: local, still random


def padded(ids: list[list[int]], labels: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    label_t = torch.full((len(ids), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, (x, y) in enumerate(zip(ids, labels)):
        input_ids[i, : len(x)] = torch.tensor(x)
        label_t[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": label_t}


def bucketed_order(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """One epoch of batches (lists of example indices)."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    chunk = batch_size * BUCKET_BATCHES
    batches = []
    for start in range(0, len(idx), chunk):
        part = sorted(idx[start : start + chunk], key=lambda i: lengths[i])
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def endless(lengths: list[int], batch_size: int, seed: int) -> Iterator[list[int]]:
    rng = random.Random(seed)
    while True:
        yield from bucketed_order(lengths, batch_size, rng)


def eval_order(lengths: list[int], batch_size: int) -> list[list[int]]:
    idx = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]
