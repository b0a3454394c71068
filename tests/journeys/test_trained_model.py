"""Using a trained model: the checkpoint alone reads and writes text, and refuses another vocabulary by name."""

from __future__ import annotations

import pytest
import torch
from lightning import Trainer

from alstm_lightning import (
    CharCorpusDataModule,
    LanguageModelingTask,
    SequenceClassificationTask,
    TextClassificationDataModule,
    Vocabulary,
)

from .conftest import cli, write_texts

TEXT = "def f(x):\n    return x + 1\n" * 60
#: the same number of distinct characters as TEXT, other ones
OTHER = TEXT.translate(str.maketrans("defrux", "DEFRUX"))


def quiet_trainer(tmp_path, **kwargs) -> Trainer:
    options = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                   default_root_dir=tmp_path)
    return Trainer(**(options | kwargs))


@pytest.fixture(scope="module")
def lm_checkpoint(tmp_path_factory):
    """A char-level model fitted two steps on TEXT by a Trainer, and its checkpoint."""
    directory = tmp_path_factory.mktemp("lm")
    (directory / "text.txt").write_text(TEXT)
    data = CharCorpusDataModule(paths=str(directory / "text.txt"), batch_size=4, eval_batch_size=4, bptt=16)
    task = LanguageModelingTask(vocab_size=data.vocab_size, level="char", embedding_size=8, hidden_size=16,
                                adapt_size=4, num_layers=1, bptt=16)
    trainer = quiet_trainer(directory, max_steps=2, limit_val_batches=1, enable_checkpointing=False)
    trainer.fit(task, data)
    trainer.save_checkpoint(directory / "model.ckpt")
    return directory / "model.ckpt", data


def test_the_checkpoint_alone_encodes_decodes_and_samples(lm_checkpoint):
    path, data = lm_checkpoint
    raw = torch.load(path, weights_only=True)  # plain data: no code is unpickled
    assert raw["alstm_lightning_data"]["vocabulary"]["itos"] == data.vocab.itos
    model = LanguageModelingTask.load_from_checkpoint(path)
    assert isinstance(model.vocab, Vocabulary) and model.vocab == data.vocab
    assert model.vocab.decode(model.vocab.encode(model.vocab.tokens("def f"))) == "def f"
    first = model.generate_text("def ", max_new_tokens=20, seed=3)
    assert len(first) == 20 and set(first) <= set(TEXT)
    assert model.generate_text("def ", max_new_tokens=20, seed=3) == first, "a seed gives its text again"


def test_another_vocabulary_of_the_same_size_is_refused_naming_both(lm_checkpoint, tmp_path):
    path, data = lm_checkpoint
    (tmp_path / "other.txt").write_text(OTHER)
    other = CharCorpusDataModule(paths=str(tmp_path / "other.txt"), batch_size=4, eval_batch_size=4, bptt=16)
    assert other.vocab_size == data.vocab_size and other.vocab != data.vocab
    model = LanguageModelingTask.load_from_checkpoint(path)
    match = r"vocabulary must be the one the checkpoint was trained with, got another .*first difference at id \d+"
    with pytest.raises(ValueError, match=match):
        quiet_trainer(tmp_path, limit_val_batches=1).validate(model, other)
    # the same refusal through the console script, on one screen
    config = tmp_path / "other.yaml"
    config.write_text(
        "model:\n  class_path: alstm_lightning.LanguageModelingTask\n"
        "data:\n  class_path: alstm_lightning.CharCorpusDataModule\n"
        f"  init_args: {{paths: {tmp_path / 'other.txt'}, batch_size: 4, eval_batch_size: 4, bptt: 16}}\n"
    )
    result = cli(["validate", "--config", str(config), "--ckpt_path", str(path), "--trainer.logger", "false"], tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("alstm-lightning: error:")]
    assert len(errors) == 1 and "vocabulary must be the one the checkpoint was trained with" in errors[0]
    assert "Traceback" not in result.stderr


def test_a_classifier_checkpoint_alone_classifies_raw_texts(tmp_path):
    rows = [(f"a fine film {i}" if i % 2 else f"a dull film {i}", "good" if i % 2 else "bad") for i in range(24)]
    data = TextClassificationDataModule(
        train_path=str(write_texts(tmp_path / "train.csv", rows)), val_path=str(write_texts(tmp_path / "val.csv", rows)),
        batch_size=8,
    )
    task = SequenceClassificationTask(num_classes=data.num_classes, vocab_size=data.vocab_size, hidden_size=8,
                                      adapt_size=4, embedding_size=8)
    trainer = quiet_trainer(tmp_path, max_steps=3, limit_val_batches=1, enable_checkpointing=False)
    trainer.fit(task, data)
    trainer.save_checkpoint(tmp_path / "classifier.ckpt")
    model = SequenceClassificationTask.load_from_checkpoint(tmp_path / "classifier.ckpt")
    assert model.class_names == ["bad", "good"]
    records = model.classify(["a fine film", "an unseen dull word"])
    assert [r["text"] for r in records] == ["a fine film", "an unseen dull word"]
    assert all(r["label"] in ("bad", "good") and sum(r["probabilities"].values()) == pytest.approx(1.0) for r in records)
    # labels in another order are another model's labels
    relabelled = TextClassificationDataModule(
        train_path=str(tmp_path / "train.csv"), val_path=str(tmp_path / "val.csv"), labels=["good", "bad"]
    )
    with pytest.raises(ValueError, match=r"class names must be the one the checkpoint was trained with.*\['bad', 'good'\]"):
        quiet_trainer(tmp_path, limit_val_batches=1).validate(model, relabelled)
