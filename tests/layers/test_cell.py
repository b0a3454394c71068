"""One step of the adaptive cells against the equations written out here."""

import pytest
import torch

from alstm_lightning import aLSTMCell, alstm_cell, aRNNCell, arnn_cell

B, I, H = 3, 5, 4


def paper_parts(pi, gates_per_unit, bias):
    """The paper layout written out by hand: back-to-back slices."""
    G = gates_per_unit * H
    sizes = [I, H, G, G] + ([G] if bias else [])
    parts, start = [], 0
    for size in sizes:
        parts.append(pi[:, start : start + size])
        start += size
    return parts + ([None] if not bias else [])


def expected_alstm(x, h, c, pi, w_ih, w_hh, b):
    pi_x, pi_h, pi_i, pi_hh, pi_b = paper_parts(pi, 4, b is not None)
    gates = (x * pi_x) @ w_ih.T * pi_i + (h * pi_h) @ w_hh.T * pi_hh
    if b is not None:
        gates = gates + b * pi_b
    i, f, g, o = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H : 3 * H], gates[:, 3 * H :]
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


@pytest.mark.parametrize("bias", [True, False])
def test_alstm_cell_matches_equations(bias):
    cell = aLSTMCell(I, H, bias=bias)
    x, h, c = torch.randn(B, I), torch.randn(B, H), torch.randn(B, H)
    pi = torch.tanh(torch.randn(B, cell.policy_size))
    h_new, c_new = cell(x, (h, c), pi)
    h_exp, c_exp = expected_alstm(x, h, c, pi, cell.weight_ih, cell.weight_hh, cell.bias)
    torch.testing.assert_close(h_new, h_exp)
    torch.testing.assert_close(c_new, c_exp)


@pytest.mark.parametrize("bias", [True, False])
def test_arnn_cell_matches_equations(bias):
    cell = aRNNCell(I, H, bias=bias)
    x, h = torch.randn(B, I), torch.randn(B, H)
    pi = torch.tanh(torch.randn(B, cell.policy_size))
    pi_x, pi_h, pi_i, pi_hh, pi_b = paper_parts(pi, 1, bias)
    pre = (x * pi_x) @ cell.weight_ih.T * pi_i + (h * pi_h) @ cell.weight_hh.T * pi_hh
    if bias:
        pre = pre + cell.bias * pi_b
    torch.testing.assert_close(cell(x, h, pi), torch.tanh(pre))


def test_cells_default_to_zero_state():
    cell = aLSTMCell(I, H)
    x = torch.randn(B, I)
    pi = torch.tanh(torch.randn(B, cell.policy_size))
    zeros = torch.zeros(B, H)
    for got, want in zip(cell(x, None, pi), cell(x, (zeros, zeros), pi)):
        torch.testing.assert_close(got, want)
    rnn = aRNNCell(I, H)
    pi = torch.tanh(torch.randn(B, rnn.policy_size))
    torch.testing.assert_close(rnn(x, None, pi), rnn(x, zeros, pi))


def test_initialisation_orthogonal_weights_and_forget_bias():
    cell = aLSTMCell(6, 3)  # weight_ih (12, 6): orthonormal columns
    eye = torch.eye(6)
    torch.testing.assert_close(cell.weight_ih.T @ cell.weight_ih, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(cell.weight_hh.T @ cell.weight_hh, torch.eye(3), atol=1e-5, rtol=0)
    expected_bias = torch.zeros(12)
    expected_bias[3:6] = 1.0
    torch.testing.assert_close(cell.bias.detach(), expected_bias)
    assert torch.count_nonzero(aRNNCell(6, 3).bias) == 0


def test_gradcheck_alstm_cell_float64():
    cell = aLSTMCell(3, 2).double()
    inputs = (
        torch.randn(2, 3, dtype=torch.double, requires_grad=True),
        torch.randn(2, 2, dtype=torch.double, requires_grad=True),
        torch.randn(2, 2, dtype=torch.double, requires_grad=True),
        torch.tanh(torch.randn(2, cell.policy_size, dtype=torch.double)).requires_grad_(),
    )

    def step(x, h, c, pi):
        return alstm_cell(x, (h, c), pi, cell.weight_ih, cell.weight_hh, cell.bias, policy_layout="reference")

    assert torch.autograd.gradcheck(step, inputs)


def test_gradcheck_arnn_cell_float64():
    cell = aRNNCell(3, 2).double()
    x = torch.randn(2, 3, dtype=torch.double, requires_grad=True)
    h = torch.randn(2, 2, dtype=torch.double, requires_grad=True)
    pi = torch.tanh(torch.randn(2, cell.policy_size, dtype=torch.double)).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, h, pi: arnn_cell(x, h, pi, cell.weight_ih, cell.weight_hh, cell.bias), (x, h, pi)
    )


def test_extra_repr_shows_only_non_defaults():
    assert repr(aLSTMCell(I, H)) == f"aLSTMCell({I}, {H})"
    assert "policy_layout='reference'" in repr(aLSTMCell(I, H, bias=False, policy_layout="reference"))


# --- errors -----------------------------------------------------------------------------------

def _args(cell):
    return torch.randn(B, I), (torch.zeros(B, H), torch.zeros(B, H)), torch.zeros(B, cell.policy_size)


def test_error_wrong_input_size():
    cell = aLSTMCell(I, H)
    _, hx, pi = _args(cell)
    with pytest.raises(ValueError, match=r"input_size=5, got 7"):
        cell(torch.randn(B, 7), hx, pi)


def test_error_wrong_policy_size():
    cell = aLSTMCell(I, H)
    x, hx, _ = _args(cell)
    with pytest.raises(ValueError, match=r"policy shape must be \(3, 57\), got \(3, 56\)"):
        cell(x, hx, torch.zeros(B, 56))


def test_error_wrong_hidden_batch():
    cell = aLSTMCell(I, H)
    x, _, pi = _args(cell)
    with pytest.raises(ValueError, match=r"hidden\[1\] \(c\) shape must be \(3, 4\)"):
        cell(x, (torch.zeros(B, H), torch.zeros(2, H)), pi)


def test_error_hidden_not_a_pair():
    cell = aLSTMCell(I, H)
    x, hx, pi = _args(cell)
    with pytest.raises(TypeError, match="hidden must be a pair"):
        alstm_cell(x, hx[0], pi, cell.weight_ih, cell.weight_hh)


def test_error_integer_input():
    cell = aLSTMCell(I, H)
    _, hx, pi = _args(cell)
    with pytest.raises(TypeError, match="input must be a floating-point tensor"):
        cell(torch.ones(B, I, dtype=torch.long), hx, pi)


def test_error_wrong_ndim_input():
    cell = aRNNCell(I, H)
    with pytest.raises(ValueError, match="input must have 2 dimensions"):
        cell(torch.randn(1, B, I), None, torch.zeros(B, cell.policy_size))


def test_error_dtype_mismatch_state():
    cell = aLSTMCell(I, H)
    x, _, pi = _args(cell)
    with pytest.raises(TypeError, match=r"hidden\[0\] \(h\) must have dtype torch.float32"):
        cell(x, (torch.zeros(B, H, dtype=torch.float64), torch.zeros(B, H)), pi)


def test_error_unknown_layout_and_bad_sizes():
    cell = aLSTMCell(I, H)
    x, hx, pi = _args(cell)
    with pytest.raises(ValueError, match="policy_layout must be one of"):
        alstm_cell(x, hx, pi, cell.weight_ih, cell.weight_hh, cell.bias, policy_layout="clever")
    with pytest.raises(ValueError, match="hidden_size must be a positive int, got 0"):
        aLSTMCell(I, 0)
    with pytest.raises(TypeError, match="input_size must be an int"):
        aRNNCell(2.5, H)
    with pytest.raises(TypeError, match="bias must be a bool"):
        aLSTMCell(I, H, bias="yes")
    with pytest.raises(ValueError, match=r"weight_hh shape must be \(16, 4\)"):
        alstm_cell(x, hx, pi, cell.weight_ih, cell.weight_hh[:, :3], cell.bias)
