"""Batches of texts of different lengths: encoded datasets, padding and buckets of similar lengths."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import islice
from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import BatchSampler, Dataset, Sampler

from ..checks import check_positive_int


class TextBatch(NamedTuple):
    """A batch of texts to predict: ``inputs (B, T)`` padded ids, ``lengths (B,)`` and the texts themselves."""

    inputs: Tensor
    lengths: Tensor
    texts: list[str]


class EncodedTexts(Dataset):
    """Token-id sequences and their class ids; items are ``(ids (L,), target)``.

    Args:
        ids: one ``(L_i,)`` long tensor per text, each ``L_i >= 1``.
        targets: ``(N,)`` long class ids.
    """

    def __init__(self, ids: list[Tensor], targets: Tensor) -> None:
        self.ids = ids
        self.targets = targets
        self.lengths = [len(sequence) for sequence in ids]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.ids[index], self.targets[index]


def pad_collate(samples: Sequence[tuple[Tensor, Tensor]], pad_index: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Batch ``(ids, target)`` items as ``(inputs, lengths, targets)``, ``inputs`` padded at the end.

    Shape:
        inputs: ``(B, T)`` long, ``T`` the longest sequence, padded with ``pad_index``.
        lengths: ``(B,)`` long.
        targets: ``(B,)`` long.
    """
    ids, targets = zip(*samples)
    return (*_pad(ids, pad_index), torch.stack(targets))


def _pad(ids: Sequence[Tensor], pad_index: int) -> tuple[Tensor, Tensor]:
    """``(inputs (B, T), lengths (B,))``: the id sequences padded at the end with ``pad_index``, and their lengths."""
    inputs = pad_sequence(list(ids), batch_first=True, padding_value=pad_index)
    return inputs, torch.tensor([len(sequence) for sequence in ids], dtype=torch.long)


class BucketBatchSampler(BatchSampler):
    """Batches of similar lengths, so that little of each padded batch is padding.

    The indices of ``sampler`` are taken ``batch_size * batches_per_bucket`` at a time; each such
    bucket is sorted by length and cut into batches, whose order is shuffled by ``generator``
    when one is given. With a shuffling sampler every epoch forms new buckets;
    ``batches_per_bucket=1`` gives plain random batches. Like ``torch``'s ``BatchSampler`` it takes
    a ``sampler`` argument, so Lightning can put a ``DistributedSampler`` in its place under DDP
    (each rank then yields the same number of batches).

    Args:
        sampler: yields dataset indices.
        batch_size: indices per batch.
        drop_last: drop the last batch when it is short.
        lengths: the length of each dataset item, indexed like the dataset.
        batches_per_bucket: batches sorted together; larger buckets pad less but mix lengths less.
        generator: shuffles the batches within a bucket; ``None`` keeps them sorted by length.
    """

    def __init__(
        self,
        sampler: Sampler[int],
        batch_size: int,
        drop_last: bool,
        lengths: Sequence[int],
        batches_per_bucket: int = 50,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(sampler, batch_size, drop_last)
        check_positive_int("BucketBatchSampler", "batches_per_bucket", batches_per_bucket)
        self.lengths = lengths
        self.batches_per_bucket = batches_per_bucket
        self.generator = generator

    def __iter__(self) -> Iterator[list[int]]:
        indices = iter(self.sampler)
        while bucket := list(islice(indices, self.batch_size * self.batches_per_bucket)):
            bucket.sort(key=self.lengths.__getitem__)
            batches = [bucket[start : start + self.batch_size] for start in range(0, len(bucket), self.batch_size)]
            if self.drop_last and len(batches[-1]) < self.batch_size:
                batches.pop()
            if self.generator is not None:
                batches = [batches[k] for k in torch.randperm(len(batches), generator=self.generator).tolist()]
            yield from batches

    def __len__(self) -> int:
        # Buckets hold whole batches, so only the very last batch can be short, as in BatchSampler.
        size = len(self.sampler)
        return size // self.batch_size if self.drop_last else -(-size // self.batch_size)


def pad_texts(samples: Sequence[tuple[Tensor, str]], pad_index: int = 0) -> TextBatch:
    """Batch ``(ids, text)`` items of texts to predict as a :class:`TextBatch`, padded at the end."""
    ids, texts = zip(*samples)
    return TextBatch(*_pad(ids, pad_index), list(texts))
