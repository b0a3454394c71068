"""Word-level corpora: tokenisation, file lookup, unknown words, cache, downloads, loaders, WikiText-2."""

from __future__ import annotations

import hashlib
import os
import zipfile
from types import SimpleNamespace

import pytest
import torch

from alstm_lightning.data import (
    PennTreebankDataModule,
    Resource,
    WikiText2DataModule,
    WikiText103DataModule,
    WordCorpusDataModule,
    bptt_schedule,
    read_words,
)
from alstm_lightning.data import word_corpora

TRAIN = "a b c\nb c\n\nc d a c\n"
VALID = "c b\na\n"
TEST = "d d c\n"


def write_corpus(directory, names=("train.txt", "valid.txt", "test.txt"), texts=(TRAIN, VALID, TEST)):
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in zip(names, texts):
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def fake_trainer(rank=0, world_size=1, epoch=0, reload=1):
    return SimpleNamespace(
        global_rank=rank, world_size=world_size, current_epoch=epoch, reload_dataloaders_every_n_epochs=reload
    )


def test_read_words_ends_every_line_with_eos(tmp_path):
    path = tmp_path / "text.txt"
    path.write_bytes(b"a  b\r\n\n c\n")
    assert list(read_words(path)) == ["a", "b", "<eos>", "<eos>", "c", "<eos>"]


def test_vocabulary_from_train_and_ids_per_split(tmp_path):
    data = WordCorpusDataModule(data_dir=str(write_corpus(tmp_path)))
    vocab = data.vocab
    # Counts in TRAIN: c 4, <eos> 4, a 2, b 2, d 1; ties in order of first appearance (c before <eos>).
    assert vocab.itos == ["c", "<eos>", "a", "b", "d"]
    assert data.vocab_size == 5 and data.level == "word" and vocab.unk_token is None
    corpus = data.load_corpus()
    assert vocab.decode(corpus.train) == "a b c <eos> b c <eos> <eos> c d a c <eos>"
    assert vocab.decode(corpus.val) == "c b <eos> a <eos>"
    assert vocab.decode(corpus.test) == "d d c <eos>"


@pytest.mark.parametrize(
    "names",
    [
        ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"),
        ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"),
    ],
)
def test_published_file_names_are_found(tmp_path, names):
    data = WordCorpusDataModule(data_dir=str(write_corpus(tmp_path, names)))
    assert [path.name for path in data.source_files()] == list(names)
    assert data.load_corpus().test.numel() == 4


def test_explicit_paths_override_data_dir(tmp_path):
    directory = write_corpus(tmp_path / "corpus")
    other = tmp_path / "other-test.txt"
    other.write_text("a a\n")
    data = WordCorpusDataModule(data_dir=str(directory), test_path=str(other))
    assert data.source_files()[2] == other
    assert data.vocab.decode(data.load_corpus().test) == "a a <eos>"
    # Without data_dir every split is given by path.
    data = WordCorpusDataModule(
        train_path=str(directory / "train.txt"), val_path=str(directory / "valid.txt"), test_path=str(other)
    )
    assert data.load_corpus().val.numel() == 5


def test_unknown_words_error_names_file_and_option(tmp_path):
    directory = write_corpus(tmp_path, texts=(TRAIN, VALID, "a zz zz yy\n"))
    data = WordCorpusDataModule(data_dir=str(directory))
    with pytest.raises(ValueError, match=r"test file .* got 3 unknown words \(2 distinct, e.g. 'zz', 'yy'\)") as info:
        data.load_corpus()
    assert "test.txt" in str(info.value) and "unknown_words='unk'" in str(info.value)


def test_unknown_words_as_unk(tmp_path):
    directory = write_corpus(tmp_path, texts=(TRAIN, VALID, "a zz zz yy\n"))
    data = WordCorpusDataModule(data_dir=str(directory), unknown_words="unk")
    vocab = data.vocab
    assert vocab.itos[-1] == "<unk>" and vocab.unk_token == "<unk>"  # added: TRAIN never uses it
    assert vocab.decode(data.load_corpus().test) == "a <unk> <unk> <unk> <eos>"


def test_vocabulary_from_all_splits_knows_every_word(tmp_path):
    directory = write_corpus(tmp_path, texts=(TRAIN, VALID, "a zz zz yy\n"))
    data = WordCorpusDataModule(data_dir=str(directory), vocab_splits="all")
    # Counts over the three files: <eos> 7, c 5, a 4, b 3, zz 2, d 1, yy 1 (ties in order of first appearance).
    assert data.vocab.itos == ["<eos>", "c", "a", "b", "zz", "d", "yy"] and data.vocab.unk_token is None
    corpus = data.load_corpus()
    assert data.vocab.decode(corpus.train) == "a b c <eos> b c <eos> <eos> c d a c <eos>"
    assert data.vocab.decode(corpus.test) == "a zz zz yy <eos>"


def write_vocab(path, tokens):
    path.write_text("".join(f"{token}\n" for token in tokens), encoding="utf-8")
    return str(path)


def test_vocabulary_from_a_file_keeps_its_order(tmp_path):
    directory = write_corpus(tmp_path / "corpus")
    vocab_path = write_vocab(tmp_path / "vocab.txt", ["d", "<eos>", "a", "b", "c", "never-used"])
    data = WordCorpusDataModule(data_dir=str(directory), vocab_path=vocab_path)
    assert data.vocab.itos == ["d", "<eos>", "a", "b", "c", "never-used"] and data.vocab.unk_token is None
    assert data.source_files()[-1].name == "vocab.txt"
    corpus = data.load_corpus()
    assert corpus.test.tolist() == [0, 0, 4, 1]
    assert data.vocab.decode(corpus.val) == "c b <eos> a <eos>"


def test_vocabulary_file_missing_a_word_names_the_word_the_file_and_the_option(tmp_path):
    directory = write_corpus(tmp_path / "corpus")
    vocab_path = write_vocab(tmp_path / "vocab.txt", ["<eos>", "a", "b", "c"])  # no "d", used in train and test
    data = WordCorpusDataModule(data_dir=str(directory), vocab_path=vocab_path)
    with pytest.raises(ValueError, match=r"train file must be in the vocabulary of vocab_path='.*vocab\.txt', got 1 "
                       r"unknown words \(1 distinct, e.g. 'd'\) in .*train\.txt; add them to the file, or pass "
                       r"unknown_words='unk'"):
        data.load_corpus()
    # with unknown_words="unk", <unk> is appended and every split reads "d" as <unk>
    data = WordCorpusDataModule(data_dir=str(directory), vocab_path=vocab_path, unknown_words="unk")
    assert data.vocab.itos == ["<eos>", "a", "b", "c", "<unk>"] and data.vocab.unk_token == "<unk>"
    assert data.vocab.decode(data.load_corpus().test) == "<unk> <unk> c <eos>"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("a\n\nb\n", r"vocab_path must hold one token per line, got line 2 '' in '.*vocab\.txt'"),
        ("a\nb c\n", r"vocab_path must hold one token per line, got line 2 'b c' in '.*vocab\.txt'"),
        ("a\nb\na\n", r"vocab_path must list each token once, got 1 listed more than once \(e.g. \['a'\]\)"),
    ],
)
def test_malformed_vocabulary_file_is_rejected_naming_the_line(tmp_path, lines, message):
    (tmp_path / "vocab.txt").write_text(lines, encoding="utf-8")
    data = WordCorpusDataModule(data_dir=str(write_corpus(tmp_path / "corpus")), vocab_path=str(tmp_path / "vocab.txt"))
    with pytest.raises(ValueError, match=message):
        data.load_corpus()


def test_vocabulary_options_are_checked(tmp_path):
    directory = write_corpus(tmp_path / "corpus")
    vocab_path = write_vocab(tmp_path / "vocab.txt", ["a"])
    with pytest.raises(ValueError, match=r"vocab_splits must be one of .*got 'test'"):
        WordCorpusDataModule(data_dir=str(directory), vocab_splits="test")
    with pytest.raises(ValueError, match=r"vocab_splits must be 'train' when vocab_path is given \(.*\), got 'all'"):
        WordCorpusDataModule(data_dir=str(directory), vocab_path=vocab_path, vocab_splits="all")
    with pytest.raises(TypeError, match="vocab_path must be a str path or None, got PosixPath"):
        WordCorpusDataModule(data_dir=str(directory), vocab_path=tmp_path / "vocab.txt")
    with pytest.raises(FileNotFoundError, match="vocab_path must be an existing file, got '.*nope.txt'"):
        WordCorpusDataModule(data_dir=str(directory), vocab_path=str(tmp_path / "nope.txt")).vocab


def test_vocabulary_options_key_the_cache(tmp_path):
    directory, cache_dir = write_corpus(tmp_path / "corpus"), str(tmp_path / "cache")
    vocab_path = write_vocab(tmp_path / "vocab.txt", ["<eos>", "a", "b", "c", "d"])

    def key(**options):
        data = WordCorpusDataModule(data_dir=str(directory), cache_dir=cache_dir, **options)
        return data.cache_path(data.source_files())

    keys = [key(), key(vocab_splits="all"), key(vocab_path=vocab_path)]
    assert len(set(keys)) == 3
    assert "vocab_splits" in WordCorpusDataModule(data_dir=str(directory)).cache_options()
    write_vocab(tmp_path / "vocab.txt", ["<eos>", "d", "c", "b", "a", "e"])  # same path, new content
    assert key(vocab_path=vocab_path) != keys[2]


def test_missing_files_and_arguments(tmp_path):
    directory = write_corpus(tmp_path / "corpus", names=("train.txt", "valid.txt"))
    with pytest.raises(FileNotFoundError, match=r"data_dir must hold a test file named one of .*test\.txt"):
        WordCorpusDataModule(data_dir=str(directory)).vocab
    with pytest.raises(ValueError, match="val_path must be given when data_dir is None"):
        WordCorpusDataModule(train_path=str(directory / "train.txt")).vocab
    with pytest.raises(FileNotFoundError, match="train_path must be an existing file"):
        WordCorpusDataModule(data_dir=str(directory), train_path=str(tmp_path / "nope.txt")).vocab
    with pytest.raises(ValueError, match="unknown_words"):
        WordCorpusDataModule(data_dir=str(directory), unknown_words="skip")
    with pytest.raises(ValueError, match="download must be False"):
        WordCorpusDataModule(data_dir=str(directory), download=True)
    with pytest.raises(ValueError, match="data_dir must be given to download into"):
        PennTreebankDataModule(download=True)
    with pytest.raises(TypeError, match="batch_size"):
        WordCorpusDataModule(data_dir=str(directory), batch_size="20")
    with pytest.raises(TypeError, match="seed"):
        WordCorpusDataModule(data_dir=str(directory), seed=1.5)


def test_second_load_reads_the_cache_without_tokenising(tmp_path, monkeypatch):
    directory = write_corpus(tmp_path / "corpus")
    cache_dir = tmp_path / "cache"
    first = WordCorpusDataModule(data_dir=str(directory), cache_dir=str(cache_dir))
    corpus = first.load_corpus()
    (cache_file,) = cache_dir.iterdir()
    assert cache_file == first.cache_path(first.source_files())

    def no_tokenising(path):
        raise AssertionError(f"the source {path} was read again")

    monkeypatch.setattr(word_corpora, "read_words", no_tokenising)
    second = WordCorpusDataModule(data_dir=str(directory), cache_dir=str(cache_dir))
    cached = second.load_corpus()
    assert cached.vocab == corpus.vocab
    for split in ("train", "val", "test"):
        torch.testing.assert_close(getattr(cached, split), getattr(corpus, split))
    # A different option or a changed source file gets a different cache entry.
    other_option = WordCorpusDataModule(data_dir=str(directory), cache_dir=str(cache_dir), unknown_words="unk")
    assert other_option.cache_path(other_option.source_files()) != cache_file
    (directory / "test.txt").write_text("a b\n")
    assert second.cache_path(second.source_files()) != cache_file


def test_datamodule_loaders_without_a_trainer(tmp_path):
    text = "".join(f"w{i % 7} w{i % 3} w{i % 5}\n" for i in range(40))  # 160 tokens per split
    directory = write_corpus(tmp_path, texts=(text, text, text))
    data = WordCorpusDataModule(data_dir=str(directory), batch_size=4, eval_batch_size=2, test_batch_size=1, bptt=6)
    data.prepare_data()
    data.setup("fit")
    assert set(data.streams) == {"train", "val"}
    train = list(data.train_dataloader())
    assert [input.size(0) for input, _ in train] == bptt_schedule(40, 6, True, 0, 0)
    for input, target in train:
        assert input.dtype == target.dtype == torch.long and input.shape == target.shape and input.size(1) == 4
    val = list(data.val_dataloader())
    assert [input.size(0) for input, _ in val] == [6] * 13 + [1]  # 80 rows: 79 targets
    assert all(input.size(1) == 2 for input, _ in val)
    data.setup("test")
    test = list(data.test_dataloader())
    torch.testing.assert_close(torch.cat([input for input, _ in test]).view(-1), data.load_corpus().test[:-1])


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_ddp_ranks_get_disjoint_streams_and_equal_steps(tmp_path, world_size):
    text = "".join(f"w{i % 11} w{i % 4}\n" for i in range(200))  # 600 tokens
    directory = write_corpus(tmp_path, texts=(text, text, text))
    data = WordCorpusDataModule(data_dir=str(directory), batch_size=6, eval_batch_size=6, bptt=7, seed=5)
    data.setup("fit")
    ranks = []
    for rank in range(world_size):
        data.trainer = fake_trainer(rank, world_size, epoch=2)
        ranks.append(list(data.train_dataloader()))
    assert {len(batches) for batches in ranks} == {len(bptt_schedule(100, 7, True, 5, 2))}
    # Side by side, the ranks' batches are those of one process with the same global batch size.
    data.trainer = None
    single = data.train_dataloader()
    single.dataset.set_epoch(2)
    for step, (input, target) in enumerate(single):
        torch.testing.assert_close(torch.cat([batches[step][0] for batches in ranks], dim=1), input)
        torch.testing.assert_close(torch.cat([batches[step][1] for batches in ranks], dim=1), target)


def test_ddp_batch_size_must_divide(tmp_path):
    text = "w1 w2 w3\n" * 50
    data = WordCorpusDataModule(data_dir=str(write_corpus(tmp_path, texts=(text, text, text))), batch_size=4)
    data.setup("fit")
    data.trainer = fake_trainer(0, 3)
    with pytest.raises(ValueError, match="batch_size must be divisible by the world size 3, got 4"):
        data.train_dataloader()
    # evaluation splits unevenly (its metrics sum tokens over the ranks): 10 streams as 3, 3 and 4
    blocks = []
    for rank in range(3):
        data.trainer = fake_trainer(rank, 3)
        blocks.append(data.val_dataloader().dataset.streams)
    assert [b.size(1) for b in blocks] == [3, 3, 4]
    torch.testing.assert_close(torch.cat(blocks, dim=1), data.streams["val"])
    data.trainer = fake_trainer(0, 11)
    with pytest.raises(ValueError, match="eval_batch_size must be at least the world size 11 .*got 10"):
        data.val_dataloader()


def test_epoch_comes_from_the_trainer_and_a_missing_reload_warns(tmp_path):
    text = "w1 w2 w3 w4\n" * 100
    data = WordCorpusDataModule(data_dir=str(write_corpus(tmp_path, texts=(text, text, text))), batch_size=2, bptt=9)
    data.setup("fit")
    data.trainer = fake_trainer(epoch=3)
    assert data.train_dataloader().dataset.epoch == 3
    data.trainer = fake_trainer(epoch=0, reload=0)
    with pytest.warns(UserWarning, match="reload_dataloaders_every_n_epochs=0"):
        data.train_dataloader()


def test_split_too_small_and_setup_order(tmp_path):
    data = WordCorpusDataModule(data_dir=str(write_corpus(tmp_path)), batch_size=2, eval_batch_size=4)
    with pytest.raises(RuntimeError, match="setup"):
        data.train_dataloader()
    with pytest.raises(ValueError, match=r"val split must hold at least 2 \* eval_batch_size = 8 tokens, got 5"):
        data.setup("fit")


def test_hyperparameters_are_saved(tmp_path):
    data = WikiText2DataModule(data_dir=str(tmp_path), bptt=35, unknown_words="unk")
    assert data.hparams["bptt"] == 35 and data.hparams["unknown_words"] == "unk"
    assert data.hparams["data_dir"] == str(tmp_path) and data.hparams["batch_size"] == 20


class LocalWikiText(WikiText2DataModule):
    """WikiText-2's download path, fed a file:// archive the test writes."""

    archive_members = {
        "local.zip": {f"wikitext-2/wiki.{name}.tokens": f"wiki.{name}.tokens" for name in ("train", "valid", "test")}
    }


def write_archive(path):
    with zipfile.ZipFile(path, "w") as zip_file:
        for name, text in zip(("train", "valid", "test"), (TRAIN, VALID, TEST)):
            zip_file.writestr(f"wikitext-2/wiki.{name}.tokens", text)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_extracts_a_verified_archive(tmp_path, monkeypatch):
    archive = tmp_path / "published.zip"
    digest = write_archive(archive)
    monkeypatch.setattr(LocalWikiText, "resources", {"local.zip": Resource(archive.as_uri(), digest)})
    data_dir = tmp_path / "data"
    data = LocalWikiText(data_dir=str(data_dir), download=True)
    assert data.vocab.itos == ["c", "<eos>", "a", "b", "d"]
    assert sorted(os.listdir(data_dir)) == ["local.zip", "wiki.test.tokens", "wiki.train.tokens", "wiki.valid.tokens"]
    # Once the split files are there, nothing is fetched again (the URL no longer resolves).
    monkeypatch.setattr(LocalWikiText, "resources", {"local.zip": Resource((tmp_path / "gone.zip").as_uri(), digest)})
    LocalWikiText(data_dir=str(data_dir), download=True).prepare_data()


def test_download_checksum_mismatch_removes_the_archive(tmp_path, monkeypatch):
    archive = tmp_path / "published.zip"
    write_archive(archive)
    monkeypatch.setattr(LocalWikiText, "resources", {"local.zip": Resource(archive.as_uri(), "0" * 64)})
    data_dir = tmp_path / "data"
    with pytest.raises(ValueError, match="must be 0{64}, got [0-9a-f]{64}; the downloaded file was removed"):
        LocalWikiText(data_dir=str(data_dir), download=True).prepare_data()
    assert list(data_dir.iterdir()) == []


def test_published_checksums_are_well_formed():
    for module in (PennTreebankDataModule, WikiText2DataModule, WikiText103DataModule):
        for name, resource in module.resources.items():
            assert resource.algorithm == "md5" and len(resource.digest) == 32
            assert resource.url.startswith("https://") and resource.url.endswith(name)


def test_wikitext2_split_sizes(shared_data):
    """The tokenised WikiText-2 files, with <eos> per line, hold the published split sizes."""
    directory = shared_data / "wikitext-2-eval"
    valid, test = directory / "valid.txt", directory / "test.txt"
    # The training split is not in the shared corpora, so valid.txt stands in for it.
    data = WikiText2DataModule(train_path=str(valid), val_path=str(test), test_path=str(test), unknown_words="unk")
    corpus = data.load_corpus()
    assert corpus.train.numel() == 217_646  # validation size published with WikiText-2
    assert corpus.test.numel() == 245_569  # test size published with WikiText-2
    words = valid.read_text(encoding="utf-8").split()
    assert data.vocab_size == len(set(words) | {"<eos>"})  # valid.txt already uses <unk>: nothing added
    test_words = test.read_text(encoding="utf-8").split()
    unknown = sum(word not in data.vocab for word in test_words)
    unk_id = data.vocab.stoi["<unk>"]
    assert (corpus.test == unk_id).sum().item() == test_words.count("<unk>") + unknown
    with pytest.raises(ValueError, match=r"test\.txt; pass unknown_words='unk'"):
        WikiText2DataModule(train_path=str(valid), val_path=str(valid), test_path=str(test)).load_corpus()
