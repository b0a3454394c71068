"""Text classification data: the three file layouts round-trip, the vocabulary, bucketing, every error."""

from __future__ import annotations

import csv
import json
import random
import sys
import types
from pathlib import Path

import pytest
import torch
from torch.utils.data import RandomSampler, SequentialSampler

from alstm_lightning.data import (
    BucketBatchSampler,
    EncodedTexts,
    TextClassificationDataModule,
    Vocabulary,
    build_tokenizer,
    pad_collate,
    read_examples,
)

TRAIN = [
    ("the film was good", "pos"),
    ("a bad , bad plot", "neg"),
    ("good acting and a good plot", "pos"),
    ("boring", "neg"),
    ("so so", "meh"),
]
VAL = [("good plot", "pos"), ("bad film", "neg")]


def write_csv(path: Path, rows, header=("text", "label")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows, keys=("text", "label")) -> Path:
    path.write_text("".join(json.dumps(dict(zip(keys, row))) + "\n" for row in rows), encoding="utf-8")
    return path


def write_folder(path: Path, rows) -> Path:
    for index, (text, label) in enumerate(rows):
        (path / label).mkdir(parents=True, exist_ok=True)
        (path / label / f"{index:03d}.txt").write_text(text, encoding="utf-8")
    return path


WRITERS = {"csv": (write_csv, ".csv"), "jsonl": (write_jsonl, ".jsonl"), "folder": (write_folder, "")}


def write(layout: str, path: Path, rows) -> str:
    writer, suffix = WRITERS[layout]
    return str(writer(path.with_name(path.name + suffix), rows))


def make(tmp_path: Path, train=TRAIN, val=VAL, test=None, layout="csv", **kwargs) -> TextClassificationDataModule:
    datamodule = TextClassificationDataModule(
        train_path=write(layout, tmp_path / "train", train),
        val_path=write(layout, tmp_path / "val", val),
        test_path=None if test is None else write(layout, tmp_path / "test", test),
        **kwargs,
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def decoded(datamodule: TextClassificationDataModule, loader) -> list[tuple[str, str]]:
    pairs = []
    for inputs, lengths, targets in loader:
        for ids, length, target in zip(inputs, lengths, targets):
            assert bool((ids[length:] == datamodule.pad_index).all()) and bool((ids[:length] != 0).all())
            pairs.append((datamodule.vocab.decode(ids), datamodule.class_names[target]))
    return sorted(pairs)


@pytest.mark.parametrize("layout", WRITERS)
def test_files_round_trip_through_the_loaders(tmp_path, layout):
    datamodule = make(tmp_path, test=VAL, layout=layout, batch_size=2)
    assert datamodule.class_names == ["meh", "neg", "pos"]
    assert datamodule.label_to_index == {"meh": 0, "neg": 1, "pos": 2}
    assert (datamodule.num_classes, datamodule.input_size, datamodule.pad_index) == (3, None, 0)
    assert decoded(datamodule, datamodule.train_dataloader()) == sorted(TRAIN)
    assert decoded(datamodule, datamodule.val_dataloader()) == sorted(VAL)
    assert decoded(datamodule, datamodule.test_dataloader()) == sorted(VAL)
    inputs, lengths, targets = next(iter(datamodule.train_dataloader()))
    assert inputs.dtype == lengths.dtype == targets.dtype == torch.long
    assert inputs.shape == (2, int(lengths.max())) and targets.shape == (2,)


def test_contract_attributes_are_read_from_train_right_after_init(tmp_path):
    datamodule = TextClassificationDataModule(
        train_path=write_csv(tmp_path / "train.csv", TRAIN), val_path=str(tmp_path / "later.csv")
    )
    tokens = {token for text, _ in TRAIN for token in text.split()}
    assert datamodule.vocab_size == len(tokens) + 2  # <pad>, <unk>
    assert datamodule.num_classes == 3 and datamodule.objective == "classification"


def test_explicit_labels_fix_the_order(tmp_path):
    datamodule = make(tmp_path, labels=["pos", "neg", "meh"])
    assert datamodule.label_to_index == {"pos": 0, "neg": 1, "meh": 2}
    targets = torch.cat([batch[2] for batch in datamodule.val_dataloader()])
    assert sorted(targets.tolist()) == [0, 1]


def test_vocabulary_frequency_cutoff_size_limit_and_unknown_tokens(tmp_path):
    datamodule = make(tmp_path, min_frequency=2)
    # good x3; a, bad, plot, so x2; ties broken alphabetically; the rest once.
    assert datamodule.vocab.itos == ["<pad>", "<unk>", "good", "a", "bad", "plot", "so"]
    limited = Vocabulary.for_texts([text.split() for text, _ in TRAIN], max_size=4)
    assert limited.itos == ["<pad>", "<unk>", "good", "a"]
    ids = datamodule.vocab.encode("the good film".split(), unknown="unk")
    assert ids.tolist() == [1, 2, 1]
    assert datamodule.vocab.decode(torch.tensor([2, 1, 0, 0])) == "good <unk>"


def test_vocabulary_rejects_repeated_tokens_and_keeps_pad_and_unk_first():
    with pytest.raises(ValueError, match=r"itos must hold each token once"):
        Vocabulary(["<pad>", "<unk>", "a", "a"])
    vocab = Vocabulary.for_texts([["b", "a", "b"]])
    assert vocab.itos[:2] == ["<pad>", "<unk>"] and vocab.pad_index == 0 and vocab.stoi["<unk>"] == 1


def test_regex_tokenizer_lowercase_and_truncation(tmp_path):
    rows = [("Good, GOOD film!", "pos"), ("Bad.", "neg")]
    datamodule = make(tmp_path, train=rows, val=rows, tokenizer="regex", lowercase=True, max_length=3)
    assert decoded(datamodule, datamodule.val_dataloader()) == [("bad .", "neg"), ("good , good", "pos")]
    assert build_tokenizer("regex", r"[a-z]+")("ab1cd") == ["ab", "cd"]


def padding_per_epoch(datamodule: TextClassificationDataModule) -> tuple[int, list[int]]:
    padded, seen = 0, []
    for inputs, lengths, targets in datamodule.train_dataloader():
        padded += inputs.numel() - int(lengths.sum())
        seen += lengths.tolist()
    return padded, sorted(seen)


def test_length_buckets_pad_far_less_than_random_batches(tmp_path):
    rng = random.Random(0)
    rows = [(" ".join(["w"] * rng.randint(1, 60)), "x") for _ in range(400)]
    bucketed, lengths = padding_per_epoch(make(tmp_path, rows, rows[:5], batches_per_bucket=20, batch_size=8))
    shuffled, same = padding_per_epoch(make(tmp_path, rows, rows[:5], batches_per_bucket=1, batch_size=8))
    assert lengths == same == sorted(len(text.split()) for text, _ in rows)  # every text once per epoch
    assert bucketed < 0.2 * shuffled


def test_bucket_batch_sampler_sorts_within_buckets_and_counts_batches():
    lengths = [5, 1, 4, 2, 3, 9, 7]
    sampler = BucketBatchSampler(SequentialSampler(lengths), 2, False, lengths, batches_per_bucket=2)
    # Buckets of 4 indices, each sorted by length.
    assert list(sampler) == [[1, 3], [2, 0], [4, 6], [5]] and len(sampler) == 4
    dropping = BucketBatchSampler(SequentialSampler(lengths), 2, True, lengths, batches_per_bucket=2)
    assert list(dropping) == [[1, 3], [2, 0], [4, 6]] and len(dropping) == 3
    shuffled = BucketBatchSampler(
        RandomSampler(lengths, generator=torch.Generator().manual_seed(0)),
        2,
        False,
        lengths,
        generator=torch.Generator().manual_seed(1),
    )
    assert sorted(sum(list(shuffled), [])) == list(range(7))


def test_pad_collate_pads_at_the_end():
    dataset = EncodedTexts([torch.tensor([3, 4, 5]), torch.tensor([6])], torch.tensor([1, 0]))
    inputs, lengths, targets = pad_collate([dataset[0], dataset[1]], pad_index=0)
    assert inputs.tolist() == [[3, 4, 5], [6, 0, 0]]
    assert lengths.tolist() == [3, 1] and targets.tolist() == [1, 0]


def test_missing_tokenizers_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    path = tmp_path / "tokenizer.json"
    path.write_text("{}")
    with pytest.raises(ImportError, match=r"alstm-lightning\[tokenizers\]"):
        build_tokenizer(str(path))


def test_hugging_face_tokenizer_supplies_the_tokens(tmp_path, monkeypatch):
    class FakeTokenizer:
        """Stands in for tokenizers.Tokenizer: splits on spaces and marks word starts, like a subword model."""

        @classmethod
        def from_str(cls, json_text: str) -> FakeTokenizer:
            assert json_text == '{"model": "fake"}', "the tokenizer is built from the file's text"
            return cls()

        def encode(self, text: str, add_special_tokens: bool = True) -> types.SimpleNamespace:
            assert add_special_tokens is False
            return types.SimpleNamespace(tokens=["_" + word for word in text.split()])

    monkeypatch.setitem(sys.modules, "tokenizers", types.SimpleNamespace(Tokenizer=FakeTokenizer))
    (tmp_path / "tokenizer.json").write_text('{"model": "fake"}')
    datamodule = make(tmp_path, tokenizer=str(tmp_path / "tokenizer.json"))
    assert decoded(datamodule, datamodule.val_dataloader()) == [("_bad _film", "neg"), ("_good _plot", "pos")]


@pytest.mark.parametrize("layout", ["csv", "jsonl"])
@pytest.mark.parametrize("missing", ["text", "label"])
def test_missing_column_raises_naming_it_and_the_file(tmp_path, layout, missing):
    header = ("body", "label") if missing == "text" else ("text", "category")
    writer = write_csv if layout == "csv" else write_jsonl
    path = writer(tmp_path / f"train.{layout}", TRAIN, header)
    with pytest.raises(ValueError, match=rf"train\.{layout}.*'{missing}' \({missing}_column\)"):
        read_examples(path)
    assert len(read_examples(path, text_column=header[0], label_column=header[1])) == len(TRAIN)


@pytest.mark.parametrize(
    ("labels", "match"),
    [(None, r"'meh'.*val\.csv:3.*train labels"), (["pos", "neg"], r"'meh'.*train\.csv:6.*labels argument")],
)
def test_unknown_label_raises_naming_label_and_file(tmp_path, labels, match):
    train = [row for row in TRAIN if row[1] != "meh"] if labels is None else TRAIN
    with pytest.raises(ValueError, match=match):
        make(tmp_path, train=train, val=[("good", "pos"), ("so so", "meh")], labels=labels)


@pytest.mark.parametrize("layout", WRITERS)
def test_empty_text_raises_naming_the_file(tmp_path, layout):
    name = "val" + WRITERS[layout][1]
    with pytest.raises(ValueError, match=rf"empty text at .*{name}"):
        make(tmp_path, val=[("good", "pos"), ("  ", "neg")], layout=layout)


def test_text_without_tokens_raises(tmp_path):
    with pytest.raises(ValueError, match=r"at least one token.*train\.csv:2"):
        make(tmp_path, train=[("!!!", "pos")], tokenizer="regex", token_pattern=r"\w+")


@pytest.mark.parametrize(
    ("content", "error", "match"),
    [
        ("{not json\n", ValueError, r"JSON object, got invalid JSON at .*train\.jsonl:1"),
        ("[1, 2]\n", ValueError, r"JSON object, got list at .*train\.jsonl:1"),
        ('{"text": 3, "label": "a"}\n', TypeError, "text_column"),
        ('{"text": "x", "label": 1.5}\n', TypeError, "label_column"),
        ("\n", ValueError, "at least one example"),
    ],
)
def test_bad_jsonl_raises(tmp_path, content, error, match):
    path = tmp_path / "train.jsonl"
    path.write_text(content)
    with pytest.raises(error, match=match):
        read_examples(path)


def test_jsonl_int_labels_read_as_strings(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "x", "label": 1}\n\n{"text": "y", "label": 0}\n')
    assert [(e.label, e.source.endswith(":3")) for e in read_examples(path)] == [("1", False), ("0", True)]


def test_missing_and_unreadable_paths_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        read_examples(tmp_path / "nowhere.csv")
    (tmp_path / "data.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"data\.txt"):
        read_examples(tmp_path / "data.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty must hold <label>/\*\.txt"):
        read_examples(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="tokenizer.*missing.json"):
        build_tokenizer(str(tmp_path / "missing.json"))


def test_test_loader_without_test_path_raises(tmp_path):
    with pytest.raises(RuntimeError, match="test_path"):
        make(tmp_path).test_dataloader()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"labels": ["a", "a"]}, ValueError, "labels"),
        ({"labels": []}, ValueError, "labels"),
        ({"labels": ["a", 1]}, TypeError, "labels"),
        ({"min_frequency": 0}, ValueError, "min_frequency"),
        ({"max_vocab_size": 2}, ValueError, "max_vocab_size"),
        ({"max_length": 0}, ValueError, "max_length"),
        ({"batches_per_bucket": 0}, ValueError, "batches_per_bucket"),
        ({"lowercase": "yes"}, TypeError, "lowercase"),
        ({"tokenizer": "regex", "token_pattern": "("}, ValueError, "token_pattern"),
        ({"seed": -1}, ValueError, "seed"),
    ],
)
def test_invalid_arguments_raise(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        TextClassificationDataModule(train_path=str(tmp_path / "t.csv"), val_path=str(tmp_path / "v.csv"), **kwargs)
