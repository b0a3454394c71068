"""``TextClassificationDataModule``: classify the user's own CSV, JSONL or folder-per-label texts, in length buckets.

The pieces it joins are plain code, usable without Lightning: :func:`~.text_files.read_examples`
(the three layouts), :class:`~.tokenizers.TextEncoder` (tokenizer, lowercasing, truncation and the
:class:`~.vocab.Vocabulary` of the training texts), :class:`~.batching.BucketBatchSampler` (batches
of similar lengths) and :func:`~.batching.pad_collate` (the padded batch).
"""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path

import torch
from lightning import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, SequentialSampler

from ..checks import check_bool, check_positive_int
from .batching import BucketBatchSampler, EncodedTexts, pad_collate, pad_texts
from .loading import EpochRandomSampler, ResumableDataLoader, check_loader_settings, trainer_batches_done
from .text_files import Example, near_duplicate_labels, rare_labels, read_examples
from .tokenizers import TOKEN_PATTERN, TextEncoder, build_tokenizer
from .vocab import Vocabulary

#: Labels seen fewer times than this in the training split are reported (likely typos).
RARE_LABEL_COUNT = 3


class TextClassificationDataModule(LightningDataModule):
    """Classify texts read from the user's own files, in batches bucketed by length.

    Each split is a CSV / TSV file, a JSONL file or a folder of ``<label>/*.txt`` files (see
    :func:`~alstm_lightning.data.text_files.read_examples`). The vocabulary (``<pad>`` = 0,
    ``<unk>`` = 1, then tokens by frequency, :meth:`~alstm_lightning.data.vocab.Vocabulary.for_texts`)
    and the label set are taken from the training split; labels map to contiguous ids in sorted
    order, or in the order of ``labels`` when it is given. Both are read from the training file on
    first use of :attr:`vocab`, :attr:`vocab_size`, :attr:`num_classes`, :attr:`class_names` or
    :attr:`text_encoder`, so the CLI can link them to the task right after construction. Labels seen
    fewer than 3 times in training, or differing from another only in case or surrounding
    whitespace, are reported in a warning (likely typos: they still become classes).

    Batches are ``(inputs (B, T) long, lengths (B,) long, targets (B,) long)``, ``inputs`` padded
    with ``pad_index=0``; batches hold texts of similar lengths (:class:`~.batching.BucketBatchSampler`),
    and the training order of epoch ``e`` is drawn from ``(seed, e)`` alone (a resumed fit sees the
    orders of the uninterrupted one). ``predict`` reads ``predict_path`` (labels optional) and yields
    :class:`~alstm_lightning.data.batching.TextBatch` es that keep each text.

    Args:
        train_path: training file or folder; the vocabulary and labels are built on it.
        val_path: validation file or folder.
        test_path: test file or folder; ``None`` when there is no test split.
        predict_path: file or folder of texts to classify with ``predict``; ``None`` when unused.
        text_column: the CSV column or JSONL key holding the text.
        label_column: the CSV column or JSONL key holding the label.
        labels: the class names in id order; every label of every split must be among them.
            ``None``: the sorted labels of the training split.
        tokenizer: ``"whitespace"``, ``"regex"`` or the path of a Hugging Face
            ``tokenizer.json`` (extra ``alstm-lightning[tokenizers]``), see
            :func:`~alstm_lightning.data.tokenizers.build_tokenizer`.
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
    pad_index = 0
    objective = "classification"

    def __init__(
        self,
        train_path: str,
        val_path: str,
        test_path: str | None = None,
        predict_path: str | None = None,
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
        check_loader_settings(owner, batch_size, seed, num_workers)
        self.train_path = train_path
        self.val_path = val_path
        self.test_path = test_path
        self.predict_path = predict_path
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
        build_tokenizer(tokenizer, token_pattern)  # a bad tokenizer fails here, before any file is read
        self.datasets: dict[str, EncodedTexts] = {}
        self._encoder: TextEncoder | None = None
        self._train: list[Example] = []
        self._class_names: list[str] = []

    def _fit(self) -> None:
        """Read the training split and build the text encoder and the label ids, once."""
        if self._encoder is not None:
            return
        if not Path(self.train_path).exists():  # the validation file is read later, at setup
            raise FileNotFoundError(
                "TextClassificationDataModule: train_path must be an existing file or folder of your labelled texts, "
                f"got {self.train_path!r} (CLI: --data.init_args.train_path and --data.init_args.val_path)"
            )
        self._train = read_examples(self.train_path, self.text_column, self.label_column)
        labels = [example.label for example in self._train]
        self._class_names = list(self.labels) if self.labels is not None else sorted(set(labels))
        self._warn_about_suspicious_labels(labels)
        encoder = TextEncoder(self.tokenizer, self.token_pattern, self.lowercase, self.max_length)
        tokens = [self._tokens(encoder, example) for example in self._train]
        self._encoder = encoder.with_vocab(Vocabulary.for_texts(tokens, self.min_frequency, self.max_vocab_size))

    def _warn_about_suspicious_labels(self, labels: list[str]) -> None:
        rare = rare_labels(self._train, RARE_LABEL_COUNT)
        similar = near_duplicate_labels(labels)
        if rare or similar:
            parts = []
            if rare:
                parts.append(f"labels seen fewer than {RARE_LABEL_COUNT} times: {rare}")
            if similar:
                parts.append(f"labels that differ only in case or surrounding whitespace: {similar}")
            warnings.warn(
                f"TextClassificationDataModule: the training labels of {self.train_path} look mistyped ("
                + "; ".join(parts)
                + "); each still becomes a class: fix the file, or pass labels=[...] to refuse unknown ones",
                stacklevel=3,
            )

    def _ids(self, example: Example) -> Tensor:
        """``(L,)`` ids of one example's text, L >= 1."""
        return self.vocab.encode(self._tokens(self.text_encoder, example), unknown="unk")

    @staticmethod
    def _tokens(encoder: TextEncoder, example: Example) -> list[str]:
        tokens = encoder.tokens(example.text)
        if not tokens:
            raise ValueError(
                f"TextClassificationDataModule: texts must have at least one token, got none at {example.source} "
                f"(tokenizer={encoder.tokenizer!r})"
            )
        return tokens

    @property
    def text_encoder(self) -> TextEncoder:
        """Raw text to ids, as the model was trained: a checkpoint keeps it (see the task's ``text_encoder``)."""
        self._fit()
        return self._encoder

    @property
    def vocab(self) -> Vocabulary:
        """The vocabulary of the training split."""
        return self.text_encoder.vocab

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

    def encode(self, examples: list[Example]) -> EncodedTexts:
        """Token ids and class ids of labelled examples.

        Raises:
            ValueError: for a label outside :attr:`class_names`, naming it and its file and line, or a
                text without tokens.
        """
        label_to_index = self.label_to_index
        for example in examples:
            if example.label not in label_to_index:
                known = "the labels argument" if self.labels is not None else "the train labels"
                raise ValueError(
                    f"TextClassificationDataModule: label {example.label!r} at {example.source} must be one of "
                    f"{known} {self.class_names}"
                )
        ids = [self._ids(example) for example in examples]
        targets = torch.tensor([label_to_index[example.label] for example in examples], dtype=torch.long)
        return EncodedTexts(ids, targets)

    def setup(self, stage: str | None = None) -> None:
        self._fit()
        if stage == "predict":
            if self.predict_path is None:
                raise ValueError("TextClassificationDataModule: predict_path must be given to predict, got None")
            examples = read_examples(self.predict_path, self.text_column, self.label_column, labelled=False)
            self.datasets = {"predict": [(self._ids(example), example.text) for example in examples]}
            return
        paths = {"train": self.train_path, "val": self.val_path, "test": self.test_path}
        self.datasets = {
            split: self.encode(self._train if split == "train" else read_examples(path, self.text_column, self.label_column))
            for split, path in paths.items()
            if path is not None
        }

    def _loader(self, split: str) -> DataLoader:
        if split not in self.datasets:
            if split == "test" and self.test_path is None:
                raise RuntimeError("TextClassificationDataModule: test_path must be given to test, got None")
            raise RuntimeError(f"TextClassificationDataModule: setup() must run before the {split} dataloader is built")
        dataset = self.datasets[split]
        if split == "predict":
            return DataLoader(dataset, batch_size=self.batch_size, collate_fn=partial(pad_texts, pad_index=self.pad_index))
        if split == "train":
            sampler: Sampler[int] = EpochRandomSampler(dataset, self.seed)
            generator = sampler.generator
        else:
            generator = None
            sampler = SequentialSampler(dataset)
        batch_sampler = BucketBatchSampler(
            sampler, self.batch_size, False, dataset.lengths, self.batches_per_bucket, generator
        )
        options = dict(
            batch_sampler=batch_sampler,
            collate_fn=partial(pad_collate, pad_index=self.pad_index),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
        if split == "train" and self.trainer is not None:
            return ResumableDataLoader(dataset, batches_done=trainer_batches_done(self.trainer), **options)
        return DataLoader(dataset, **options)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")

