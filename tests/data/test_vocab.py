"""Vocabulary: frequency order, encode / decode, unknown tokens, chunked encoding, serialisation."""

from __future__ import annotations

import pytest
import torch

from alstm_lightning.data import UnknownTokenError, Vocabulary
from alstm_lightning.data import vocab as vocab_module


def test_build_orders_by_frequency_then_first_appearance():
    vocab = Vocabulary.build(["b", "a", "c", "a", "d", "c", "a"], level="word")
    # a: 3, c: 2, then b and d (once each) in order of first appearance.
    assert vocab.itos == ["a", "c", "b", "d"]
    assert vocab.stoi == {"a": 0, "c": 1, "b": 2, "d": 3}
    assert len(vocab) == 4 and "c" in vocab and "z" not in vocab
    assert vocab.unk_token is None


def test_encode_decode_round_trip_word_and_char():
    words = "the cat sat on the mat <eos>".split()
    vocab = Vocabulary.build(words, level="word")
    ids = vocab.encode(words)
    assert ids.dtype == torch.long and ids.shape == (7,)
    assert ids.tolist() == [vocab.stoi[word] for word in words]
    assert vocab.decode(ids) == " ".join(words)
    assert vocab.decode(ids.tolist()) == " ".join(words)

    text = "hello, world\n"
    chars = Vocabulary.build(text, level="char")
    assert chars.decode(chars.encode(text)) == text
    assert chars.itos[0] == "l"  # the most frequent character


def test_extra_unk_token_and_unknown_mapping():
    vocab = Vocabulary.build(["a", "b", "a"], extra_tokens=["<unk>"])
    assert vocab.itos == ["a", "b", "<unk>"] and vocab.unk_token == "<unk>"
    assert vocab.encode(["a", "zz", "b", "yy"], unknown="unk").tolist() == [0, 2, 1, 2]
    # An <unk> already counted in the text is not added twice and still becomes unk_token.
    counted = Vocabulary.build(["<unk>", "a", "<unk>"], extra_tokens=["<unk>"])
    assert counted.itos == ["<unk>", "a"] and counted.unk_token == "<unk>"


def test_unknown_tokens_are_reported_with_counts():
    vocab = Vocabulary.build(["a", "b"])
    message = r"every token must be in the vocabulary, got 3 unknown \(2 distinct"
    with pytest.raises(UnknownTokenError, match=message) as info:
        vocab.encode(iter(["a", "x", "x", "b", "y"]))
    assert info.value.unknown == {"x": 2, "y": 1}
    assert isinstance(info.value, ValueError)


def test_encoding_in_chunks_matches_one_pass(monkeypatch):
    tokens = ["a", "b", "c", "a", "q", "b", "q", "r", "c"]
    vocab = Vocabulary.build(["a", "b", "c"], extra_tokens=["<unk>"])
    expected = [vocab.stoi.get(token, vocab.stoi["<unk>"]) for token in tokens]
    monkeypatch.setattr(vocab_module, "_CHUNK", 2)
    assert vocab.encode(iter(tokens), unknown="unk").tolist() == expected
    with pytest.raises(UnknownTokenError) as info:
        vocab.encode(iter(tokens))
    assert info.value.unknown == {"q": 2, "r": 1}  # unknowns counted across every chunk
    assert vocab.encode([]).shape == (0,)


def test_serialisation_round_trip():
    vocab = Vocabulary.build("abcab", level="char")
    state = vocab.to_dict()
    assert state == {"itos": ["a", "b", "c"], "level": "char", "unk_token": None, "pad_token": None}
    assert Vocabulary.from_dict(state) == vocab
    assert Vocabulary.from_dict({**state, "level": "word"}) != vocab


def test_argument_errors():
    with pytest.raises(ValueError, match="level"):
        Vocabulary(["a"], level="byte")
    with pytest.raises(ValueError, match="itos must hold each token once"):
        Vocabulary(["a", "b", "a"])
    with pytest.raises(TypeError, match="itos"):
        Vocabulary("abc")
    with pytest.raises(ValueError, match="unk_token"):
        Vocabulary(["a"], unk_token="<unk>")
    with pytest.raises(ValueError, match="unknown"):
        Vocabulary(["a"]).encode(["a"], unknown="skip")
    with pytest.raises(ValueError, match="unk_token=None"):
        Vocabulary(["a"]).encode(["b"], unknown="unk")
