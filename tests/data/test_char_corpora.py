"""Character-level corpora: fraction splits, vocabulary, cache, Tiny Shakespeare download and loaders."""

from __future__ import annotations

import pytest
import torch

from alstm_lightning.data import CharCorpusDataModule, TinyShakespeareDataModule
from alstm_lightning.data.char_corpora import TINY_SHAKESPEARE, CharLevelDataModule, split_by_fraction

TEXT_A = "To be, or not to be:\nthat is the question.\n"
TEXT_B = "Whether 'tis nobler in the mind to suffer\r\nthe slings and arrows.\n"


def write(path, text):
    path.write_bytes(text.encode("utf-8"))
    return str(path)


def test_split_by_fraction():
    assert split_by_fraction(1000, 0.1, 0.05) == (850, 100, 50)
    assert split_by_fraction(99, 0.05, 0.05) == (91, 4, 4)


def test_files_are_one_text_cut_into_contiguous_splits(tmp_path):
    paths = [write(tmp_path / "a.txt", TEXT_A), write(tmp_path / "b.txt", TEXT_B)]
    data = CharCorpusDataModule(paths=paths, val_fraction=0.2, test_fraction=0.1)
    text = TEXT_A + TEXT_B.replace("\r\n", "\n")
    corpus = data.load_corpus()
    assert data.level == "char" and corpus.vocab.level == "char"
    assert set(corpus.vocab.itos) == set(text) and data.vocab_size == len(set(text))
    assert corpus.vocab.itos[0] == " "  # the most frequent character
    n = len(text)
    assert [corpus.train.numel(), corpus.val.numel(), corpus.test.numel()] == [
        n - int(0.2 * n) - int(0.1 * n), int(0.2 * n), int(0.1 * n)
    ]
    assert "".join(corpus.vocab.decode(ids) for ids in (corpus.train, corpus.val, corpus.test)) == text


def test_single_path_and_loaders(tmp_path):
    data = CharCorpusDataModule(
        paths=write(tmp_path / "a.txt", TEXT_A * 20), batch_size=4, eval_batch_size=2, test_batch_size=1, bptt=8
    )
    data.prepare_data()
    data.setup("fit")
    for input, target in data.train_dataloader():
        assert input.shape == target.shape and input.size(1) == 4 and input.size(0) >= 1
    val = list(data.val_dataloader())
    assert all(input.size(1) == 2 for input, _ in val) and val[0][0].size(0) == 8
    data.setup("test")
    test = list(data.test_dataloader())
    torch.testing.assert_close(torch.cat([target for _, target in test]).view(-1), data.load_corpus().test[1:])


def test_second_load_reads_the_cache(tmp_path, monkeypatch):
    path = write(tmp_path / "a.txt", TEXT_A * 5)
    first = CharCorpusDataModule(paths=path, cache_dir=str(tmp_path / "cache"))
    corpus = first.load_corpus()

    def no_reading(self, path):
        raise AssertionError(f"the source {path} was read again")

    monkeypatch.setattr(CharLevelDataModule, "read_text", no_reading)
    second = CharCorpusDataModule(paths=path, cache_dir=str(tmp_path / "cache"))
    assert second.vocab == corpus.vocab
    torch.testing.assert_close(second.load_corpus().val, corpus.val)
    other = CharCorpusDataModule(paths=path, cache_dir=str(tmp_path / "cache"), val_fraction=0.2)
    assert other.cache_path(other.source_files()) != first.cache_path(first.source_files())


def test_argument_errors(tmp_path):
    path = write(tmp_path / "a.txt", TEXT_A)
    with pytest.raises(ValueError, match="val_fraction"):
        CharCorpusDataModule(paths=path, val_fraction=0.0)
    with pytest.raises(TypeError, match="test_fraction"):
        CharCorpusDataModule(paths=path, test_fraction="0.1")
    with pytest.raises(ValueError, match=r"val_fraction \+ test_fraction must be below 1"):
        CharCorpusDataModule(paths=path, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(TypeError, match="paths"):
        CharCorpusDataModule(paths=[])
    with pytest.raises(FileNotFoundError, match="paths must be existing files, got .*missing.txt"):
        CharCorpusDataModule(paths=[path, str(tmp_path / "missing.txt")]).vocab
    with pytest.raises(FileNotFoundError, match="pass download=True"):
        TinyShakespeareDataModule(data_dir=str(tmp_path / "empty")).vocab
    with pytest.raises(TypeError, match="download"):
        TinyShakespeareDataModule(data_dir=str(tmp_path), download="yes")


def test_tiny_shakespeare_download_mismatch_removes_the_file(tmp_path):
    other = tmp_path / "not-shakespeare.txt"
    other.write_text("hello\n")
    data_dir = tmp_path / "data"
    data = TinyShakespeareDataModule(data_dir=str(data_dir), download=True, url=other.as_uri())
    with pytest.raises(ValueError, match=f"sha256 of .* must be {TINY_SHAKESPEARE.digest}, got .*removed"):
        data.prepare_data()
    assert list(data_dir.iterdir()) == []


def test_tiny_shakespeare(shared_data, tmp_path):
    """Download (from a file:// copy, against the published sha256) and read the real corpus."""
    source = shared_data / "tinyshakespeare" / "input.txt"
    data = TinyShakespeareDataModule(data_dir=str(tmp_path), download=True, url=source.as_uri(), bptt=50)
    data.prepare_data()
    assert (tmp_path / "input.txt").read_bytes() == source.read_bytes()
    corpus = data.load_corpus()
    assert data.vocab_size == 65  # the char-rnn character set
    assert sum(ids.numel() for ids in (corpus.train, corpus.val, corpus.test)) == 1_115_394  # ASCII: 1 char per byte
    assert data.vocab.decode(corpus.train[:14]) == "First Citizen:"
    data.setup("validate")
    input, target = next(iter(data.val_dataloader()))
    assert input.shape == (50, 10)
