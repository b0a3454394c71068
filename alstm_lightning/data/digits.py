"""Pixel-by-pixel classification of scikit-learn's 8x8 digits, in scan order or a fixed permutation."""

from __future__ import annotations

import torch
from lightning import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from ..checks import check_bool, check_fraction, check_non_negative_int
from .loading import SPLITS, check_loader_settings, seeded_generator, split_loader

#: Pixels per image (8 x 8), the sequence length.
NUM_PIXELS = 64

#: Largest pixel value of scikit-learn's digits (4x4 blocks of 32x32 bitmaps, counted).
MAX_PIXEL = 16.0


def load_digit_images() -> tuple[Tensor, Tensor]:
    """The 1797 8x8 digits that scikit-learn bundles (no download), as tensors.

    Returns:
        ``(images, labels)``: pixels scaled to ``[0, 1]`` in row-major scan order, and the digit.

    Shape:
        images: ``(N, 64)`` float32.
        labels: ``(N,)`` long in ``[0, 9]``.

    Raises:
        ImportError: when scikit-learn is absent, naming the extra that installs it.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError(
            "load_digit_images: scikit-learn must be installed to load the digits, got "
            f"{type(error).__name__}: {error}; install the extra with pip install 'alstm-lightning[digits]'"
        ) from error
    images, labels = load_digits(return_X_y=True)
    return torch.as_tensor(images / MAX_PIXEL, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long)


def stratified_split(
    labels: Tensor, val_fraction: float, test_fraction: float, seed: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Split example indices into train / val / test with each class in the same proportions.

    Within each class the indices are shuffled by a generator seeded from ``seed``; the first
    ``round(n_c * test_fraction)`` go to test, the next ``round(n_c * val_fraction)`` to val and
    the rest to train. The same labels and seed always give the same split.

    Args:
        labels: ``(N,)`` integer class of each example.
        val_fraction: share of each class for validation.
        test_fraction: share of each class for test.
        seed: a non-negative int.

    Returns:
        ``(train, val, test)``: sorted, disjoint ``(N_split,)`` long index tensors covering ``range(N)``.
    """
    generator = seeded_generator(seed)
    parts: tuple[list[Tensor], list[Tensor], list[Tensor]] = ([], [], [])
    for label in torch.unique(labels):
        members = torch.nonzero(labels == label).squeeze(1)
        members = members[torch.randperm(members.numel(), generator=generator)]
        num_test = round(members.numel() * test_fraction)
        num_val = round(members.numel() * val_fraction)
        parts[2].append(members[:num_test])
        parts[1].append(members[num_test : num_test + num_val])
        parts[0].append(members[num_test + num_val :])
    train, val, test = (torch.sort(torch.cat(part)).values for part in parts)
    return train, val, test


class DigitsDataModule(LightningDataModule):
    """Sequential (and permuted) pixel-by-pixel classification of the 8x8 handwritten digits.

    The small cousin of sequential / permuted MNIST (Le et al. 2015): each image is read one
    pixel per step, 64 steps of 1 feature, and the class is predicted after the last pixel. With
    ``permuted=True`` the pixels are read in one fixed random order, which scatters neighbouring
    pixels far apart in time and so tests longer-range memory. The images come from
    ``sklearn.datasets.load_digits`` (bundled, no download); scikit-learn is the optional extra
    ``alstm-lightning[digits]``, imported in :meth:`setup`.

    Batches are ``(inputs (B, 64, 1) float in [0, 1], lengths (B,) all 64, targets (B,) long)``;
    ``input_size=1``, ``num_classes=10``.

    Args:
        permuted: read the pixels in the order :attr:`permutation` instead of row by row.
        permutation_seed: seeds the pixel permutation. It defines the task, so it is kept apart
            from ``seed``: runs with different seeds then share one permuted task.
        val_fraction: share of each digit class held out for validation.
        test_fraction: share of each digit class held out for test.
        batch_size: images per batch.
        seed: seeds the stratified split and the training-order shuffle; a non-negative int.
        num_workers: DataLoader worker processes.

    Attributes:
        permutation: ``(64,)`` long, step ``t`` reads pixel ``permutation[t]`` (row-major index);
            ``None`` unless ``permuted``.
    """

    input_size = 1
    vocab_size = None
    pad_index = 0
    num_classes = 10
    objective = "classification"

    def __init__(
        self,
        permuted: bool = False,
        permutation_seed: int = 0,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        batch_size: int = 32,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        check_bool("DigitsDataModule", "permuted", permuted)
        check_non_negative_int("DigitsDataModule", "permutation_seed", permutation_seed)
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            check_fraction("DigitsDataModule", name, value)
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(
                "DigitsDataModule: val_fraction + test_fraction must be below 1 to leave training images, "
                f"got {val_fraction} + {test_fraction}"
            )
        check_loader_settings("DigitsDataModule", batch_size, seed, num_workers)
        self.permuted = permuted
        self.permutation_seed = permutation_seed
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.permutation = (
            torch.randperm(NUM_PIXELS, generator=seeded_generator(permutation_seed)) if permuted else None
        )
        self.datasets: dict[str, TensorDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        images, labels = load_digit_images()
        if self.permutation is not None:
            images = images[:, self.permutation]
        inputs = images.unsqueeze(-1)  # (N, 64, 1)
        lengths = torch.full((len(labels),), NUM_PIXELS, dtype=torch.long)
        splits = stratified_split(labels, self.val_fraction, self.test_fraction, self.seed)
        self.datasets = {
            split: TensorDataset(inputs[index], lengths[index], labels[index]) for split, index in zip(SPLITS, splits)
        }

    def train_dataloader(self) -> DataLoader:
        return split_loader(self, "train")

    def val_dataloader(self) -> DataLoader:
        return split_loader(self, "val")

    def test_dataloader(self) -> DataLoader:
        return split_loader(self, "test")
