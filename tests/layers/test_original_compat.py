"""Drop-in for the original code's users, checked against the original code itself (../shared/reference).

The original's hidden-state format and the nested lists its ``repackage_hidden`` returns, per-layer
and ``None`` dropouts, seeded masks drawn in its order, and the original aRNN's ``state_dict``.
"""

from __future__ import annotations

import sys

import pytest
import torch

from alstm_lightning import AdaptiveState, aLSTM, aRNN

from ..conftest import SHARED_DATA

ORIGINAL = SHARED_DATA.parent / "reference" / "alstm-original"
T, B, I, H, A, O = 5, 3, 4, 6, 3, 5


@pytest.fixture(scope="module")
def original():
    """The original ``alstm`` package (ported to torch 2), imported from ../shared/reference."""
    if not (ORIGINAL / "alstm").is_dir():
        pytest.skip(f"the original code is not at {ORIGINAL} (../shared/reference/alstm-original)")
    sys.path.insert(0, str(ORIGINAL))
    try:
        import alstm
    finally:
        sys.path.remove(str(ORIGINAL))
    return alstm


def twins(original, cls_name: str, **kwargs):
    """An original model and ours with its weights (``state_dict`` loaded strictly), in float64."""
    theirs = getattr(original, cls_name)(I, H, A, O, **kwargs).double()
    ours_cls = aLSTM if cls_name == "aLSTM" else aRNN
    ours = ours_cls(I, H, A, O, policy_layout="reference", impl="naive", **kwargs).double()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs, ours


def repackage_hidden(h):
    """The original examples' helper: detach a nest of tensors, lists come back as lists."""
    if isinstance(h, torch.Tensor):
        return h.detach()
    return [repackage_hidden(v) for v in h]


@pytest.mark.parametrize("cls_name", ["aLSTM", "aRNN"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_the_original_hidden_format_and_repackaged_lists_are_accepted(original, cls_name, num_layers):
    theirs, ours = twins(original, cls_name, nlayers=num_layers)
    theirs.eval(), ours.eval()
    x = torch.randn(T, B, I, dtype=torch.float64)
    hidden = theirs.init_hidden(B)
    expected, their_state = theirs(x, hidden)
    output, state = ours(x, hidden)  # their format, as their init_hidden makes it
    torch.testing.assert_close(output, expected)
    # the original training loop: a second window from the repackaged (nested lists) state
    expected2, their_state2 = theirs(x, repackage_hidden(their_state))
    output2, state2 = ours(x, repackage_hidden(state.to_original()))
    torch.testing.assert_close(output2, expected2)
    converted = AdaptiveState.from_original(their_state2)
    for field in ("h", "a", "a_c") + (("c",) if cls_name == "aLSTM" else ()):
        for mine, theirs_tensor in zip(getattr(state2, field), getattr(converted, field)):
            torch.testing.assert_close(mine, theirs_tensor)
    # and our own state repackaged as lists is accepted too
    torch.testing.assert_close(ours(x, repackage_hidden(state))[0], expected2)


def test_per_layer_dropout_lists_none_and_seeded_masks_are_the_originals(original):
    theirs, ours = twins(original, "aLSTM", nlayers=2, dropout_alstm=[0.1, 0.5], dropout_adapt=[0.3, 0.2])
    assert ours.dropout == [0.1, 0.5] and ours.adapt_dropout == [0.3, 0.2]
    theirs.train(), ours.train()
    x = torch.randn(T, B, I, dtype=torch.float64)
    torch.manual_seed(7)
    expected, _ = theirs(x)
    torch.manual_seed(7)
    output, _ = ours(x)
    torch.testing.assert_close(output, expected)  # the same masks: drawn in the original's order
    torch.manual_seed(8)
    assert not torch.allclose(ours(x)[0], expected), "another seed, other masks"
    # positional None dropouts, as the original takes them, mean no dropout
    none = aLSTM(I, H, A, O, 2, None, None)
    assert none.dropout == 0.0 and none.adapt_dropout == 0.0
    with pytest.raises(ValueError, match=r"dropout must be one probability or one per layer \(num_layers=2\), got \[0.1\]"):
        aLSTM(I, H, A, num_layers=2, dropout=[0.1])
    with pytest.raises(ValueError, match=r"adapt_dropout must be in \[0, 1\), got 1.5"):
        aLSTM(I, H, A, num_layers=2, adapt_dropout=[0.1, 1.5])


@pytest.mark.parametrize("bias", [True, False])
def test_the_original_arnn_state_dict_loads_strictly_and_agrees(original, bias):
    theirs = original.aRNN(I, H, A, O, nlayers=2, bias=bias).double().eval()
    ours = aRNN(I, H, A, O, num_layers=2, bias=bias, policy_layout="reference").double().eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)  # the unread block of projection rows included
    x = torch.randn(T, B, I, dtype=torch.float64)
    expected, _ = theirs(x)
    for impl in ("fused", "naive"):
        ours.impl = impl
        torch.testing.assert_close(ours(x)[0], expected, rtol=0, atol=1e-15)


def test_the_state_converts_to_and_from_the_original_format():
    model = aLSTM(I, H, A, num_layers=2)
    state = model.init_hidden(B).map(lambda t: torch.randn_like(t))
    adapt, cells = state.to_original()
    assert [tuple(pair) == (a, c) for pair, a, c in zip(adapt, state.a, state.a_c)] == [True, True]
    assert AdaptiveState.from_original((adapt, cells)) == state
    with pytest.raises(TypeError, match=r"hidden must be the original format \(\[\(a, a_c\)\] \* L, \[\(h, c\)\] \* L\)"):
        AdaptiveState.from_original((state.h, state.c))
    with pytest.raises(TypeError, match="hx must be an AdaptiveState .* the original format"):
        model(torch.randn(T, B, I), (state.h, state.c))
