"""Every bad input is refused where it enters, by the argument's own name and value (the cases of issue 16).

docs/reliability.md lists each case with its test, here or elsewhere.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from lightning import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from alstm_lightning import (
    CharCorpusDataModule,
    LanguageModelingTask,
    TextClassificationDataModule,
    WordCorpusDataModule,
    aLSTM,
)
from alstm_lightning.data.streams import ResumableWindowLoader, StreamWindows

from .conftest import write_word_corpus

LM = dict(vocab_size=11, embedding_size=6, hidden_size=8, adapt_size=3, num_layers=1, bptt=5)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"lr": float("inf")}, ValueError, r"lr must be positive and finite, got inf"),
        ({"lr": -1.0}, ValueError, r"lr must be positive, got -1.0"),
        ({"lr_gamma": -0.1}, ValueError, r"lr_gamma must be in \(0, 1\], got -0.1"),
        ({"lr_gamma": 7.0}, ValueError, r"lr_gamma must be in \(0, 1\], got 7.0"),
        ({"betas": (5.0,)}, ValueError, r"betas must be two numbers in \[0, 1\), got \(5.0,\)"),
        ({"betas": (0.9, 1.0)}, ValueError, r"betas must be two numbers in \[0, 1\), got \(0.9, 1.0\)"),
        ({"eps": 0.0}, ValueError, r"eps must be positive, got 0.0"),
        ({"weight_decay": -1e-3}, ValueError, r"weight_decay must be non-negative, got -0.001"),
        ({"weight_decay": float("nan")}, ValueError, r"weight_decay must be non-negative, got nan"),
        ({"lr_milestones": (5, 2)}, ValueError, r"lr_milestones must be strictly increasing positive epochs, got \(5, 2\)"),
        ({"lr_milestones": (0,)}, ValueError, r"lr_milestones must be strictly increasing positive epochs, got \(0,\)"),
        ({"lr_milestones": (2.5,)}, TypeError, r"lr_milestones must be a list of ints \(epochs\), got \(2.5,\)"),
        ({"optimizer": "adamw"}, ValueError, r"optimizer must be one of \('adam', 'sgd'\), got 'adamw'"),
        ({"input_dropout": 1.0}, ValueError, r"input_dropout must be in \[0, 1\), got 1.0"),
        ({"output_dropout": -0.5}, ValueError, r"output_dropout must be in \[0, 1\), got -0.5"),
        ({"embedding_dropout": 1.2}, ValueError, r"embedding_dropout must be in \[0, 1\), got 1.2"),
        ({"adapt_dropout": "0.1"}, TypeError, r"adapt_dropout must be a float in \[0, 1\), got str"),
        ({"dynamic_decay": 1.5}, ValueError, r"dynamic_decay must be in \[0, 1\], got 1.5"),
        ({"ar_alpha": float("inf")}, ValueError, r"ar_alpha must be non-negative and finite, got inf"),
    ],
)
def test_language_model_arguments_are_refused_by_name_when_constructed(overrides, error, message):
    with pytest.raises(error, match=rf"LanguageModelingTask: {message}"):
        LanguageModelingTask(**(LM | overrides))


def test_settings_an_lstm_encoder_ignores_are_named_in_a_warning():
    with pytest.warns(UserWarning, match=r"encoder='lstm' has no adaptation model and ignores \{'adapt_size': 3, 'policy_layout': 'reference'\}"):
        LanguageModelingTask(**(LM | {"encoder": "lstm", "policy_layout": "reference"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LanguageModelingTask(**(LM | {"encoder": "lstm", "adapt_size": 100}))  # the defaults do not warn


@pytest.mark.parametrize(
    ("make", "text", "shown"),
    [
        (lambda path: CharCorpusDataModule(paths=path), "\n\n\n\n" * 50, r"\['\\n'\]"),
        (lambda path: WordCorpusDataModule(train_path=path, val_path=path, test_path=path), "\n" * 200, r"\['<eos>'\]"),
    ],
    ids=["char", "word"],
)
def test_a_corpus_with_nothing_to_model_is_refused(tmp_path, make, text, shown):
    path = tmp_path / "newlines.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"the corpus must hold at least 2 distinct tokens to model, got 1 \({shown}\) in \[.*newlines.txt"):
        make(str(path)).setup("fit")


def test_char_corpus_paths_may_be_path_objects(tmp_path):
    (tmp_path / "a.txt").write_text("abcab" * 40)
    data = CharCorpusDataModule(paths=tmp_path / "a.txt", batch_size=2)
    assert data.vocab_size == 3 and data.paths == [str(tmp_path / "a.txt")]
    with pytest.raises(TypeError, match=r"CharCorpusDataModule: paths must be a path \(str or os.PathLike\), got int \(3\)"):
        CharCorpusDataModule(paths=[3])


def write_csv(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_mistyped_labels_are_named_in_a_warning(tmp_path):
    rows = "".join(f"text {i},{label}\n" for i, label in enumerate(["positive", "negative"] * 6 + ["postive", "pos ", "pos"]))
    train = write_csv(tmp_path / "train.csv", "text,label\n" + rows)
    data = TextClassificationDataModule(train_path=train, val_path=train)
    with pytest.warns(UserWarning, match=r"labels seen fewer than 3 times: \{'pos': 1, 'pos ': 1, 'postive': 1\}; labels that differ only in case or surrounding whitespace: \[\['pos', 'pos '\]\]"):
        assert data.num_classes == 5


def test_a_repeated_label_column_is_refused(tmp_path):
    train = write_csv(tmp_path / "train.csv", "text,label,label\nfine,pos,neg\n")
    with pytest.raises(ValueError, match=r"the header of .*train.csv must name each column once, got \['label'\] repeated"):
        TextClassificationDataModule(train_path=train, val_path=train).num_classes


def test_a_file_that_is_not_utf8_is_named_with_its_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"text,label\nfine,pos\ncaf\xe9,neg\n")
    with pytest.raises(ValueError, match=r"every file must be UTF-8 text, got bytes that are not at .*train.csv:3"):
        TextClassificationDataModule(train_path=str(path), val_path=str(path)).num_classes


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_input_of_another_dtype_than_the_parameters_is_refused_outside_autocast(dtype):
    model = aLSTM(4, 6, 2)
    with pytest.raises(TypeError, match=rf"aLSTM: input dtype must be the parameters' dtype torch.float32 outside autocast, got {dtype}"):
        model(torch.randn(3, 2, 4, dtype=dtype))


def test_under_autocast_the_returned_state_is_accepted_by_the_next_call():
    model = aLSTM(4, 6, 2, num_layers=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, state = model(torch.randn(3, 2, 4, dtype=torch.bfloat16))
        output, _ = model(torch.randn(3, 2, 4, dtype=torch.bfloat16), state)
    assert torch.isfinite(output).all()
    _, state = model(torch.randn(3, 2, 4))
    model(torch.randn(3, 2, 4), state)  # and outside autocast, in the parameters' dtype


def test_a_state_reset_with_a_mask_of_another_length_is_refused():
    state = aLSTM(4, 6, 2).init_hidden(3)
    with pytest.raises(ValueError, match=r"AdaptiveState.reset: rows, a bool mask, must have batch_size=3 entries, got 2"):
        state.reset(torch.tensor([True, False]))
    with pytest.raises(ValueError, match=r"AdaptiveState.reset: rows must be indices in \[0, batch_size=3\), got range \[1, 5\]"):
        state.reset(torch.tensor([1, 5]))
    with pytest.raises(TypeError, match="rows must be a 1-d bool mask or integer index tensor"):
        state.reset([0])


def test_a_mid_epoch_resume_with_another_window_layout_is_refused_naming_what_differs():
    streams = torch.arange(80).view(40, 2)
    saved = ResumableWindowLoader(StreamWindows(streams, bptt=4), lambda: 3).state_dict()
    for other, named in [
        (StreamWindows(streams, bptt=6), "bptt 4 then, 6 now"),
        (StreamWindows(torch.arange(80).view(20, 4), bptt=4), r"streams \[40, 2\] then, \[20, 4\] now"),
        (StreamWindows(streams[:, :1], bptt=4, world_size=2), r"streams \[40, 2\] then, \[40, 1\] now; world_size 1 then, 2 now"),
    ]:
        with pytest.raises(ValueError, match=rf"must be resumed with the data layout it was saved with, got {named}"):
            ResumableWindowLoader(other, lambda: 0).load_state_dict(saved)
    # an end-of-epoch checkpoint (no window done) resumes with any layout
    ResumableWindowLoader(StreamWindows(streams, bptt=6), lambda: 0).load_state_dict({**saved, "windows_done": 0})


def test_a_language_model_resumed_mid_epoch_with_another_bptt_stops_naming_it(tmp_path):
    corpus = write_word_corpus(tmp_path / "corpus", num_words=400)

    def fit(bptt, **kwargs):
        seed_everything(0)
        data = WordCorpusDataModule(data_dir=str(corpus), batch_size=4, eval_batch_size=4, bptt=bptt)
        model = LanguageModelingTask(vocab_size=data.vocab_size, embedding_size=8, hidden_size=8, adapt_size=4,
                                     num_layers=1, bptt=bptt)
        trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                          reload_dataloaders_every_n_epochs=1, default_root_dir=tmp_path, max_epochs=1, **kwargs)
        return trainer, model, data

    steps = ModelCheckpoint(dirpath=tmp_path, filename="step-{step}", every_n_train_steps=3, save_top_k=-1)
    trainer, model, data = fit(10, callbacks=[steps])
    trainer.fit(model, data)
    trainer, model, data = fit(20, enable_checkpointing=False)
    with pytest.raises(ValueError, match=r"must be resumed with the data layout it was saved with, got bptt 10 then, 20 now"):
        trainer.fit(model, data, ckpt_path=tmp_path / "step-step=3.ckpt")
