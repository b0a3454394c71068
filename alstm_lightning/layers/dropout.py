"""Dropout that keeps one mask across time: variational masks, locked dropout, embedding dropout."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_bool, check_probability


def variational_mask(batch_size: int, size: int, p: float, like: Tensor) -> Tensor:
    """A ``(B, size)`` inverted-dropout mask: entries are 0 with probability ``p``, else ``1/(1-p)``.

    Sampled once per sequence and reused at every step (Gal & Ghahramani 2016).
    """
    return like.new_empty(batch_size, size).bernoulli_(1.0 - p).div_(1.0 - p)


class LockedDropout(nn.Module):
    """Dropout with one mask per sequence, shared by every time step ("locked" / variational).

    Args:
        p: drop probability in ``[0, 1)``.
        batch_first: whether inputs are ``(B, T, F)`` instead of ``(T, B, F)``.

    Shape:
        input and output: ``(T, B, F)``, or ``(B, T, F)`` with ``batch_first``.
    """

    def __init__(self, p: float = 0.5, batch_first: bool = False) -> None:
        super().__init__()
        check_probability("LockedDropout", "p", p)
        check_bool("LockedDropout", "batch_first", batch_first)
        self.p = p
        self.batch_first = batch_first

    def forward(self, input: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return input
        batch_dim = 0 if self.batch_first else 1
        mask = variational_mask(input.size(batch_dim), input.size(-1), self.p, input)
        return input * mask.unsqueeze(1 - batch_dim)

    def extra_repr(self) -> str:
        return f"p={self.p}" + (", batch_first=True" if self.batch_first else "")


def embedding_dropout(embedding: nn.Embedding, words: Tensor, p: float, training: bool) -> Tensor:
    """Look up ``words`` in ``embedding`` after dropping whole words (rows of the table).

    A dropped word maps to a zero vector everywhere it occurs in the batch; kept rows are scaled
    by ``1/(1-p)`` (Gal & Ghahramani 2016, as used by AWD-LSTM and the aLSTM paper).

    Args:
        embedding: the embedding layer whose table is dropped.
        words: integer token ids of any shape.
        p: probability of dropping a word, in ``[0, 1)``.
        training: apply the dropout only when ``True``.

    Returns:
        ``(*words.shape, E)`` embeddings.
    """
    weight = embedding.weight
    if training and p > 0.0:
        weight = weight * variational_mask(weight.size(0), 1, p, weight)
    return F.embedding(
        words,
        weight,
        embedding.padding_idx,
        embedding.max_norm,
        embedding.norm_type,
        embedding.scale_grad_by_freq,
        embedding.sparse,
    )

