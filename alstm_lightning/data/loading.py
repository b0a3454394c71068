"""What every DataModule shares: split names, the ignore index, seeded generators and the seeded training order.

One owner for each: the split names (Lightning's spelling), the target value no loss reads, how a
seed (and further keys) becomes a random generator, and the shuffle whose order in epoch ``e`` is
drawn from ``(seed, e)`` alone, so that a fit resumed from an end-of-epoch checkpoint sees the
orders of the uninterrupted fit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset, RandomSampler

from ..checks import check_non_negative_int, check_positive_int

#: Split names, in Lightning's spelling; split ``k`` of a synthetic problem draws its samples from ``(seed, k, i)``.
SPLITS = ("train", "val", "test")

#: Targets that no loss or metric reads (``torch.nn.functional.cross_entropy``'s default).
IGNORE_INDEX = -100

#: Second key of the training-order shuffle's generator ``(seed, SHUFFLE_STREAM, epoch)``, unused by the splits.
SHUFFLE_STREAM = len(SPLITS)


def derived_seed(*keys: int) -> int:
    """A 63-bit seed hashed from ``keys`` (non-negative ints) through NumPy's ``SeedSequence``.

    Hashing the keys, rather than adding them, keeps nearby keys (sample ``i`` and ``i + 1``,
    seed ``s`` and split ``s + 1``) from yielding related streams.
    """
    state = np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


def check_loader_settings(owner: str, batch_size: object, seed: object, num_workers: object) -> None:
    """The settings every sequence DataModule shares: a positive ``batch_size``, non-negative ``seed`` and ``num_workers``."""
    check_positive_int(owner, "batch_size", batch_size)
    check_non_negative_int(owner, "seed", seed)
    check_non_negative_int(owner, "num_workers", num_workers)


def seeded_generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded with :func:`derived_seed` of ``keys``."""
    return torch.Generator().manual_seed(derived_seed(*keys))


class EpochRandomSampler(RandomSampler):
    """A shuffle whose order in epoch ``e`` is drawn from a generator seeded by ``(seed, SHUFFLE_STREAM, e)``.

    Lightning calls :meth:`set_epoch` at the start of every training epoch (as for a
    ``DistributedSampler``), so the order of an epoch depends on the seed and the epoch alone: a fit
    resumed from an end-of-epoch checkpoint sees the orders of the uninterrupted fit.

    Args:
        data_source: the dataset to shuffle.
        seed: the run's data seed.
    """

    def __init__(self, data_source: Dataset, seed: int) -> None:
        super().__init__(data_source, generator=seeded_generator(seed, SHUFFLE_STREAM, 0))
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the orders of ``epoch`` from the next iteration on.

        The generator is reseeded in place, so whoever shares it (a batch sampler shuffling its
        batches) follows the epoch too.
        """
        self.epoch = epoch
        self.generator.manual_seed(derived_seed(self.seed, SHUFFLE_STREAM, epoch))


def split_loader(datamodule: LightningDataModule, split: str) -> DataLoader:
    """The DataLoader of ``datamodule.datasets[split]``, shuffled (seeded) only for ``"train"``.

    ``datamodule`` provides ``datasets`` (filled by ``setup``), ``batch_size``, ``seed`` and
    ``num_workers``. The training order of epoch ``e`` is drawn from ``(seed, SHUFFLE_STREAM, e)``
    (:class:`EpochRandomSampler`), so it is reproducible and the same after resuming from a
    checkpoint. Under DDP, Lightning swaps the sampler for a ``DistributedSampler``, which shuffles
    by the seed and epoch by itself.
    """
    if split not in datamodule.datasets:
        raise RuntimeError(f"{type(datamodule).__name__}: setup() must run before the {split} dataloader is built")
    dataset = datamodule.datasets[split]
    options = dict(batch_size=datamodule.batch_size, num_workers=datamodule.num_workers,
                   persistent_workers=datamodule.num_workers > 0)
    if split == "train" and datamodule.trainer is not None:
        return ResumableDataLoader(
            dataset, sampler=EpochRandomSampler(dataset, datamodule.seed), batches_done=trainer_batches_done(datamodule.trainer),
            **options,
        )
    return DataLoader(dataset, sampler=EpochRandomSampler(dataset, datamodule.seed) if split == "train" else None, **options)


def trainer_batches_done(trainer: Any) -> Callable[[], int]:
    """A function returning how many of the current epoch's training batches have finished their step."""
    return lambda: trainer.fit_loop.epoch_loop.batch_progress.current.processed


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` that Lightning resumes mid-epoch: its state is the number of the epoch's batches done.

    Lightning saves a stateful loader's :meth:`state_dict` in its checkpoints and calls
    :meth:`load_state_dict` when a fit resumes; the next iteration then draws and drops the batches
    already trained on, so the resumed epoch continues with the batch the interrupted one would
    have taken (the order of an epoch depends on the seed and the epoch alone, see
    :class:`EpochRandomSampler`). Arguments are ``DataLoader``'s, and:

    Args:
        batches_done: returns the number of this epoch's batches already trained on (the loader
            cannot count them itself: Lightning fetches one batch ahead).
    """

    def __init__(self, *args: Any, batches_done: Callable[[], int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches_done = batches_done
        self._skip = 0

    def state_dict(self) -> dict[str, int]:
        sampler = self.batch_sampler.sampler if self.batch_sampler is not None else self.sampler
        return {"batches_done": self.batches_done(), "epoch": getattr(sampler, "epoch", -1)}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Skip the saved number of batches in the next iteration, drawn in the order of the saved epoch."""
        self._skip = state_dict["batches_done"]
        sampler = self.batch_sampler.sampler if self.batch_sampler is not None else self.sampler
        if state_dict.get("epoch", -1) >= 0 and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(state_dict["epoch"])

    def __iter__(self) -> Iterator[Any]:
        iterator, (skip, self._skip) = super().__iter__(), (self._skip, 0)
        for _ in range(skip):
            next(iterator, None)
        return iterator
