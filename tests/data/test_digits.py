"""Pixel-by-pixel digits: shapes, stratified deterministic splits, the seeded permutation, the missing-extra message."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from alstm_lightning.data.digits import DigitsDataModule, load_digit_images, stratified_split

requires_sklearn = pytest.mark.skipif(
    importlib.util.find_spec("sklearn") is None,
    reason="scikit-learn is not installed (the optional extra alstm-lightning[digits])",
)


def make(**kwargs: object) -> DigitsDataModule:
    datamodule = DigitsDataModule(**kwargs)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def split_indices(datamodule: DigitsDataModule, split: str) -> list[int]:
    """Row indices into the full image set, recovered by matching sequential images (they are distinct rows)."""
    images, _ = load_digit_images()
    rows = {tuple(image.tolist()): index for index, image in enumerate(images)}
    inputs = datamodule.datasets[split].tensors[0].squeeze(-1)
    return sorted(rows[tuple(image.tolist())] for image in inputs)


@requires_sklearn
def test_batches_are_64_steps_of_one_pixel():
    datamodule = make(batch_size=5)
    inputs, lengths, targets = next(iter(datamodule.train_dataloader()))
    assert inputs.shape == (5, 64, 1) and inputs.dtype == torch.float32
    assert lengths.tolist() == [64] * 5
    assert targets.shape == (5,) and targets.dtype == torch.long
    everything = torch.cat([batch[0] for batch in datamodule.val_dataloader()])
    assert everything.min().item() == 0.0 and everything.max().item() == 1.0
    assert (datamodule.input_size, datamodule.vocab_size, datamodule.num_classes) == (1, None, 10)
    assert datamodule.objective == "classification"


@requires_sklearn
def test_splits_are_stratified_disjoint_and_deterministic():
    datamodule = make(val_fraction=0.2, test_fraction=0.1, seed=1)
    _, labels = load_digit_images()
    sizes = {split: len(dataset) for split, dataset in datamodule.datasets.items()}
    assert sum(sizes.values()) == len(labels) == 1797
    class_counts = torch.bincount(labels, minlength=10)
    for split, fraction in (("val", 0.2), ("test", 0.1)):
        counts = torch.bincount(datamodule.datasets[split].tensors[2], minlength=10)
        assert (counts - class_counts * fraction).abs().max().item() <= 0.5  # round(n_c * fraction) per class
    indices = {split: split_indices(datamodule, split) for split in ("train", "val", "test")}
    assert sorted(sum(indices.values(), [])) == list(range(1797))
    again = make(val_fraction=0.2, test_fraction=0.1, seed=1)
    assert indices == {split: split_indices(again, split) for split in indices}
    assert indices["test"] != split_indices(make(val_fraction=0.2, test_fraction=0.1, seed=2), "test")


def test_stratified_split_keeps_class_proportions():
    labels = torch.tensor([0] * 20 + [1] * 10 + [2] * 30)
    train, val, test = stratified_split(labels, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert torch.equal(torch.sort(torch.cat((train, val, test))).values, torch.arange(60))
    assert torch.bincount(labels[val]).tolist() == [2, 1, 3]
    assert torch.bincount(labels[test]).tolist() == [4, 2, 6]
    assert torch.bincount(labels[train]).tolist() == [14, 7, 21]
    again = stratified_split(labels, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert all(torch.equal(a, b) for a, b in zip((train, val, test), again))
    other = stratified_split(labels, val_fraction=0.1, test_fraction=0.2, seed=1)
    assert not torch.equal(test, other[2])


@requires_sklearn
def test_permutation_is_fixed_by_its_seed_and_reorders_the_pixels():
    sequential = make(seed=4)
    permuted = make(seed=4, permuted=True, permutation_seed=7)
    permutation = permuted.permutation
    assert sequential.permutation is None
    assert sorted(permutation.tolist()) == list(range(64))
    assert not torch.equal(permutation, torch.arange(64))
    assert torch.equal(permutation, DigitsDataModule(permuted=True, permutation_seed=7, seed=0).permutation)
    assert not torch.equal(permutation, DigitsDataModule(permuted=True, permutation_seed=8).permutation)
    # Same split seed: the same images, each read in the permuted order.
    pixels = sequential.datasets["test"].tensors[0]
    torch.testing.assert_close(permuted.datasets["test"].tensors[0], pixels[:, permutation], rtol=0, atol=0)
    assert torch.equal(permuted.datasets["test"].tensors[2], sequential.datasets["test"].tensors[2])


def test_missing_scikit_learn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"alstm-lightning\[digits\]"):
        DigitsDataModule().setup("fit")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"val_fraction": 0.0}, ValueError, "val_fraction"),
        ({"test_fraction": 1.0}, ValueError, "test_fraction"),
        ({"val_fraction": "0.1"}, TypeError, "val_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, ValueError, "val_fraction \\+ test_fraction"),
        ({"permuted": 1}, TypeError, "permuted"),
        ({"permutation_seed": -1}, ValueError, "permutation_seed"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"seed": -2}, ValueError, "seed"),
    ],
)
def test_invalid_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        DigitsDataModule(**kwargs)
