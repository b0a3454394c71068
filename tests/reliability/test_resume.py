"""A fit resumed from its end-of-epoch checkpoint ends exactly where the uninterrupted fit ends, for both tasks."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning import LightningDataModule, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from alstm_lightning import AddingDataModule, LanguageModelingTask, SequenceClassificationTask, WordCorpusDataModule
from alstm_lightning.tasks.checkpoints import RANDOM_STATE_KEY

from .conftest import write_word_corpus


def sequence_task() -> tuple[LightningModule, LightningDataModule]:
    # dropout draws from the global generator and the lr cut at epoch 3 is scheduler state: both must be restored
    model = SequenceClassificationTask(
        num_classes=1, input_size=2, objective="regression", hidden_size=8, adapt_size=4, dropout=0.3,
        head_dropout=0.2, lr=1e-2, lr_milestones=[3], lr_gamma=0.5,
    )
    return model, AddingDataModule(seq_len=7, num_train=24, num_val=8, num_test=8, batch_size=4, seed=3)


def language_task(corpus: Path) -> tuple[LightningModule, LightningDataModule]:
    data = WordCorpusDataModule(data_dir=str(corpus), batch_size=4, eval_batch_size=4, bptt=10, seed=5)
    model = LanguageModelingTask(
        vocab_size=data.vocab_size, embedding_size=8, hidden_size=8, adapt_size=4, num_layers=2, bptt=10, lr=1e-2,
        lr_milestones=(3,), lr_gamma=0.5, input_dropout=0.2, dropout=0.2, output_dropout=0.2,
    )
    return model, data


def fit(
    build, max_epochs: int, directory: Path, ckpt_path: Path | None = None, max_steps: int = -1
) -> tuple[Trainer, LightningModule]:
    """Fit the task ``build()`` returns for ``max_epochs`` (or ``max_steps``), from ``ckpt_path`` if given.

    Checkpoints each epoch (``last.ckpt`` and the best), and ``step.ckpt`` after every step.
    """
    seed_everything(0)
    model, data = build()
    trainer = Trainer(
        max_epochs=max_epochs,
        max_steps=max_steps,
        accelerator="cpu",
        deterministic=True,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        # the LM needs a reload per epoch for its variable-BPTT schedule; the shuffle must not need one
        reload_dataloaders_every_n_epochs=int(isinstance(data, WordCorpusDataModule)),
        default_root_dir=directory,
        callbacks=[
            ModelCheckpoint(dirpath=directory, monitor="val/loss", save_last=True),
            ModelCheckpoint(dirpath=directory, filename="step", every_n_train_steps=1, enable_version_counter=False),
        ],
    )
    trainer.fit(model, data, ckpt_path=ckpt_path)
    return trainer, model


def assert_resume_is_exact(build, tmp_path: Path) -> None:
    whole, whole_model = fit(build, 4, tmp_path / "whole")
    fit(build, 2, tmp_path / "first")
    checkpoint = tmp_path / "first" / "last.ckpt"
    assert RANDOM_STATE_KEY in torch.load(checkpoint, weights_only=False)
    resumed, resumed_model = fit(build, 4, tmp_path / "resumed", ckpt_path=checkpoint)

    assert resumed.global_step == whole.global_step
    for (name, value), resumed_value in zip(whole_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(value, resumed_value), f"{name} differs after resuming"
    assert set(resumed.callback_metrics) == set(whole.callback_metrics)
    for name, value in whole.callback_metrics.items():
        assert torch.equal(resumed.callback_metrics[name], value), f"{name}: {resumed.callback_metrics[name]} != {value}"
    whole_optimizer = whole.optimizers[0].state_dict()
    resumed_optimizer = resumed.optimizers[0].state_dict()
    assert resumed_optimizer["param_groups"][0]["lr"] == whole_optimizer["param_groups"][0]["lr"] == 5e-3
    for key, state in whole_optimizer["state"].items():
        assert torch.equal(state["exp_avg_sq"], resumed_optimizer["state"][key]["exp_avg_sq"])


def test_sequence_classification_resume_matches_an_uninterrupted_fit(tmp_path):
    assert_resume_is_exact(sequence_task, tmp_path)


def test_language_modeling_resume_matches_an_uninterrupted_fit(tmp_path):
    # needs LanguageModelingTask.on_save_checkpoint / on_load_checkpoint (see docs/reliability.md)
    corpus = write_word_corpus(tmp_path / "corpus", num_words=400)
    assert_resume_is_exact(lambda: language_task(corpus), tmp_path)


def test_language_model_resumed_mid_epoch_matches_an_uninterrupted_fit(tmp_path):
    corpus = write_word_corpus(tmp_path / "corpus", num_words=400)
    build = lambda: language_task(corpus)  # noqa: E731
    whole, whole_model = fit(build, 3, tmp_path / "whole")
    steps_per_epoch = whole.global_step // 3
    # stopped after 4 of epoch 1's windows, with the hidden state carried from its first 4
    first, _ = fit(build, 3, tmp_path / "first", max_steps=steps_per_epoch + 4)
    checkpoint = torch.load(tmp_path / "first" / "step.ckpt", weights_only=True)
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (1, steps_per_epoch + 4)
    resumed, resumed_model = fit(build, 3, tmp_path / "resumed", ckpt_path=tmp_path / "first" / "step.ckpt")

    assert resumed.global_step == whole.global_step
    for (name, value), resumed_value in zip(whole_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(value, resumed_value), f"{name} differs after resuming mid-epoch"
    for name in ("val/loss", "val/ppl"):
        assert torch.equal(resumed.callback_metrics[name], whole.callback_metrics[name]), name


@pytest.mark.parametrize("reload", [0, 2])
def test_lm_window_schedule_is_that_of_the_last_reload_epoch(tmp_path, word_corpus, reload):
    """Without a reload every epoch, a resumed fit still takes the windows of the uninterrupted one."""
    data = WordCorpusDataModule(data_dir=str(word_corpus), batch_size=4, bptt=10, seed=5)
    data.setup("fit")
    lengths = {}
    for epoch in (0, 1, 2, 3):
        data.trainer = SimpleNamespace(
            global_rank=0, world_size=1, current_epoch=epoch, reload_dataloaders_every_n_epochs=reload
        )
        with pytest.warns(UserWarning, match="reload_dataloaders_every_n_epochs"):
            lengths[epoch] = [input.size(0) for input, _ in data.train_dataloader()]
    first_of_block = {0: 0, 1: 0, 2: 2 if reload else 0, 3: 2 if reload else 0}
    for epoch, source in first_of_block.items():
        assert lengths[epoch] == lengths[source]
    if reload:
        assert lengths[2] != lengths[0]


def test_training_order_depends_on_the_seed_and_epoch_only():
    data = AddingDataModule(seq_len=3, num_train=16, num_val=2, num_test=2, batch_size=16, seed=3)
    data.setup("fit")

    def order(loader, epoch):
        loader.sampler.set_epoch(epoch)
        return list(loader.sampler)

    first, second = data.train_dataloader(), data.train_dataloader()
    assert order(first, 0) == order(second, 0)
    assert order(first, 1) == order(second, 1) != order(first, 0)
    order(first, 4)
    assert order(first, 1) == order(second, 1)  # no memory of earlier epochs: a resumed fit gets the same orders
    assert sorted(order(first, 2)) == list(range(16))
