"""Locked dropout, embedding dropout and the variational mask."""

import pytest
import torch
from torch import nn

from alstm_lightning import LockedDropout, embedding_dropout, variational_mask


def test_variational_mask_values_and_rate():
    mask = variational_mask(400, 50, 0.25, torch.empty(0))
    assert mask.shape == (400, 50)
    assert mask.unique().tolist() == [0.0, pytest.approx(1 / 0.75)]
    assert (mask == 0).float().mean().item() == pytest.approx(0.25, abs=0.02)


@pytest.mark.parametrize("batch_first", [False, True])
def test_locked_dropout_mask_is_constant_across_time(batch_first):
    drop = LockedDropout(0.5, batch_first=batch_first)
    x = torch.ones(6, 4, 10)
    y = drop(x)
    time_dim = 1 if batch_first else 0
    first = y.select(time_dim, 0).unsqueeze(time_dim)
    assert torch.equal(y, first.expand_as(y))
    assert (y == 0).any() and (y == 2).any()
    drop.eval()
    assert torch.equal(drop(x), x)


def test_embedding_dropout_drops_whole_words():
    embedding = nn.Embedding(50, 8)
    words = torch.arange(50).repeat(3, 1)  # every word three times
    out = embedding_dropout(embedding, words, 0.5, training=True)
    dropped = out.abs().sum(-1) == 0
    assert dropped.any() and (~dropped).any()
    assert torch.equal(dropped, dropped[0].expand_as(dropped)), "a word is dropped everywhere or nowhere"
    kept = ~dropped[0]
    torch.testing.assert_close(out[0, kept], embedding.weight[kept] * 2)
    torch.testing.assert_close(embedding_dropout(embedding, words, 0.5, training=False), embedding(words))


def test_locked_dropout_errors():
    with pytest.raises(ValueError, match=r"LockedDropout: p must be in \[0, 1\), got 1.5"):
        LockedDropout(1.5)
    with pytest.raises(TypeError, match="batch_first must be a bool"):
        LockedDropout(0.1, batch_first=None)
