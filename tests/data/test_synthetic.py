"""The synthetic benchmarks: each problem checked against its definition, seeds, splits and the batch contract."""

from __future__ import annotations

import pytest
import torch

from alstm_lightning.data.loading import IGNORE_INDEX, seeded_generator
from alstm_lightning.data.synthetic import (
    TEMPORAL_ORDER_TOKENS,
    AddingDataModule,
    CopyMemoryDataModule,
    SeededSequenceDataset,
    TemporalOrderDataModule,
    adding_problem,
    copy_memory,
    temporal_order,
)

SIZES = {"num_train": 12, "num_val": 6, "num_test": 5, "batch_size": 4}

#: Each DataModule with settings small enough for a test.
MODULES = {
    "adding": (AddingDataModule, {"seq_len": 7}),
    "copy": (CopyMemoryDataModule, {"copy_length": 3, "delay": 4, "alphabet_size": 5}),
    "order": (TemporalOrderDataModule, {"min_length": 10, "max_length": 13}),
}


def make(name: str, **overrides: object):
    cls, settings = MODULES[name]
    datamodule = cls(**{**settings, **SIZES, **overrides})
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def split_tensors(datamodule, split: str) -> tuple[torch.Tensor, ...]:
    """Every batch of a split's loader, concatenated (the val/test loaders keep the index order)."""
    batches = list(getattr(datamodule, f"{split}_dataloader")())
    return tuple(torch.cat(parts) for parts in zip(*batches))


@pytest.mark.parametrize("name", MODULES)
def test_batches_follow_the_contract(name):
    datamodule = make(name)
    inputs, lengths, targets = next(iter(datamodule.train_dataloader()))
    batch, steps = inputs.shape[:2]
    assert batch == SIZES["batch_size"]
    assert lengths.shape == (batch,) and lengths.dtype == torch.long
    assert bool((lengths >= 1).all()) and bool((lengths <= steps).all())
    if datamodule.input_size is not None:
        assert datamodule.vocab_size is None
        assert inputs.shape == (batch, steps, datamodule.input_size) and inputs.is_floating_point()
    else:
        assert inputs.shape == (batch, steps) and inputs.dtype == torch.long
        assert 0 <= int(inputs.min()) and int(inputs.max()) < datamodule.vocab_size
        assert 0 <= datamodule.pad_index < datamodule.vocab_size
    if datamodule.objective == "regression":
        assert datamodule.num_classes == 1
        assert targets.shape == (batch,) and targets.is_floating_point()
    else:
        assert targets.dtype == torch.long and targets.shape in {(batch,), (batch, steps)}
        scored = targets[targets != IGNORE_INDEX]
        assert 0 <= int(scored.min()) and int(scored.max()) < datamodule.num_classes


def test_contract_attributes_exist_right_after_init():
    assert (AddingDataModule.input_size, AddingDataModule.num_classes, AddingDataModule.objective) == (2, 1, "regression")
    copy = CopyMemoryDataModule(alphabet_size=5)
    # blank, 5 symbols, delimiter, padding; classes: blank and the symbols.
    assert (copy.input_size, copy.vocab_size, copy.pad_index, copy.num_classes) == (None, 8, 7, 6)
    order = TemporalOrderDataModule()
    assert (order.vocab_size, order.pad_index, order.num_classes, order.objective) == (9, 0, 4, "classification")


@pytest.mark.parametrize("name", MODULES)
def test_same_seed_same_data_and_splits_differ(name):
    first, again = make(name, seed=3), make(name, seed=3, batch_size=5)
    other = make(name, seed=4)
    for split in ("train", "val", "test"):
        # The training loader shuffles, so compare the datasets item by item.
        for index in range(3):
            for a, b in zip(first.datasets[split][index], again.datasets[split][index]):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
    val, test = split_tensors(first, "val"), split_tensors(first, "test")
    for a, b in zip(val, split_tensors(again, "val")):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    inputs = {split: first.datasets[split][0][0] for split in ("train", "val", "test")}
    assert not torch.equal(inputs["train"], inputs["val"])
    assert not torch.equal(inputs["val"], inputs["test"])
    assert not torch.equal(inputs["train"], inputs["test"])
    assert not torch.equal(val[0][:5], split_tensors(other, "val")[0][:5])
    assert val[0].size(0) == SIZES["num_val"] and test[0].size(0) == SIZES["num_test"]


def test_training_order_is_seeded():
    orders = [split_tensors(make("adding", seed=1), "train")[2] for _ in range(2)]
    torch.testing.assert_close(orders[0], orders[1], rtol=0, atol=0)
    datamodule = make("adding", seed=1)
    assert sorted(orders[0].tolist()) == sorted(datamodule.datasets["train"][i][2].item() for i in range(12))


def test_workers_draw_the_same_data():
    in_process = split_tensors(make("order", num_workers=0), "val")
    in_worker = split_tensors(make("order", num_workers=1), "val")
    for a, b in zip(in_process, in_worker):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_adding_problem_marks_one_value_in_each_half_and_sums_them():
    inputs, lengths, targets = adding_problem(200, 9, generator=seeded_generator(0))
    values, markers = inputs[..., 0], inputs[..., 1]
    assert inputs.shape == (200, 9, 2) and bool((lengths == 9).all())
    assert bool(((values >= 0) & (values < 1)).all())
    assert set(markers.unique().tolist()) == {0.0, 1.0}
    assert markers[:, :4].sum(1).tolist() == [1.0] * 200  # first half: steps 0..3
    assert markers[:, 4:].sum(1).tolist() == [1.0] * 200
    torch.testing.assert_close(targets, (values * markers).sum(1))


def test_adding_problem_trivial_predictor_mse_is_one_sixth():
    # Predicting 1 scores Var(u1 + u2) = 2 * 1/12; the estimate's standard error here is about 0.0014.
    _, _, targets = adding_problem(20_000, 10, generator=seeded_generator(1))
    mse = ((targets - 1.0) ** 2).mean().item()
    assert mse == pytest.approx(1 / 6, abs=0.006)
    assert 0.0 <= targets.min().item() and targets.max().item() <= 2.0


@pytest.mark.parametrize("score_blanks", [True, False])
def test_copy_memory_targets_are_the_copied_symbols_after_the_delimiter(score_blanks):
    copy_length, delay, alphabet_size = 3, 6, 4
    inputs, lengths, targets = copy_memory(
        50, copy_length, delay, alphabet_size, score_blanks=score_blanks, generator=seeded_generator(2)
    )
    steps = delay + 2 * copy_length
    assert inputs.shape == targets.shape == (50, steps) and bool((lengths == steps).all())
    symbols = inputs[:, :copy_length]
    assert bool(((symbols >= 1) & (symbols <= alphabet_size)).all())
    delimiter = alphabet_size + 1
    recall = steps - copy_length
    assert bool((inputs[:, recall - 1] == delimiter).all())
    rest = torch.cat((inputs[:, copy_length : recall - 1], inputs[:, recall:]), dim=1)
    assert bool((rest == 0).all())  # blanks everywhere else
    assert torch.equal(targets[:, recall:], symbols)
    assert bool((targets[:, :recall] == (0 if score_blanks else IGNORE_INDEX)).all())


def test_copy_memory_datamodule_matches_the_function():
    datamodule = make("copy", seed=5)
    inputs, _, targets = datamodule.datasets["val"][2]
    expected = copy_memory(1, 3, 4, 5, generator=seeded_generator(5, 1, 2))
    assert torch.equal(inputs, expected[0][0]) and torch.equal(targets, expected[2][0])


def test_temporal_order_labels_follow_the_order_of_x_and_y():
    inputs, lengths, targets = temporal_order(300, generator=seeded_generator(3))
    x, y = TEMPORAL_ORDER_TOKENS["X"], TEMPORAL_ORDER_TOKENS["Y"]
    names = {x: "X", y: "Y"}
    classes = {"XX": 0, "XY": 1, "YX": 2, "YY": 3}
    assert inputs.shape == (300, 110)
    assert set(targets.tolist()) == {0, 1, 2, 3}
    for sequence, length, target in zip(inputs, lengths.tolist(), targets.tolist()):
        assert 100 <= length <= 110
        assert sequence[0] == TEMPORAL_ORDER_TOKENS["B"] and sequence[length - 1] == TEMPORAL_ORDER_TOKENS["E"]
        assert bool((sequence[length:] == 0).all())
        relevant = [t for t in range(length) if sequence[t] in (x, y)]
        assert len(relevant) == 2
        t1, t2 = relevant
        assert 10 <= t1 <= 20 and 50 <= t2 <= 60  # Hochreiter & Schmidhuber's windows
        distractors = [int(sequence[t]) for t in range(1, length - 1) if t not in relevant]
        assert set(distractors) <= {TEMPORAL_ORDER_TOKENS[s] for s in "abcd"}
        assert target == classes[names[int(sequence[t1])] + names[int(sequence[t2])]]


def test_seeded_dataset_rejects_out_of_range_index():
    dataset = SeededSequenceDataset(adding_problem, 3, (0, 0))
    with pytest.raises(IndexError, match="index"):
        dataset[3]


def test_loader_before_setup_raises():
    with pytest.raises(RuntimeError, match="setup"):
        AddingDataModule(seq_len=4).val_dataloader()


@pytest.mark.parametrize(
    ("cls", "kwargs", "error", "match"),
    [
        (AddingDataModule, {"seq_len": 1}, ValueError, "seq_len"),
        (AddingDataModule, {"seq_len": 2.5}, TypeError, "seq_len"),
        (AddingDataModule, {"num_train": 0}, ValueError, "num_train"),
        (AddingDataModule, {"num_test": -1}, ValueError, "num_test"),
        (AddingDataModule, {"batch_size": 0}, ValueError, "batch_size"),
        (AddingDataModule, {"seed": -1}, ValueError, "seed"),
        (AddingDataModule, {"seed": "0"}, TypeError, "seed"),
        (AddingDataModule, {"num_workers": True}, TypeError, "num_workers"),
        (CopyMemoryDataModule, {"delay": 0}, ValueError, "delay"),
        (CopyMemoryDataModule, {"copy_length": 0}, ValueError, "copy_length"),
        (CopyMemoryDataModule, {"alphabet_size": 0}, ValueError, "alphabet_size"),
        (CopyMemoryDataModule, {"score_blanks": 1}, TypeError, "score_blanks"),
        (TemporalOrderDataModule, {"min_length": 9}, ValueError, "min_length"),
        (TemporalOrderDataModule, {"min_length": 20, "max_length": 19}, ValueError, "max_length"),
    ],
)
def test_invalid_arguments_raise(cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls(**kwargs)


@pytest.mark.parametrize(
    ("generate", "kwargs", "match"),
    [(adding_problem, {"seq_len": 1}, "seq_len"), (temporal_order, {"min_length": 5}, "min_length")],
)
def test_generators_reject_too_short_sequences(generate, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(2, **kwargs)
