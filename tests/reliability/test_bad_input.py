"""Bad input fails early with a message naming the culprit, and never loses data (cases not covered elsewhere).

docs/reliability.md lists every bad-input case with the test that covers it, here or in the other test files.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from lightning import Trainer

from alstm_lightning import (
    AddingDataModule,
    LanguageModelingTask,
    SequenceClassificationTask,
    WordCorpusDataModule,
    aLSTM,
)
from alstm_lightning.cli import main
from alstm_lightning.tasks.checkpoints import check_compatible_hparams

from .conftest import TINY_LM_ARGS, write_word_corpus


# ----------------------------------------------------------------------------- checkpoints
def test_check_compatible_hparams_names_every_mismatch_with_both_values():
    saved = {"hidden_size": 8, "policy_layout": "paper", "betas": [0.9, 0.99], "lr": 1.0}
    current = {"hidden_size": 16, "policy_layout": "paper", "betas": (0.9, 0.99), "lr": 2.0, "pooling": "last"}
    check_compatible_hparams("Task", saved, current, ["policy_layout", "betas"])  # a list equals a tuple
    with pytest.raises(ValueError, match=r"Task: .*hidden_size=8 in the checkpoint but hidden_size=16 in the model; "
                                         r"pooling=<absent> in the checkpoint but pooling='last' in the model"):
        check_compatible_hparams("Task", saved, current, ["hidden_size", "policy_layout", "pooling"])


def fit_one_step(model, data, tmp_path):
    trainer = Trainer(
        max_steps=1, limit_val_batches=0, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )
    trainer.fit(model, data)
    path = tmp_path / "one-step.ckpt"
    trainer.save_checkpoint(path)
    return trainer, path


def test_sequence_checkpoint_of_another_architecture_is_refused_by_name(tmp_path):
    def task(**overrides):
        arguments = dict(num_classes=1, input_size=2, objective="regression", hidden_size=4, adapt_size=2) | overrides
        return SequenceClassificationTask(**arguments)

    data = AddingDataModule(seq_len=5, num_train=4, num_val=4, num_test=4, batch_size=4)
    _, path = fit_one_step(task(), data, tmp_path)
    # same parameter shapes, other math: without the check these weights would load silently
    other = task(policy_layout="reference", lr=1e-4)  # lr may change on resume, the layout may not
    trainer = Trainer(max_steps=2, accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    with pytest.raises(ValueError, match="policy_layout='paper' in the checkpoint but policy_layout='reference'"):
        trainer.fit(other, data, ckpt_path=path)
    with pytest.raises(ValueError, match="hidden_size=4 in the checkpoint but hidden_size=6 in the model"):
        Trainer(accelerator="cpu", logger=False).validate(task(hidden_size=6), data, ckpt_path=path)


def test_language_model_checkpoint_of_another_architecture_is_refused_by_name(tmp_path):
    # needs LanguageModelingTask.on_load_checkpoint (see docs/reliability.md)
    corpus = write_word_corpus(tmp_path / "corpus", num_words=200)
    data = WordCorpusDataModule(data_dir=str(corpus), batch_size=2, eval_batch_size=2, bptt=5)

    def task(**overrides):
        arguments = dict(vocab_size=data.vocab_size, embedding_size=4, hidden_size=4, adapt_size=2, num_layers=1)
        return LanguageModelingTask(**(arguments | overrides))

    _, path = fit_one_step(task(), data, tmp_path)
    with pytest.raises(ValueError, match="policy_layout='paper' in the checkpoint but policy_layout='reference'"):
        Trainer(accelerator="cpu", logger=False).validate(task(policy_layout="reference"), data, ckpt_path=path)


# ----------------------------------------------------------------------------- output directories
@pytest.mark.parametrize(
    ("argument", "name"),
    [("--trainer.default_root_dir", "trainer.default_root_dir"), ("--trainer.logger.save_dir", "the save_dir of CSVLogger")],
)
def test_unwritable_output_directory_fails_before_training(tmp_path, monkeypatch, capsys, argument, name):
    monkeypatch.chdir(tmp_path)
    corpus = write_word_corpus(tmp_path / "corpus", num_words=200)
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where a directory should be\n")
    args = ["fit", *TINY_LM_ARGS, "--data.data_dir", str(corpus), argument, str(blocker / "runs")]
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 1
    assert re.search(rf"AlstmCLI: {name} must be a writable directory, got .*a-file/runs", capsys.readouterr().err)
    assert not list(tmp_path.rglob("*.ckpt"))


# ----------------------------------------------------------------------------- corpus files
def test_empty_data_file_is_named(tmp_path):
    corpus = write_word_corpus(tmp_path / "corpus", num_words=200)
    (corpus / "valid.txt").write_text("")
    with pytest.raises(ValueError, match=r"every data file must hold text, got an empty file .*valid\.txt"):
        WordCorpusDataModule(data_dir=str(corpus)).setup("fit")


@pytest.mark.parametrize(
    ("cut", "match"),
    [(lambda text: text[:-2], r"character cut off at the end of .*test\.txt"),
     (lambda text: text[:3] + b"\xff" + text[3:], r"not UTF-8 near byte 3 of .*test\.txt")],
)
def test_truncated_or_binary_data_file_is_named(tmp_path, cut, match):
    corpus = write_word_corpus(tmp_path / "corpus", num_words=200)
    path = corpus / "test.txt"
    path.write_bytes(cut(path.read_bytes() + "café\n".encode()))
    with pytest.raises(ValueError, match=match):
        WordCorpusDataModule(data_dir=str(corpus), unknown_words="unk").setup("test")


def test_unreadable_cache_is_rebuilt_with_a_warning(tmp_path):
    corpus = write_word_corpus(tmp_path / "corpus", num_words=200)
    cache_dir = tmp_path / "cache"
    fresh = WordCorpusDataModule(data_dir=str(corpus), cache_dir=str(cache_dir)).load_corpus()
    (cache,) = cache_dir.iterdir()
    cache.write_bytes(cache.read_bytes()[:100])  # e.g. a disk that filled up
    with pytest.warns(UserWarning, match="cannot be read .* tokenising the source files again"):
        rebuilt = WordCorpusDataModule(data_dir=str(corpus), cache_dir=str(cache_dir)).load_corpus()
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(rebuilt, split), getattr(fresh, split))
    assert WordCorpusDataModule(data_dir=str(corpus), cache_dir=str(cache_dir)).load_corpus().vocab.itos == fresh.vocab.itos


# ----------------------------------------------------------------------------- task inputs
def float_task(**overrides):
    arguments = dict(num_classes=1, input_size=2, objective="regression", hidden_size=4, adapt_size=2) | overrides
    return SequenceClassificationTask(**arguments)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_features_on_valid_steps_raise(value):
    inputs = torch.rand(2, 4, 2)
    inputs[1, 2, 0] = value
    with pytest.raises(ValueError, match="SequenceClassificationTask: inputs must be finite on the valid steps, got 1"):
        float_task()(inputs, torch.tensor([4, 3]))
    # on a padded step the value is never read
    assert torch.isfinite(float_task()(inputs, torch.tensor([4, 2]))).all()


def test_non_finite_regression_targets_raise():
    batch = (torch.rand(2, 4, 2), torch.tensor([4, 3]), torch.tensor([1.0, math.nan]))
    with pytest.raises(ValueError, match="SequenceClassificationTask: targets must be finite, got 1"):
        float_task().shared_step(batch, "train")


@pytest.mark.parametrize("bad", [7, -1])
def test_out_of_vocabulary_token_ids_raise(bad):
    task = SequenceClassificationTask(num_classes=2, vocab_size=7, hidden_size=4, adapt_size=2, embedding_size=4)
    with pytest.raises(ValueError, match=r"SequenceClassificationTask: inputs must be token ids in \[0, vocab_size=7\)"):
        task(torch.tensor([[1, 2, bad]]))


def test_layers_propagate_nan_like_torch_lstm():
    """Documented behaviour: the pure-torch layers do not check values (a check costs a device sync per call)."""
    output, _ = aLSTM(2, 4, 2)(torch.full((3, 1, 2), math.nan))
    assert torch.isnan(output).all()
