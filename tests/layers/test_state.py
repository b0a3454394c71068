"""The state structure's helpers: detach, move/cast, reset rows, select rows."""

import pytest
import torch

from alstm_lightning import AdaptiveState, aLSTM, aRNN


@pytest.fixture
def state():
    model = aLSTM(3, 4, 2, num_layers=2, output_size=5)
    _, state = model(torch.randn(4, 3, 3))
    return state


def test_fields_and_shapes(state):
    assert AdaptiveState._fields == ("h", "c", "a", "a_c")
    assert [tuple(t.shape) for t in state.h] == [(3, 4), (3, 5)]
    assert [tuple(t.shape) for t in state.a_c] == [(3, 2), (3, 2)]
    assert state.batch_size == 3


def test_arnn_state_has_no_cell_field():
    _, state = aRNN(3, 4, 2)(torch.randn(4, 2, 3))
    assert state.c == ()
    assert state.detach().c == ()


def test_detach_cuts_the_graph_and_keeps_values(state):
    assert all(t.requires_grad for t in state.h)
    detached = state.detach()
    assert not any(t.requires_grad for field in detached for t in field)
    torch.testing.assert_close(detached.h[1], state.h[1].detach())


def test_to_casts_every_tensor(state):
    doubled = state.to(torch.float64)
    assert {t.dtype for field in doubled for t in field} == {torch.float64}


@pytest.mark.parametrize("rows", [torch.tensor([False, True, False]), torch.tensor([1])])
def test_reset_zeroes_only_selected_rows(state, rows):
    reset = state.detach().reset(rows)
    for before, after in zip(state.detach().a, reset.a):
        assert after[1].abs().sum() == 0
        torch.testing.assert_close(after[[0, 2]], before[[0, 2]])


def test_index_select_reorders_rows(state):
    picked = state.detach().index_select(torch.tensor([2, 0]))
    assert picked.batch_size == 2
    torch.testing.assert_close(picked.c[0][0], state.c[0][2].detach())


def test_detached_state_continues_a_sequence():
    model = aLSTM(3, 4, 2).eval()
    x = torch.randn(6, 2, 3)
    full, _ = model(x)
    first, state = model(x[:2])
    second, _ = model(x[2:], state.detach())
    torch.testing.assert_close(torch.cat([first, second]), full)
