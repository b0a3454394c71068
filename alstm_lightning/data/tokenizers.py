"""Tokenizers of raw text (whitespace, regex, a Hugging Face ``tokenizer.json``) and the ``TextEncoder`` they make.

A :class:`TextEncoder` is everything needed to turn a raw text into the ids a classifier was trained
on: the tokenizer's settings, lowercasing, truncation and the vocabulary. Its :meth:`~TextEncoder.to_dict`
is plain data (a Hugging Face tokenizer is kept as its JSON text), so a checkpoint that holds it
encodes new text on any machine, without the training files.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor

from ..checks import check_bool, check_positive_int
from .vocab import Vocabulary

#: Default ``token_pattern`` of the regex tokenizer: runs of word characters, or single punctuation marks.
TOKEN_PATTERN = r"\w+|[^\w\s]"

#: Built-in tokenizers; any other ``tokenizer`` value is the path of a Hugging Face ``tokenizer.json``.
BUILTIN_TOKENIZERS = ("whitespace", "regex")


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
    """The token strings of a Hugging Face ``tokenizers`` model, from a ``tokenizer.json`` file or its text.

    Only the split into tokens is used; ids come from the :class:`~alstm_lightning.data.vocab.Vocabulary`
    built on the training texts, so every tokenizer is treated alike. Special tokens (``[CLS]`` ...)
    that the model's post-processor would add are left out.

    Args:
        source: the path of a ``tokenizer.json`` file.
        json_text: the content of such a file, instead of ``source``.
    """

    def __init__(self, source: str | Path | None = None, json_text: str | None = None) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as error:
            raise ImportError(
                "HuggingFaceTokenizer: the tokenizers package must be installed to read a tokenizer.json, got "
                f"{type(error).__name__}: {error}; install the extra with pip install 'alstm-lightning[tokenizers]'"
            ) from error
        self.json_text = Path(source).read_text(encoding="utf-8") if json_text is None else json_text
        self.tokenizer = Tokenizer.from_str(self.json_text)

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


class TextEncoder:
    """Raw text to token ids: lowercase (optional), tokenize, keep the first ``max_length`` tokens, look up.

    Args:
        tokenizer: ``"whitespace"``, ``"regex"`` or the path of a ``tokenizer.json`` (see :func:`build_tokenizer`).
        token_pattern: the regular expression of the ``"regex"`` tokenizer.
        lowercase: lowercase texts before tokenising.
        max_length: keep only the first ``max_length`` tokens of each text; ``None`` keeps all.
        vocab: the vocabulary (built on the training texts, see :meth:`with_vocab`); unknown tokens
            read as its ``<unk>``. ``None``: :meth:`tokens` works, :meth:`encode` does not yet.
    """

    def __init__(
        self,
        tokenizer: str = "whitespace",
        token_pattern: str = TOKEN_PATTERN,
        lowercase: bool = False,
        max_length: int | None = None,
        vocab: Vocabulary | None = None,
    ) -> None:
        check_bool("TextEncoder", "lowercase", lowercase)
        if max_length is not None:
            check_positive_int("TextEncoder", "max_length", max_length)
        self.tokenizer = tokenizer
        self.token_pattern = token_pattern
        self.lowercase = lowercase
        self.max_length = max_length
        self.vocab = vocab
        self._tokenize = build_tokenizer(tokenizer, token_pattern)

    def with_vocab(self, vocab: Vocabulary) -> TextEncoder:
        """This encoder's settings with ``vocab``."""
        encoder = copy.copy(self)
        encoder.vocab = vocab
        return encoder

    def tokens(self, text: str) -> list[str]:
        """The tokens of one text, lowercased if asked, cut to ``max_length`` (possibly none)."""
        return self._tokenize(text.lower() if self.lowercase else text)[: self.max_length]

    def encode(self, text: str) -> Tensor:
        """``(L,)`` long ids of one text (L may be 0 when the tokenizer finds no token).

        Raises:
            RuntimeError: if the encoder has no vocabulary yet.
        """
        if self.vocab is None:
            raise RuntimeError("TextEncoder.encode: the encoder must have a vocabulary (with_vocab), got None")
        return self.vocab.encode(self.tokens(text), unknown="unk")

    def to_dict(self) -> dict[str, Any]:
        """Plain data: the vocabulary and the settings; a ``tokenizer.json`` is kept as its text."""
        hugging_face = self.tokenizer not in BUILTIN_TOKENIZERS
        return {
            "vocab": None if self.vocab is None else self.vocab.to_dict(),
            "tokenizer": "tokenizer.json" if hugging_face else self.tokenizer,
            "tokenizer_json": self._tokenize.json_text if hugging_face else None,
            "token_pattern": self.token_pattern,
            "lowercase": self.lowercase,
            "max_length": self.max_length,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TextEncoder:
        """Rebuild an encoder from :meth:`to_dict`'s output, on any machine."""
        encoder = cls.__new__(cls)
        encoder.vocab = None if state["vocab"] is None else Vocabulary.from_dict(state["vocab"])
        encoder.tokenizer, encoder.token_pattern = state["tokenizer"], state["token_pattern"]
        encoder.lowercase, encoder.max_length = state["lowercase"], state["max_length"]
        if state["tokenizer_json"] is None:
            encoder._tokenize = build_tokenizer(state["tokenizer"], state["token_pattern"])
        else:
            encoder._tokenize = HuggingFaceTokenizer(json_text=state["tokenizer_json"])
        return encoder
