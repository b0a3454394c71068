"""The fused path's in-place cell math equals :mod:`alstm_lightning.layers.cell`'s, and its derivative autograd's."""

from __future__ import annotations

import pytest
import torch

from alstm_lightning.layers.cell import adaptive_preactivation, lstm_update as cell_lstm_update
from alstm_lightning.layers.fused.gates import lstm_activate, lstm_backward, lstm_update, policy_gates
from alstm_lightning.layers.policy import policy_slices, split_policy

B, I, H = 3, 5, 4


@pytest.mark.parametrize("layout", ["paper", "reference"])
@pytest.mark.parametrize("bias", [True, False])
def test_policy_gates_and_lstm_update_equal_the_cell_step(layout, bias):
    x, h, c = torch.randn(B, I), torch.randn(B, H), torch.randn(B, H)
    weight_ih, weight_hh = torch.randn(4 * H, I), torch.randn(4 * H, H)
    b = torch.randn(4 * H) if bias else None
    slices = policy_slices(I, H, 4, bias, layout)
    pi = split_policy(torch.tanh(torch.randn(B, max(s.start + s.length for s in slices))), slices)
    gx, gh = (pi.pi_x * x) @ weight_ih.t(), (pi.pi_h * h) @ weight_hh.t()
    gates = policy_gates(gx, gh, pi.pi_i, pi.pi_hh, pi.pi_b, b)
    expected = adaptive_preactivation(x, h, pi, weight_ih, weight_hh, b)
    torch.testing.assert_close(gates, expected)
    c_out, h_out = torch.empty(B, H), torch.empty(B, H)
    h_new, c_new = lstm_update(lstm_activate(gates), c, c_out, h_out)
    assert h_new is h_out and c_new is c_out
    torch.testing.assert_close((h_new, c_new), cell_lstm_update(expected, c))


def test_lstm_backward_equals_autograd():
    pre = torch.randn(B, 4 * H, dtype=torch.float64, requires_grad=True)
    c = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    dh, dc = torch.randn(B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    h_new, c_new = cell_lstm_update(pre, c)
    expected = torch.autograd.grad((h_new * dh).sum() + (c_new * dc).sum(), (pre, c))
    gates = pre.detach().clone()
    lstm_activate(gates)
    out = torch.empty(B, 4 * H, dtype=torch.float64)
    d_pre, dc_prev = lstm_backward(gates, c_new.detach(), c.detach(), dh, dc, out=out)
    assert d_pre is out
    torch.testing.assert_close((d_pre, dc_prev), expected)
