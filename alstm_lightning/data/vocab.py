"""The vocabulary of every task: tokens to ids and back, built from a training split, saved as plain data."""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain, islice, repeat

import torch
from torch import Tensor

from ..checks import check_choice

#: Tokens encoded per chunk by :meth:`Vocabulary.encode`.
_CHUNK = 1 << 20
#: Token levels: ``"word"`` tokens are joined by spaces when decoded, ``"char"`` tokens by nothing.
LEVELS = ("word", "char")
#: What :meth:`Vocabulary.encode` does with a token it does not know.
UNKNOWN_POLICIES = ("error", "unk")
#: End of a line in word-level corpora (Mikolov's PTB convention, kept by WikiText).
EOS = "<eos>"
#: The out-of-vocabulary token, as written in the PTB and WikiText files.
UNK = "<unk>"
#: The padding token of batches of texts of different lengths (text classification).
PAD = "<pad>"


class UnknownTokenError(ValueError):
    """Raised by :meth:`Vocabulary.encode` when a token is not in the vocabulary.

    Attributes:
        unknown: ``Counter`` of the unknown tokens and how often each occurred.
    """

    def __init__(self, message: str, unknown: Counter) -> None:
        super().__init__(message)
        self.unknown = unknown


class Vocabulary:
    """Token strings to ids, for language modeling (a corpus) and text classification (texts).

    Ids follow ``itos``. :meth:`build` orders a corpus's tokens by decreasing frequency, ties in order
    of first appearance, so the same training text always gives the same ids and frequent tokens get
    small ids; :meth:`for_texts` builds the vocabulary of a set of labelled texts, with ``<pad>`` = 0
    and ``<unk>`` = 1 first and ties broken alphabetically, so the ids do not depend on the order of
    the texts. :meth:`to_dict` is plain data (lists and strings): checkpoints keep it and load with
    ``torch.load(weights_only=True)``.

    Args:
        itos: the token of each id, each token once.
        level: ``"word"`` or ``"char"``; decides how :meth:`decode` joins tokens.
        unk_token: the token unknown tokens map to under ``unknown="unk"``; must be in ``itos``.
            ``None`` for a closed vocabulary.
        pad_token: the padding token, left out by :meth:`decode`; must be in ``itos``, or ``None``.

    Attributes:
        itos: ``list`` of tokens, indexed by id.
        stoi: ``dict`` from token to id.

    Example:
        >>> vocab = Vocabulary.build(["a", "b", "a", "<eos>"], level="word")
        >>> vocab.encode(["a", "<eos>"])
        tensor([0, 2])
        >>> vocab.decode([1, 0])
        'b a'
    """

    def __init__(
        self, itos: Sequence[str], level: str = "word", unk_token: str | None = None, pad_token: str | None = None
    ) -> None:
        check_choice("Vocabulary", "level", level, LEVELS)
        if isinstance(itos, str) or not all(isinstance(token, str) for token in itos):
            raise TypeError(f"Vocabulary: itos must be a sequence of str, got {type(itos).__name__}")
        if len(set(itos)) != len(itos):
            duplicates = sorted(token for token, count in Counter(itos).items() if count > 1)
            raise ValueError(f"Vocabulary: itos must hold each token once, got duplicates {duplicates[:5]}")
        for name, token in (("unk_token", unk_token), ("pad_token", pad_token)):
            if token is not None and token not in itos:
                raise ValueError(f"Vocabulary: {name} must be one of the tokens in itos, got {token!r}")
        self.itos = list(itos)
        self.stoi = {token: index for index, token in enumerate(self.itos)}
        self.level = level
        self.unk_token = unk_token
        self.pad_token = pad_token

    @classmethod
    def build(cls, tokens: Iterable[str], level: str = "word", extra_tokens: Sequence[str] = ()) -> Vocabulary:
        """Collect every token of a corpus, most frequent first.

        Args:
            tokens: the training split as one token sequence (a ``str`` is a sequence of chars).
            level: ``"word"`` or ``"char"``.
            extra_tokens: tokens appended after the counted ones when absent (e.g. ``"<unk>"`` for a
                training text that never uses it). ``"<unk>"``, whether counted or extra, becomes
                :attr:`unk_token`.
        """
        counts = Counter(tokens)
        itos = [token for token, _ in counts.most_common()]  # stable: ties keep first-appearance order
        itos += [token for token in extra_tokens if token not in counts]
        return cls(itos, level=level, unk_token=UNK if UNK in itos else None)

    @classmethod
    def for_texts(
        cls, texts: Iterable[Sequence[str]], min_frequency: int = 1, max_size: int | None = None
    ) -> Vocabulary:
        """The word-level vocabulary of tokenised texts: ``<pad>`` = 0, ``<unk>`` = 1, then the kept tokens.

        Tokens seen at least ``min_frequency`` times are kept, most frequent first, ties broken
        alphabetically (so the ids do not depend on the order of the texts); the others read as
        ``<unk>``.

        Args:
            texts: tokenised texts (the training split).
            min_frequency: fewest occurrences for a token to get its own id.
            max_size: most ids, ``<pad>`` and ``<unk>`` included; ``None`` for no limit.
        """
        counts = Counter(chain.from_iterable(texts))
        kept = sorted(
            (token for token, count in counts.items() if count >= min_frequency and token not in (PAD, UNK)),
            key=lambda token: (-counts[token], token),
        )
        if max_size is not None:
            kept = kept[: max_size - 2]
        return cls([PAD, UNK, *kept], level="word", unk_token=UNK, pad_token=PAD)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)}, level={self.level!r}, unk_token={self.unk_token!r})"

    @property
    def pad_index(self) -> int | None:
        """The id of :attr:`pad_token`, or ``None`` without one."""
        return None if self.pad_token is None else self.stoi[self.pad_token]

    def tokens(self, text: str) -> list[str] | str:
        """The tokens of a raw text at this vocabulary's level: its characters, or its whitespace-separated words."""
        return text if self.level == "char" else text.split()

    def encode(self, tokens: Iterable[str], unknown: str = "error") -> Tensor:
        """Map tokens to ids.

        Args:
            tokens: the tokens to encode (a ``str`` is a sequence of chars).
            unknown: ``"error"`` raises on a token outside the vocabulary; ``"unk"`` maps it to
                :attr:`unk_token`.

        Returns:
            ``(N,)`` long tensor of ids, N the number of tokens.

        Raises:
            UnknownTokenError: (a ``ValueError``) for unknown tokens under ``unknown="error"``; it
                lists the first few and carries all of them in ``.unknown``.
            ValueError: for ``unknown="unk"`` when the vocabulary has no :attr:`unk_token`.
        """
        check_choice("Vocabulary.encode", "unknown", unknown, UNKNOWN_POLICIES)
        if unknown == "unk" and self.unk_token is None:
            raise ValueError(
                "Vocabulary.encode: unknown='unk' needs a vocabulary with an unk_token, got unk_token=None"
            )
        stoi = self.stoi
        missing = stoi[self.unk_token] if unknown == "unk" else -1
        # Chunks of tokens go into a C array of int64: a corpus of 10^8 tokens takes 0.8 GB, where
        # one list of all its tokens or ids would take several times that.
        ids = array("q")
        unknown_counts: Counter = Counter()
        iterator = iter(tokens)
        while chunk := list(islice(iterator, _CHUNK)):
            chunk_ids = array("q", map(stoi.get, chunk, repeat(missing)))
            if missing < 0 and missing in chunk_ids:
                unknown_counts.update(token for token in chunk if token not in stoi)
            ids.extend(chunk_ids)
        if unknown_counts:
            examples = ", ".join(repr(token) for token, _ in unknown_counts.most_common(5))
            raise UnknownTokenError(
                f"Vocabulary.encode: every token must be in the vocabulary, got "
                f"{unknown_counts.total()} unknown ({len(unknown_counts)} distinct, e.g. {examples})",
                unknown_counts,
            )
        return torch.frombuffer(ids, dtype=torch.long).clone() if ids else torch.empty(0, dtype=torch.long)

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """The tokens of ``ids`` joined by spaces (word level) or nothing (char level), padding left out.

        Args:
            ids: ``(N,)`` ids, a tensor or a sequence of ints.
        """
        separator = " " if self.level == "word" else ""
        pad = self.pad_index
        return separator.join(self.itos[index] for index in torch.as_tensor(ids).reshape(-1).tolist() if index != pad)

    def difference(self, other: Vocabulary) -> str | None:
        """Where this vocabulary and ``other`` first differ, in words, or ``None`` when they are equal."""
        if self == other:
            return None
        if (self.level, self.unk_token, self.pad_token) != (other.level, other.unk_token, other.pad_token):
            return (
                f"level/unk/pad {self.level!r}/{self.unk_token!r}/{self.pad_token!r} vs "
                f"{other.level!r}/{other.unk_token!r}/{other.pad_token!r}"
            )
        index = next((k for k, (a, b) in enumerate(zip(self.itos, other.itos)) if a != b), None)
        if index is None:
            return f"{len(self)} vs {len(other)} tokens"
        return f"{len(self)} vs {len(other)} tokens, first difference at id {index}: {self.itos[index]!r} vs {other.itos[index]!r}"

    def to_dict(self) -> dict[str, object]:
        """Plain data (lists and strings) for ``torch.save`` with ``weights_only`` loading."""
        return {"itos": self.itos, "level": self.level, "unk_token": self.unk_token, "pad_token": self.pad_token}

    @classmethod
    def from_dict(cls, state: dict[str, object]) -> Vocabulary:
        """Rebuild a vocabulary from :meth:`to_dict`'s output (``pad_token`` may be absent: older caches)."""
        return cls(state["itos"], level=state["level"], unk_token=state["unk_token"], pad_token=state.get("pad_token"))
