"""The offline default corpus: the running Python's own standard-library sources, read character by character."""

from __future__ import annotations

import sysconfig
import tokenize
from pathlib import Path

from ..checks import check_positive_int
from .char_corpora import CharLevelDataModule


def stdlib_sources(max_bytes: int, root: str | Path | None = None) -> list[Path]:
    """The top-level ``*.py`` modules of the standard library, by name, up to ``max_bytes`` in all.

    Files are taken in sorted name order while their total size stays within ``max_bytes``, so the
    choice is the same on every run of the same Python version.

    Args:
        max_bytes: most bytes of source to take.
        root: the standard-library directory; ``None`` asks the running interpreter
            (``sysconfig.get_paths()["stdlib"]``).

    Raises:
        FileNotFoundError: if ``root`` holds no ``*.py`` file within ``max_bytes`` (an interpreter
            shipped without sources, or a ``max_bytes`` below the first file's size).
    """
    check_positive_int("stdlib_sources", "max_bytes", max_bytes)
    root = Path(sysconfig.get_paths()["stdlib"] if root is None else root)
    chosen, total = [], 0
    for path in sorted(root.glob("*.py")):
        total += path.stat().st_size
        if total > max_bytes:
            break
        chosen.append(path)
    if not chosen:
        raise FileNotFoundError(
            f"stdlib_sources: the standard library at {root} must hold a *.py file of at most max_bytes={max_bytes} "
            f"bytes, got none"
        )
    return chosen


class PythonStdlibDataModule(CharLevelDataModule):
    """Character-level language modeling on Python source: the standard library of the running interpreter.

    Needs no download and no data files, so it runs offline on any machine with Python; the
    quickstart recipe uses it. The text is the top-level standard-library modules in name order,
    up to ``max_bytes`` (:func:`stdlib_sources`; about 2 MB and 70 files with the default on
    CPython 3.11), read with the encoding each file declares, and split by fraction as in
    :class:`~alstm_lightning.data.char_corpora.CharLevelDataModule`. The corpus is the same on every
    run of one Python version; other versions differ slightly.

    Args:
        max_bytes: most bytes of source to read.
        **kwargs: ``val_fraction`` and ``test_fraction`` of
            :class:`~alstm_lightning.data.char_corpora.CharLevelDataModule` and the arguments of
            :class:`~alstm_lightning.data.language_modeling.LanguageModelingDataModule`.

    Example:
        >>> data = PythonStdlibDataModule(batch_size=16, bptt=64)
        >>> vocab_size = data.vocab_size         # characters used by the chosen modules
        >>> data.setup("fit")
        >>> input, target = next(iter(data.train_dataloader()))   # (T, 16)
    """

    def __init__(self, max_bytes: int = 2_000_000, **kwargs) -> None:
        super().__init__(**kwargs)
        check_positive_int(type(self).__name__, "max_bytes", max_bytes)
        self.max_bytes = max_bytes

    def source_files(self) -> list[Path]:
        """The chosen standard-library modules (see :func:`stdlib_sources`)."""
        return stdlib_sources(self.max_bytes)

    def read_text(self, path: Path) -> str:
        """The source of one module, decoded as Python does (PEP 263 coding line, else UTF-8)."""
        with tokenize.open(path) as file:
            return file.read()
