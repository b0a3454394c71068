"""Long-range synthetic benchmarks drawn from a seed: the adding, copy-memory and temporal-order problems.

Each problem is a plain function ``generate(num_samples, ..., generator) -> (inputs, lengths,
targets)`` in the batch layout every sequence DataModule yields, and a DataModule that draws
sample ``i`` of a split from its own generator, seeded by ``(seed, split, i)``. So a split is
the same for a given seed whatever the batch size, shuffling or number of workers, the three
splits are independent draws, and nothing is held in memory but the sample being built (the
sequences may be thousands of steps long).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal

import torch
from lightning import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..checks import check_bool, check_positive_int
from .loading import IGNORE_INDEX, SPLITS, check_loader_settings, seeded_generator, split_loader

Batch = tuple[Tensor, Tensor, Tensor]


def adding_problem(num_samples: int, seq_len: int, generator: torch.Generator | None = None) -> Batch:
    """The adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015; Arjovsky et al. 2016).

    Each step holds a value drawn from ``U(0, 1)`` and a marker; exactly two steps are marked
    (marker ``1``, else ``0``), one in the first half of the sequence and one in the second half.
    The target is the sum of the two marked values, so it lies in ``[0, 2]``. Predicting ``1``
    whatever the input gives the baseline mean squared error ``Var(u1 + u2) = 2/12 ≈ 0.167``.

    Args:
        num_samples: B, sequences to draw.
        seq_len: T, steps per sequence; at least 2.
        generator: the random source (the global one when ``None``).

    Returns:
        ``(inputs, lengths, targets)``.

    Shape:
        inputs: ``(B, T, 2)`` float, ``[..., 0]`` the values and ``[..., 1]`` the markers.
        lengths: ``(B,)`` long, all ``T``.
        targets: ``(B,)`` float.
    """
    if seq_len < 2:
        raise ValueError(f"adding_problem: seq_len must be at least 2, got {seq_len}")
    values = torch.rand(num_samples, seq_len, generator=generator)
    half = seq_len // 2
    first = torch.randint(0, half, (num_samples,), generator=generator)
    second = torch.randint(half, seq_len, (num_samples,), generator=generator)
    rows = torch.arange(num_samples)
    markers = torch.zeros(num_samples, seq_len)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    inputs = torch.stack((values, markers), dim=-1)  # (B, T, 2)
    targets = values[rows, first] + values[rows, second]
    lengths = torch.full((num_samples,), seq_len, dtype=torch.long)
    return inputs, lengths, targets


def copy_memory(
    num_samples: int,
    copy_length: int = 10,
    delay: int = 100,
    alphabet_size: int = 8,
    score_blanks: bool = True,
    generator: torch.Generator | None = None,
) -> Batch:
    """The copy-memory problem (Hochreiter & Schmidhuber 1997; the layout of Arjovsky et al. 2016).

    A sequence of ``T = delay + 2 * copy_length`` tokens starts with ``copy_length`` symbols drawn
    uniformly from the alphabet, then ``delay - 1`` blanks, a delimiter that asks for the copy,
    and ``copy_length`` blanks while the model outputs the symbols. The per-step target is blank
    for the first ``delay + copy_length`` steps and the remembered symbols on the last
    ``copy_length``. Outputting blanks and then uniform guesses gives the baseline cross-entropy
    ``copy_length * log(alphabet_size) / T`` per step when every step is scored (Arjovsky et al.).

    Token ids (inputs): ``0`` blank, ``1..K`` the symbols (``K = alphabet_size``), ``K + 1`` the
    delimiter, ``K + 2`` padding (never present: every sequence has length ``T``). Classes
    (targets): ``0`` blank and ``1..K`` the symbols, the same ids as in the inputs.

    Args:
        num_samples: B, sequences to draw.
        copy_length: symbols to remember and copy.
        delay: steps from the last symbol shown to the delimiter (``T`` in Arjovsky et al.).
        alphabet_size: K, distinct symbols.
        score_blanks: score every step, with target blank before the copy (Arjovsky et al.);
            when ``False``, only the last ``copy_length`` steps are scored and the others hold
            ``-100``.
        generator: the random source (the global one when ``None``).

    Returns:
        ``(inputs, lengths, targets)``.

    Shape:
        inputs: ``(B, T)`` long token ids.
        lengths: ``(B,)`` long, all ``T``.
        targets: ``(B, T)`` long classes in ``[0, K]``, or ``-100`` on unscored steps.
    """
    seq_len = delay + 2 * copy_length
    recall = delay + copy_length  # the first step at which a symbol is output
    symbols = torch.randint(1, alphabet_size + 1, (num_samples, copy_length), generator=generator)
    inputs = torch.zeros(num_samples, seq_len, dtype=torch.long)
    inputs[:, :copy_length] = symbols
    inputs[:, recall - 1] = alphabet_size + 1
    targets = torch.full((num_samples, seq_len), 0 if score_blanks else IGNORE_INDEX, dtype=torch.long)
    targets[:, recall:] = symbols
    lengths = torch.full((num_samples,), seq_len, dtype=torch.long)
    return inputs, lengths, targets


#: Token ids of the temporal-order problem; ``0`` is padding.
TEMPORAL_ORDER_TOKENS = {"B": 1, "E": 2, "a": 3, "b": 4, "c": 5, "d": 6, "X": 7, "Y": 8}


def temporal_order(
    num_samples: int,
    min_length: int = 100,
    max_length: int = 110,
    generator: torch.Generator | None = None,
) -> Batch:
    """The temporal-order problem (Hochreiter & Schmidhuber 1997, experiment 6a).

    A sequence of length ``L`` drawn uniformly from ``[min_length, max_length]`` starts with
    ``B``, ends with ``E`` and holds distractors drawn from ``{a, b, c, d}`` except at two steps
    ``t1 < t2`` that hold ``X`` or ``Y``. The class is their order: ``XX -> 0``, ``XY -> 1``,
    ``YX -> 2``, ``YY -> 3`` (the paper's Q, R, S, U). With the defaults ``t1`` lies in
    ``[10, 20]`` and ``t2`` in ``[50, 60]``, as in the paper; other lengths scale these windows to
    ``[0.1, 0.2]`` and ``[0.5, 0.6]`` of ``min_length``.

    Token ids: ``0`` padding, then ``B, E, a, b, c, d, X, Y`` as ``1..8``
    (:data:`TEMPORAL_ORDER_TOKENS`).

    Args:
        num_samples: B, sequences to draw.
        min_length: shortest sequence; at least 10.
        max_length: longest sequence (T); at least ``min_length``.
        generator: the random source (the global one when ``None``).

    Returns:
        ``(inputs, lengths, targets)``.

    Shape:
        inputs: ``(B, T)`` long token ids, padded with ``0`` after each sequence's end.
        lengths: ``(B,)`` long, each in ``[min_length, max_length]``.
        targets: ``(B,)`` long classes in ``[0, 3]``.
    """
    if min_length < 10:
        raise ValueError(f"temporal_order: min_length must be at least 10, got {min_length}")
    if max_length < min_length:
        raise ValueError(f"temporal_order: max_length must be at least min_length={min_length}, got {max_length}")
    tokens = TEMPORAL_ORDER_TOKENS
    rows = torch.arange(num_samples)
    lengths = torch.randint(min_length, max_length + 1, (num_samples,), generator=generator)
    inputs = torch.randint(tokens["a"], tokens["d"] + 1, (num_samples, max_length), generator=generator)
    steps = torch.arange(max_length)
    inputs[steps >= lengths.unsqueeze(1)] = 0
    inputs[:, 0] = tokens["B"]
    inputs[rows, lengths - 1] = tokens["E"]
    # The paper's windows for L = 100..110 are [10, 20] and [50, 60]; round() keeps them exact.
    t1 = torch.randint(round(0.1 * min_length), round(0.2 * min_length) + 1, (num_samples,), generator=generator)
    t2 = torch.randint(round(0.5 * min_length), round(0.6 * min_length) + 1, (num_samples,), generator=generator)
    is_y = torch.randint(0, 2, (num_samples, 2), generator=generator)  # 0: X, 1: Y
    inputs[rows, t1] = tokens["X"] + is_y[:, 0]
    inputs[rows, t2] = tokens["X"] + is_y[:, 1]
    targets = 2 * is_y[:, 0] + is_y[:, 1]
    return inputs, lengths, targets


class SeededSequenceDataset(Dataset):
    """``num_samples`` sequences, sample ``i`` drawn by ``generate`` from a generator seeded by ``(*keys, i)``.

    Args:
        generate: ``generate(num_samples, generator=...) -> (inputs, lengths, targets)``; called
            with one sample per item. A module-level function or a ``functools.partial`` of one,
            so that worker processes can pickle it.
        num_samples: items in the dataset.
        keys: non-negative ints naming the stream (e.g. the seed and the split's index).

    Items are ``(inputs, length, target)``: one row of each tensor ``generate`` returns, so the
    default collate function stacks them back into a batch.
    """

    def __init__(self, generate: Callable[..., Batch], num_samples: int, keys: tuple[int, ...]) -> None:
        self.generate = generate
        self.num_samples = num_samples
        self.keys = keys

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"SeededSequenceDataset: index must be in [0, {self.num_samples}), got {index}")
        inputs, lengths, targets = self.generate(1, generator=seeded_generator(*self.keys, index))
        return inputs[0], lengths[0], targets[0]


class SyntheticDataModule(LightningDataModule):
    """Base of the synthetic benchmarks: three seeded splits of sizes ``num_train/num_val/num_test``.

    Subclasses set the batch-contract attributes (``input_size``, ``vocab_size``, ``pad_index``,
    ``num_classes``, ``objective``) in ``__init__`` and override :meth:`generator_function`, which
    returns the picklable ``generate(num_samples, generator=...)`` of their problem.

    Split ``k`` (``0`` train, ``1`` val, ``2`` test) draws sample ``i`` from a generator seeded
    by ``(seed, k, i)``: the same seed gives the same data, and the splits are independent draws.

    Args:
        num_train: sequences in the training split.
        num_val: sequences in the validation split.
        num_test: sequences in the test split.
        batch_size: sequences per batch.
        seed: seeds the data (and the training-order shuffle); a non-negative int.
        num_workers: DataLoader worker processes.
    """

    input_size: int | None = None
    vocab_size: int | None = None
    pad_index: int = 0
    num_classes: int
    objective: Literal["classification", "regression"] = "classification"

    def __init__(
        self,
        num_train: int = 100_000,
        num_val: int = 10_000,
        num_test: int = 10_000,
        batch_size: int = 50,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        for name, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            check_positive_int(owner, name, value)
        check_loader_settings(owner, batch_size, seed, num_workers)
        self.num_train = num_train
        self.num_val = num_val
        self.num_test = num_test
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.datasets: dict[str, SeededSequenceDataset] = {}

    def generator_function(self) -> Callable[..., Batch]:
        """The problem's ``generate(num_samples, generator=...)``, its settings bound. Override it."""
        raise NotImplementedError(f"{type(self).__name__}: generator_function must be overridden")

    def setup(self, stage: str | None = None) -> None:
        generate = self.generator_function()
        sizes = (self.num_train, self.num_val, self.num_test)
        self.datasets = {
            split: SeededSequenceDataset(generate, size, (self.seed, k))
            for k, (split, size) in enumerate(zip(SPLITS, sizes))
        }

    def train_dataloader(self) -> DataLoader:
        return split_loader(self, "train")

    def val_dataloader(self) -> DataLoader:
        return split_loader(self, "val")

    def test_dataloader(self) -> DataLoader:
        return split_loader(self, "test")


class AddingDataModule(SyntheticDataModule):
    """The adding problem (:func:`adding_problem`): regression of the sum of two marked values.

    Batches are ``(inputs (B, T, 2) float, lengths (B,), targets (B,) float)``; ``input_size=2``,
    ``num_classes=1``, ``objective="regression"``. A model has learnt something once its test mean
    squared error falls clearly below the baseline ``0.167`` of always predicting 1.

    Args:
        seq_len: T, steps per sequence (Le et al. 2015 use 150 to 400; Arjovsky et al. 2016 up
            to 750).
        num_train: sequences in the training split.
        num_val: sequences in the validation split.
        num_test: sequences in the test split.
        batch_size: sequences per batch.
        seed: seeds the data (and the training-order shuffle); a non-negative int.
        num_workers: DataLoader worker processes.
    """

    input_size = 2
    num_classes = 1
    objective = "regression"

    def __init__(
        self,
        seq_len: int = 200,
        num_train: int = 100_000,
        num_val: int = 10_000,
        num_test: int = 10_000,
        batch_size: int = 50,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(num_train, num_val, num_test, batch_size, seed, num_workers)
        check_positive_int("AddingDataModule", "seq_len", seq_len)
        if seq_len < 2:
            raise ValueError(f"AddingDataModule: seq_len must be at least 2, got {seq_len}")
        self.seq_len = seq_len

    def generator_function(self) -> Callable[..., Batch]:
        return partial(adding_problem, seq_len=self.seq_len)


class CopyMemoryDataModule(SyntheticDataModule):
    """The copy-memory problem (:func:`copy_memory`): per-step classification of a delayed copy.

    Batches are ``(inputs (B, T) long, lengths (B,), targets (B, T) long)`` with
    ``T = delay + 2 * copy_length``; ``vocab_size = alphabet_size + 3`` (blank, symbols,
    delimiter, padding), ``pad_index = alphabet_size + 2`` (never present: the sequences are
    fixed-length), ``num_classes = alphabet_size + 1`` (blank and symbols).

    Args:
        copy_length: symbols to remember and copy (10 in Arjovsky et al. 2016).
        delay: steps from the last symbol to the delimiter (Arjovsky et al. use 100 to 2000).
        alphabet_size: distinct symbols (8 in Arjovsky et al.).
        score_blanks: score every step, blanks included (Arjovsky et al.); when ``False`` only
            the copied steps are scored, the others hold ``-100``.
        num_train: sequences in the training split.
        num_val: sequences in the validation split.
        num_test: sequences in the test split.
        batch_size: sequences per batch.
        seed: seeds the data (and the training-order shuffle); a non-negative int.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        copy_length: int = 10,
        delay: int = 100,
        alphabet_size: int = 8,
        score_blanks: bool = True,
        num_train: int = 100_000,
        num_val: int = 10_000,
        num_test: int = 10_000,
        batch_size: int = 50,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(num_train, num_val, num_test, batch_size, seed, num_workers)
        for name, value in (("copy_length", copy_length), ("delay", delay), ("alphabet_size", alphabet_size)):
            check_positive_int("CopyMemoryDataModule", name, value)
        check_bool("CopyMemoryDataModule", "score_blanks", score_blanks)
        self.copy_length = copy_length
        self.delay = delay
        self.alphabet_size = alphabet_size
        self.score_blanks = score_blanks
        self.vocab_size = alphabet_size + 3
        self.pad_index = alphabet_size + 2
        self.num_classes = alphabet_size + 1

    def generator_function(self) -> Callable[..., Batch]:
        return partial(
            copy_memory,
            copy_length=self.copy_length,
            delay=self.delay,
            alphabet_size=self.alphabet_size,
            score_blanks=self.score_blanks,
        )


class TemporalOrderDataModule(SyntheticDataModule):
    """The temporal-order problem (:func:`temporal_order`): 4-way classification of the order of X/Y.

    Batches are ``(inputs (B, max_length) long, lengths (B,), targets (B,) long)``, padded with
    ``0`` after each sequence; ``vocab_size=9``, ``pad_index=0``, ``num_classes=4``.

    Args:
        min_length: shortest sequence (100 in Hochreiter & Schmidhuber 1997); at least 10.
        max_length: longest sequence (110 in the paper); at least ``min_length``.
        num_train: sequences in the training split.
        num_val: sequences in the validation split.
        num_test: sequences in the test split.
        batch_size: sequences per batch.
        seed: seeds the data (and the training-order shuffle); a non-negative int.
        num_workers: DataLoader worker processes.
    """

    vocab_size = len(TEMPORAL_ORDER_TOKENS) + 1
    num_classes = 4

    def __init__(
        self,
        min_length: int = 100,
        max_length: int = 110,
        num_train: int = 100_000,
        num_val: int = 10_000,
        num_test: int = 10_000,
        batch_size: int = 50,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(num_train, num_val, num_test, batch_size, seed, num_workers)
        check_positive_int("TemporalOrderDataModule", "min_length", min_length)
        check_positive_int("TemporalOrderDataModule", "max_length", max_length)
        if min_length < 10:
            raise ValueError(f"TemporalOrderDataModule: min_length must be at least 10, got {min_length}")
        if max_length < min_length:
            raise ValueError(
                f"TemporalOrderDataModule: max_length must be at least min_length={min_length}, got {max_length}"
            )
        self.min_length = min_length
        self.max_length = max_length

    def generator_function(self) -> Callable[..., Batch]:
        return partial(temporal_order, min_length=self.min_length, max_length=self.max_length)
