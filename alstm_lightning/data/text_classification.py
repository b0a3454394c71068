"""Text classification from the user's own CSV, JSONL or folder-per-label files, in length buckets.

Plain pieces, usable without Lightning: :func:`read_examples` (the three layouts),
:func:`build_tokenizer` (whitespace, regex or a Hugging Face ``tokenizer.json``),
:class:`Vocabulary` (built on the training texts), :class:`BucketBatchSampler` (batches of
similar lengths) and :func:`pad_collate` (the padded batch). :class:`TextClassificationDataModule`
joins them.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from itertools import islice
from pathlib import Path
from typing import NamedTuple

import torch
from lightning import LightningDataModule
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from ..layers.checks import check_bool, check_non_negative_int, check_positive_int
from .synthetic import SHUFFLE_STREAM, seeded_generator

#: Default ``token_pattern`` of the regex tokenizer: runs of word characters, or single punctuation marks.
TOKEN_PATTERN = r"\w+|[^\w\s]"

#: Built-in tokenizers; any other ``tokenizer`` value is the path of a Hugging Face ``tokenizer.json``.
BUILTIN_TOKENIZERS = ("whitespace", "regex")

#: Suffixes read as delimited text, with their delimiter.
DELIMITERS = {".csv": ",", ".tsv": "\t"}

#: Suffixes read as one JSON object per line.
JSONL_SUFFIXES = (".jsonl", ".ndjson")


class Example(NamedTuple):
    """One labelled text and where it came from (``file:line`` or a file path), for error messages."""

    text: str
    label: str
    source: str


def _example(text: object, label: object, source: str, text_column: str, label_column: str) -> Example:
    """Check one raw record's types and that its text and label are non-empty."""
    if not isinstance(text, str):
        raise TypeError(f"read_examples: {text_column!r} (text_column) at {source} must be a string, got {text!r}")
    if isinstance(label, bool) or not isinstance(label, (str, int)):
        raise TypeError(
            f"read_examples: {label_column!r} (label_column) at {source} must be a string or int, got {label!r}"
        )
    if not text.strip():
        raise ValueError(f"read_examples: texts must be non-empty, got an empty text at {source}")
    if not str(label).strip():
        raise ValueError(f"read_examples: labels must be non-empty, got an empty label at {source}")
    return Example(text, str(label), source)


def _missing(path: Path, kind: str, name: str, argument: str, present: Iterable[str], where: str = "") -> ValueError:
    return ValueError(
        f"read_examples: {path}{where} must have the {kind} {name!r} ({argument}), got {sorted(present)}"
    )


def _read_delimited(path: Path, delimiter: str, text_column: str, label_column: str) -> list[Example]:
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file, delimiter=delimiter)
        columns = reader.fieldnames or []
        for name, argument in ((text_column, "text_column"), (label_column, "label_column")):
            if name not in columns:
                raise _missing(path, "column", name, argument, columns)
        return [
            _example(row[text_column], row[label_column], f"{path}:{reader.line_num}", text_column, label_column)
            for row in reader
        ]


def _read_jsonl(path: Path, text_column: str, label_column: str) -> list[Example]:
    examples = []
    with path.open(encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            source = f"{path}:{line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"read_examples: each line must be a JSON object, got invalid JSON at {source} ({error})"
                ) from error
            if not isinstance(record, dict):
                raise ValueError(
                    f"read_examples: each line must be a JSON object, got {type(record).__name__} at {source}"
                )
            for name, argument in ((text_column, "text_column"), (label_column, "label_column")):
                if name not in record:
                    raise _missing(path, "key", name, argument, record, where=f":{line_number}")
            examples.append(_example(record[text_column], record[label_column], source, text_column, label_column))
    return examples


def _read_folder(path: Path) -> list[Example]:
    files = sorted(path.glob("*/*.txt"))
    if not files:
        raise ValueError(f"read_examples: folder {path} must hold <label>/*.txt files, got none")
    return [_example(file.read_text(encoding="utf-8"), file.parent.name, str(file), "text", "label") for file in files]


def read_examples(path: str | Path, text_column: str = "text", label_column: str = "label") -> list[Example]:
    """Read labelled texts from a CSV / TSV file, a JSONL file or a folder of ``<label>/*.txt``.

    The layout follows the path: a folder holds one sub-folder per label, each text a ``.txt``
    file (its label is the sub-folder's name); ``.csv`` / ``.tsv`` files have a header row
    naming the columns; ``.jsonl`` / ``.ndjson`` files hold one JSON object per line (blank lines
    are skipped; an int label is read as its decimal string).

    Args:
        path: the file or folder.
        text_column: the column (CSV) or key (JSONL) that holds the text.
        label_column: the column (CSV) or key (JSONL) that holds the label.

    Returns:
        The examples in file order (a folder: sorted by label, then file name).

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: for an unknown suffix, a missing column or key, an empty text or label,
            invalid JSON, an empty file or folder; the message names the file and line.
        TypeError: for a JSON text that is not a string or a label that is not a string or int.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"read_examples: path must be an existing file or folder, got {path}")
    if path.is_dir():
        examples = _read_folder(path)
    elif path.suffix in DELIMITERS:
        examples = _read_delimited(path, DELIMITERS[path.suffix], text_column, label_column)
    elif path.suffix in JSONL_SUFFIXES:
        examples = _read_jsonl(path, text_column, label_column)
    else:
        raise ValueError(
            f"read_examples: path must be a folder or end in one of {(*DELIMITERS, *JSONL_SUFFIXES)}, got {path}"
        )
    if not examples:
        raise ValueError(f"read_examples: {path} must hold at least one example, got none")
    return examples


class TokenizedExample(NamedTuple):
    """An :class:`Example` after tokenising: its tokens, label and source."""

    tokens: list[str]
    label: str
    source: str


class RegexTokenizer:
    """Split a text into the matches of ``pattern`` (by default words and single punctuation marks)."""

    def __init__(self, pattern: str = TOKEN_PATTERN) -> None:
        try:
            self.regex = re.compile(pattern)
        except re.error as error:
            raise ValueError(
                f"RegexTokenizer: token_pattern must be a valid regular expression, got {pattern!r} ({error})"
            ) from error

    def __call__(self, text: str) -> list[str]:
        return self.regex.findall(text)


class HuggingFaceTokenizer:
    """The token strings of a Hugging Face ``tokenizers`` model read from a ``tokenizer.json`` file.

    Only the split into tokens is used; ids come from the :class:`Vocabulary` built on the
    training texts, so every tokenizer is treated alike. Special tokens (``[CLS]`` ...) that the
    file's post-processor would add are left out.
    """

    def __init__(self, path: str | Path) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as error:
            raise ImportError(
                "HuggingFaceTokenizer: the tokenizers package must be installed to read a tokenizer.json, got "
                f"{type(error).__name__}: {error}; install the extra with pip install 'alstm-lightning[tokenizers]'"
            ) from error
        self.tokenizer = Tokenizer.from_file(str(path))

    def __call__(self, text: str) -> list[str]:
        return self.tokenizer.encode(text, add_special_tokens=False).tokens


def build_tokenizer(tokenizer: str = "whitespace", token_pattern: str = TOKEN_PATTERN) -> Callable[[str], list[str]]:
    """A callable ``text -> list of token strings``.

    Args:
        tokenizer: ``"whitespace"`` (``str.split``), ``"regex"`` (the matches of
            ``token_pattern``) or the path of a Hugging Face ``tokenizer.json`` (needs the extra
            ``alstm-lightning[tokenizers]``).
        token_pattern: the regular expression of the ``"regex"`` tokenizer.

    Raises:
        FileNotFoundError: when ``tokenizer`` is neither built in nor an existing file.
        ImportError: for a ``tokenizer.json`` when the ``tokenizers`` package is absent.
    """
    if tokenizer == "whitespace":
        return str.split
    if tokenizer == "regex":
        return RegexTokenizer(token_pattern)
    if not Path(tokenizer).is_file():
        raise FileNotFoundError(
            f"build_tokenizer: tokenizer must be one of {BUILTIN_TOKENIZERS} or the path of a tokenizer.json file, "
            f"got {tokenizer!r} (no such file)"
        )
    return HuggingFaceTokenizer(tokenizer)


class Vocabulary:
    """Token strings to ids: ``<pad>`` is 0, ``<unk>`` is 1, then the kept tokens.

    Args:
        itos: the token of each id, starting with :attr:`PAD` and :attr:`UNK`.

    Attributes:
        itos: ``list`` of token strings, indexed by id.
        stoi: ``dict`` from token string to id.
    """

    PAD = "<pad>"
    UNK = "<unk>"
    pad_index = 0
    unk_index = 1

    def __init__(self, itos: Sequence[str]) -> None:
        if list(itos[:2]) != [self.PAD, self.UNK]:
            raise ValueError(f"Vocabulary: itos must start with {[self.PAD, self.UNK]}, got {list(itos[:2])}")
        if len(set(itos)) != len(itos):
            raise ValueError("Vocabulary: itos must hold each token once, got duplicates")
        self.itos = list(itos)
        self.stoi = {token: index for index, token in enumerate(self.itos)}

    @classmethod
    def build(
        cls, texts: Iterable[Sequence[str]], min_frequency: int = 1, max_size: int | None = None
    ) -> Vocabulary:
        """Keep the tokens seen at least ``min_frequency`` times, most frequent first.

        Ties are broken alphabetically, so the ids do not depend on the order of the texts.

        Args:
            texts: tokenised texts (the training split).
            min_frequency: fewest occurrences for a token to get its own id.
            max_size: most ids, ``<pad>`` and ``<unk>`` included; ``None`` for no limit.
        """
        counts = Counter(token for tokens in texts for token in tokens)
        kept = sorted(
            (token for token, count in counts.items() if count >= min_frequency and token not in (cls.PAD, cls.UNK)),
            key=lambda token: (-counts[token], token),
        )
        if max_size is not None:
            kept = kept[: max_size - 2]
        return cls([cls.PAD, cls.UNK, *kept])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str]) -> Tensor:
        """``(len(tokens),)`` long ids; unknown tokens become ``unk_index``."""
        return torch.tensor([self.stoi.get(token, self.unk_index) for token in tokens], dtype=torch.long)

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """The tokens of ``ids`` joined by single spaces, padding left out."""
        return " ".join(self.itos[index] for index in torch.as_tensor(ids).tolist() if index != self.pad_index)


class EncodedTexts(Dataset):
    """Token-id sequences and their class ids; items are ``(ids (L,), target)``.

    Args:
        ids: one ``(L_i,)`` long tensor per text, each ``L_i >= 1``.
        targets: ``(N,)`` long class ids.
    """

    def __init__(self, ids: list[Tensor], targets: Tensor) -> None:
        self.ids = ids
        self.targets = targets
        self.lengths = [len(sequence) for sequence in ids]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.ids[index], self.targets[index]


def pad_collate(samples: Sequence[tuple[Tensor, Tensor]], pad_index: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Batch ``(ids, target)`` items as ``(inputs, lengths, targets)``, ``inputs`` padded at the end.

    Shape:
        inputs: ``(B, T)`` long, ``T`` the longest sequence, padded with ``pad_index``.
        lengths: ``(B,)`` long.
        targets: ``(B,)`` long.
    """
    ids, targets = zip(*samples)
    inputs = pad_sequence(list(ids), batch_first=True, padding_value=pad_index)
    lengths = torch.tensor([len(sequence) for sequence in ids], dtype=torch.long)
    return inputs, lengths, torch.stack(targets)


class BucketBatchSampler(BatchSampler):
    """Batches of similar lengths, so that little of each padded batch is padding.

    The indices of ``sampler`` are taken ``batch_size * batches_per_bucket`` at a time; each such
    bucket is sorted by length and cut into batches, whose order is shuffled by ``generator``
    when one is given. With a shuffling sampler every epoch forms new buckets;
    ``batches_per_bucket=1`` gives plain random batches. Like ``torch``'s ``BatchSampler`` it takes
    a ``sampler`` argument, so Lightning can put a ``DistributedSampler`` in its place under DDP
    (each rank then yields the same number of batches).

    Args:
        sampler: yields dataset indices.
        batch_size: indices per batch.
        drop_last: drop the last batch when it is short.
        lengths: the length of each dataset item, indexed like the dataset.
        batches_per_bucket: batches sorted together; larger buckets pad less but mix lengths less.
        generator: shuffles the batches within a bucket; ``None`` keeps them sorted by length.
    """

    def __init__(
        self,
        sampler: Sampler[int],
        batch_size: int,
        drop_last: bool,
        lengths: Sequence[int],
        batches_per_bucket: int = 50,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(sampler, batch_size, drop_last)
        check_positive_int("BucketBatchSampler", "batches_per_bucket", batches_per_bucket)
        self.lengths = lengths
        self.batches_per_bucket = batches_per_bucket
        self.generator = generator

    def __iter__(self) -> Iterator[list[int]]:
        indices = iter(self.sampler)
        while bucket := list(islice(indices, self.batch_size * self.batches_per_bucket)):
            bucket.sort(key=self.lengths.__getitem__)
            batches = [bucket[start : start + self.batch_size] for start in range(0, len(bucket), self.batch_size)]
            if self.drop_last and len(batches[-1]) < self.batch_size:
                batches.pop()
            if self.generator is not None:
                batches = [batches[k] for k in torch.randperm(len(batches), generator=self.generator).tolist()]
            yield from batches

    def __len__(self) -> int:
        # Buckets hold whole batches, so only the very last batch can be short, as in BatchSampler.
        size = len(self.sampler)
        return size // self.batch_size if self.drop_last else -(-size // self.batch_size)


class TextClassificationDataModule(LightningDataModule):
    """Classify texts read from the user's own files, in batches bucketed by length.

    Each split is a CSV / TSV file, a JSONL file or a folder of ``<label>/*.txt`` files (see
    :func:`read_examples`). The vocabulary (``<pad>`` = 0, ``<unk>`` = 1, then tokens by
    frequency) and the label set are taken from the training split; labels map to contiguous
    ids in sorted order, or in the order of ``labels`` when it is given. Both are read from the
    training file on first use of :attr:`vocab`, :attr:`vocab_size`, :attr:`num_classes` or
    :attr:`label_to_index`, so the CLI can link them to the task right after construction.

    Batches are ``(inputs (B, T) long, lengths (B,) long, targets (B,) long)``, ``inputs`` padded
    with ``pad_index=0``; batches hold texts of similar lengths (:class:`BucketBatchSampler`).

    Args:
        train_path: training file or folder; the vocabulary and labels are built on it.
        val_path: validation file or folder.
        test_path: test file or folder; ``None`` when there is no test split.
        text_column: the CSV column or JSONL key holding the text.
        label_column: the CSV column or JSONL key holding the label.
        labels: the class names in id order; every label of every split must be among them.
            ``None``: the sorted labels of the training split.
        tokenizer: ``"whitespace"``, ``"regex"`` or the path of a Hugging Face
            ``tokenizer.json`` (extra ``alstm-lightning[tokenizers]``), see :func:`build_tokenizer`.
        token_pattern: the regular expression of the ``"regex"`` tokenizer.
        lowercase: lowercase texts before tokenising.
        min_frequency: fewest occurrences in the training texts for a token to get an id; rarer
            tokens read as ``<unk>``.
        max_vocab_size: most ids, ``<pad>`` and ``<unk>`` included; ``None`` for no limit.
        max_length: keep only the first ``max_length`` tokens of each text; ``None`` keeps all.
        batches_per_bucket: batches sorted by length together; ``1`` for plain random batches.
        batch_size: texts per batch.
        seed: seeds the training order (buckets and batch order); a non-negative int.
        num_workers: DataLoader worker processes.
    """

    input_size = None
    pad_index = Vocabulary.pad_index
    task = "classification"

    def __init__(
        self,
        train_path: str,
        val_path: str,
        test_path: str | None = None,
        text_column: str = "text",
        label_column: str = "label",
        labels: list[str] | None = None,
        tokenizer: str = "whitespace",
        token_pattern: str = TOKEN_PATTERN,
        lowercase: bool = False,
        min_frequency: int = 1,
        max_vocab_size: int | None = None,
        max_length: int | None = None,
        batches_per_bucket: int = 50,
        batch_size: int = 32,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        owner = "TextClassificationDataModule"
        if labels is not None:
            if len(labels) == 0 or len(set(labels)) != len(labels):
                raise ValueError(f"{owner}: labels must be a non-empty list of distinct names, got {labels}")
            if not all(isinstance(label, str) for label in labels):
                raise TypeError(f"{owner}: labels must be strings, got {labels}")
        check_bool(owner, "lowercase", lowercase)
        check_positive_int(owner, "min_frequency", min_frequency)
        if max_vocab_size is not None:
            check_positive_int(owner, "max_vocab_size", max_vocab_size)
            if max_vocab_size < 3:
                raise ValueError(
                    f"{owner}: max_vocab_size must be at least 3 (<pad>, <unk> and a token), got {max_vocab_size}"
                )
        if max_length is not None:
            check_positive_int(owner, "max_length", max_length)
        check_positive_int(owner, "batches_per_bucket", batches_per_bucket)
        check_positive_int(owner, "batch_size", batch_size)
        check_non_negative_int(owner, "seed", seed)
        check_non_negative_int(owner, "num_workers", num_workers)
        self.train_path = train_path
        self.val_path = val_path
        self.test_path = test_path
        self.text_column = text_column
        self.label_column = label_column
        self.labels = labels
        self.tokenizer = tokenizer
        self.token_pattern = token_pattern
        self.lowercase = lowercase
        self.min_frequency = min_frequency
        self.max_vocab_size = max_vocab_size
        self.max_length = max_length
        self.batches_per_bucket = batches_per_bucket
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.tokenize = build_tokenizer(tokenizer, token_pattern)
        self.datasets: dict[str, EncodedTexts] = {}
        self._train: list[TokenizedExample] | None = None
        self._vocab: Vocabulary | None = None
        self._class_names: list[str] = []

    def tokens(self, example: Example) -> list[str]:
        """The tokens of one example: lowercased if asked, tokenised, cut to ``max_length``."""
        text = example.text.lower() if self.lowercase else example.text
        tokens = self.tokenize(text)[: self.max_length]
        if not tokens:
            raise ValueError(
                f"TextClassificationDataModule: texts must have at least one token, got none at {example.source} "
                f"(tokenizer={self.tokenizer!r})"
            )
        return tokens

    def _read(self, path: str) -> list[TokenizedExample]:
        return [
            TokenizedExample(self.tokens(example), example.label, example.source)
            for example in read_examples(path, self.text_column, self.label_column)
        ]

    def _fit(self) -> None:
        """Read the training split and build the vocabulary and the label ids, once."""
        if self._vocab is not None:
            return
        self._train = self._read(self.train_path)
        self._class_names = list(self.labels) if self.labels is not None else sorted({e.label for e in self._train})
        self._vocab = Vocabulary.build((e.tokens for e in self._train), self.min_frequency, self.max_vocab_size)

    @property
    def vocab(self) -> Vocabulary:
        """The vocabulary of the training split."""
        self._fit()
        return self._vocab

    @property
    def vocab_size(self) -> int:
        """Ids in the vocabulary, ``<pad>`` and ``<unk>`` included."""
        return len(self.vocab)

    @property
    def class_names(self) -> list[str]:
        """The label of each class id: ``labels``, else the sorted labels of the training split."""
        self._fit()
        return self._class_names

    @property
    def label_to_index(self) -> dict[str, int]:
        """The class id of each label."""
        return {label: index for index, label in enumerate(self.class_names)}

    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(class_names)``."""
        return len(self.class_names)

    def encode(self, examples: Sequence[TokenizedExample]) -> EncodedTexts:
        """Token ids and class ids of tokenised examples.

        Raises:
            ValueError: for a label outside :attr:`class_names`, naming it and its file and line.
        """
        label_to_index = self.label_to_index
        for example in examples:
            if example.label not in label_to_index:
                known = "the labels argument" if self.labels is not None else "the train labels"
                raise ValueError(
                    f"TextClassificationDataModule: label {example.label!r} at {example.source} must be one of "
                    f"{known} {self.class_names}"
                )
        ids = [self.vocab.encode(example.tokens) for example in examples]
        targets = torch.tensor([label_to_index[example.label] for example in examples], dtype=torch.long)
        return EncodedTexts(ids, targets)

    def setup(self, stage: str | None = None) -> None:
        self._fit()
        paths = {"train": self.train_path, "val": self.val_path, "test": self.test_path}
        self.datasets = {
            split: self.encode(self._train if split == "train" else self._read(path))
            for split, path in paths.items()
            if path is not None
        }

    def _loader(self, split: str) -> DataLoader:
        if split not in self.datasets:
            if split == "test" and self.test_path is None:
                raise RuntimeError("TextClassificationDataModule: test_path must be given to test, got None")
            raise RuntimeError(f"TextClassificationDataModule: setup() must run before the {split} dataloader is built")
        dataset = self.datasets[split]
        if split == "train":
            generator = seeded_generator(self.seed, SHUFFLE_STREAM)
            sampler: Sampler[int] = RandomSampler(dataset, generator=generator)
        else:
            generator = None
            sampler = SequentialSampler(dataset)
        batch_sampler = BucketBatchSampler(
            sampler, self.batch_size, False, dataset.lengths, self.batches_per_bucket, generator
        )
        return DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            collate_fn=partial(pad_collate, pad_index=self.pad_index),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
