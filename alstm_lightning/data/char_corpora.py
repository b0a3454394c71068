"""Character-level corpora: text files split into train / validation / test by fraction, Tiny Shakespeare."""

from __future__ import annotations

import os
from pathlib import Path

from ..checks import check_bool, check_fraction, check_path
from .download import Resource, download
from .language_modeling import LanguageModelingDataModule, TokenizedCorpus
from .vocab import Vocabulary

#: Tiny Shakespeare as distributed with char-rnn; the sha256 is that of the published file
#: (1,115,394 bytes).
TINY_SHAKESPEARE = Resource(
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
)


def split_by_fraction(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """Sizes of the contiguous train / validation / test parts of ``n`` tokens, in that order.

    Validation and test get ``int(n * fraction)`` tokens each; training gets the rest, first.
    """
    val, test = int(n * val_fraction), int(n * test_fraction)
    return n - val - test, val, test


class CharLevelDataModule(LanguageModelingDataModule):
    """Base of the character-level corpora: one text cut into train / validation / test by fraction.

    The text is the concatenation of :meth:`source_files` in order, read by :meth:`read_text`
    (UTF-8; ``\\r\\n`` read as ``\\n``). Its first ``1 - val_fraction - test_fraction`` is the
    training split, then validation, then test: contiguous parts, as in char-rnn. The vocabulary is
    every character of the whole text, most frequent first; no split ever meets an unknown
    character, so there is no ``<unk>``.

    Args:
        val_fraction: share of the characters for validation, in (0, 1).
        test_fraction: share of the characters for test, in (0, 1).
        **kwargs: ``batch_size``, ``eval_batch_size``, ``test_batch_size``, ``bptt``,
            ``variable_bptt``, ``seed`` and ``cache_dir`` of
            :class:`~alstm_lightning.data.language_modeling.LanguageModelingDataModule`.
    """

    level = "char"

    def __init__(self, val_fraction: float = 0.05, test_fraction: float = 0.05, **kwargs) -> None:
        super().__init__(**kwargs)
        owner = type(self).__name__
        check_fraction(owner, "val_fraction", val_fraction)
        check_fraction(owner, "test_fraction", test_fraction)
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(
                f"{owner}: val_fraction + test_fraction must be below 1 to leave training text, "
                f"got {val_fraction} + {test_fraction}"
            )
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction

    def read_text(self, path: Path) -> str:
        """The characters of one source file (UTF-8); override for other encodings."""
        return path.read_text(encoding="utf-8")

    def cache_options(self) -> dict[str, object]:
        return {**super().cache_options(), "val_fraction": self.val_fraction, "test_fraction": self.test_fraction}

    def tokenize(self, files: list[Path]) -> TokenizedCorpus:
        """Concatenate the files, build the character vocabulary and cut the ids by fraction."""
        text = "".join(self.read_text(path) for path in files)
        vocab = Vocabulary.build(text, level="char")
        ids = vocab.encode(text)
        return TokenizedCorpus(vocab, *ids.split(split_by_fraction(len(ids), self.val_fraction, self.test_fraction)))


class CharCorpusDataModule(CharLevelDataModule):
    """Character-level language modeling on any text file(s).

    See :class:`CharLevelDataModule` for the split and vocabulary and
    :class:`~alstm_lightning.data.language_modeling.LanguageModelingDataModule` for batches,
    windows, DDP sharding and the cache.

    Args:
        paths: the text file, or files read one after the other as a single text.
        **kwargs: ``val_fraction`` and ``test_fraction`` of :class:`CharLevelDataModule` and the
            arguments of :class:`~alstm_lightning.data.language_modeling.LanguageModelingDataModule`.

    Example:
        >>> data = CharCorpusDataModule(paths=["novel.txt"], batch_size=32, bptt=100)
        >>> data.setup("fit")
        >>> input, target = next(iter(data.train_dataloader()))   # (T, 32) character ids
    """

    def __init__(self, paths: str | list[str], **kwargs) -> None:
        super().__init__(**kwargs)
        owner = type(self).__name__
        given = [paths] if isinstance(paths, (str, os.PathLike)) else paths
        if not isinstance(given, (list, tuple)) or not given:
            raise TypeError(f"{owner}: paths must be a path or a non-empty list of paths, got {paths!r}")
        self.paths = [check_path(owner, "paths", path) for path in given]

    def source_files(self) -> list[Path]:
        """The files of ``paths``; raise ``FileNotFoundError`` naming the first missing one."""
        for path in self.paths:
            if not Path(path).is_file():
                raise FileNotFoundError(f"{type(self).__name__}: paths must be existing files, got {path!r}")
        return [Path(path) for path in self.paths]


class TinyShakespeareDataModule(CharLevelDataModule):
    """Tiny Shakespeare (Karpathy 2015): 1.1M characters of Shakespeare's plays, 65 characters.

    Reads ``input.txt`` in ``data_dir``; with ``download=True`` a missing file is fetched there
    from ``url`` and checked against the published sha256. The split is by fraction, as in
    :class:`CharLevelDataModule`.

    Args:
        data_dir: directory holding ``input.txt`` (and where it is downloaded to).
        download: fetch ``input.txt`` when it is missing.
        url: where to fetch it from (a mirror of the same file; its sha256 is always checked).
        **kwargs: ``val_fraction`` and ``test_fraction`` of :class:`CharLevelDataModule` and the
            arguments of :class:`~alstm_lightning.data.language_modeling.LanguageModelingDataModule`.
    """

    file_name = "input.txt"

    def __init__(self, data_dir: str, download: bool = False, url: str = TINY_SHAKESPEARE.url, **kwargs) -> None:
        super().__init__(**kwargs)
        check_bool(type(self).__name__, "download", download)
        self.data_dir = data_dir
        self.download = download
        self.url = url

    def fetch(self) -> None:
        """Download ``input.txt`` when ``download`` is set and it is missing."""
        if self.download and not (Path(self.data_dir) / self.file_name).is_file():
            download(TINY_SHAKESPEARE._replace(url=self.url), Path(self.data_dir) / self.file_name)

    def source_files(self) -> list[Path]:
        """``data_dir/input.txt``; raise ``FileNotFoundError`` when it is missing."""
        path = Path(self.data_dir) / self.file_name
        if not path.is_file():
            raise FileNotFoundError(
                f"{type(self).__name__}: data_dir must hold {self.file_name}, got none in {self.data_dir} "
                f"(pass download=True to fetch it)"
            )
        return [path]
