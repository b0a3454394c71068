"""Chrono initialisation: the biases, the policies it starts the aLSTM with, and its errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from alstm_lightning import aLSTM, aRNN, trace_policies
from alstm_lightning.layers.initialization import CONSTANT_UNIT_BIAS, chrono_forget_bias, chrono_init_


def test_chrono_forget_bias_spans_log_1_to_log_tmax():
    b = chrono_forget_bias(10_000, 200, torch.Generator().manual_seed(0))
    assert b.shape == (10_000,)
    assert b.min() >= 0.0 and b.max() <= math.log(199)
    # log(u) for u uniform on [1, 199]: most units get long timescales
    assert abs(b.exp().mean().item() - 100.0) < 2.0


def test_chrono_forget_bias_is_reproducible_from_a_generator():
    first = chrono_forget_bias(8, 50, torch.Generator().manual_seed(3))
    assert torch.equal(first, chrono_forget_bias(8, 50, torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_gets_chrono_biases_in_every_layer_and_direction(bidirectional):
    lstm = nn.LSTM(3, 6, num_layers=2, bidirectional=bidirectional)
    weights = {n: p.clone() for n, p in lstm.named_parameters() if n.startswith("weight")}
    chrono_init_(lstm, 100)
    H = 6
    for name, p in lstm.named_parameters():
        if name.startswith("weight"):
            assert torch.equal(p, weights[name]), name
        elif name.startswith("bias_ih"):
            b_f = p[H : 2 * H]
            assert (b_f >= 0).all() and (b_f <= math.log(99) + 1e-6).all(), name
            assert torch.equal(p[:H], -b_f), name
        else:  # bias_hh: nothing added to the input and forget blocks
            assert (p[: 2 * H] == 0).all(), name


@pytest.mark.parametrize("num_layers, bidirectional", [(1, False), (2, True)])
def test_alstm_starts_as_an_lstm_with_chrono_biases(num_layers, bidirectional):
    torch.manual_seed(0)
    model = aLSTM(3, 8, 4, num_layers=num_layers, bidirectional=bidirectional)
    before = {n: p.clone() for n, p in model.named_parameters()}
    chrono_init_(model, 200)
    policies = trace_policies(model, torch.randn(20, 5, 3))
    assert len(policies) == num_layers * model.num_directions
    for pi in policies:
        # after a few steps every policy is near tanh(2 * 0.99) = 0.96
        assert pi[5:].min() > 0.8, pi[5:].min()
    untouched = [n for n in before if "weight_hh" in n and "alstm_layers" in n]
    assert untouched and all(torch.equal(before[n], dict(model.named_parameters())[n]) for n in untouched)
    for direction in model.directions():
        for cell in direction.cell_layers:
            H = cell.hidden_size
            assert (cell.bias[H : 2 * H] >= 0).all() and torch.equal(cell.bias[:H], -cell.bias[H : 2 * H])
        for adapt in direction.adapt_layers:
            rows = torch.arange(4) * model.adapt_size
            assert (adapt.weight_ih[rows] == 0).all() and (adapt.bias_ih[rows] == CONSTANT_UNIT_BIAS).all()


def test_alstm_forget_gates_start_open_on_zero_input():
    """With chrono biases the effective forget bias b_f * pi_b is large: the gates start near 1, not 1/2."""
    torch.manual_seed(0)
    model = aLSTM(2, 16, 4, impl="naive")
    plain_f = _mean_forget_gate(model)
    chrono_init_(model, 200)
    chrono_f = _mean_forget_gate(model)
    assert abs(plain_f - 0.5) < 0.1, plain_f
    assert chrono_f > 0.9, chrono_f


def _mean_forget_gate(model: aLSTM) -> float:
    """Mean forget-gate activation at step 10 of a zero input (naive path, through the cell's math)."""
    from alstm_lightning.layers.cell import adaptive_preactivation
    from alstm_lightning.layers.policy import split_policy

    x = torch.zeros(10, 1, 2)
    with torch.no_grad():
        _, state = model(x)
        cell, project = model.alstm_layers[0], model.project_layers[0]
        pi = split_policy(project(state.a[0]), cell.policy_slices)
        gates = adaptive_preactivation(x[-1], state.h[0], pi, cell.weight_ih, cell.weight_hh, cell.bias)
        H = cell.hidden_size
        return torch.sigmoid(gates[:, H : 2 * H]).mean().item()


def test_errors_name_the_problem():
    with pytest.raises(TypeError, match="aLSTM or a torch.nn.LSTM.*aRNN"):
        chrono_init_(aRNN(2, 4, 2), 100)
    with pytest.raises(TypeError, match="aLSTM or a torch.nn.LSTM.*GRU"):
        chrono_init_(nn.GRU(2, 4), 100)
    with pytest.raises(ValueError, match="bias=False"):
        chrono_init_(aLSTM(2, 4, 2, bias=False), 100)
    with pytest.raises(ValueError, match="bias=False"):
        chrono_init_(nn.LSTM(2, 4, bias=False), 100)
    for bad in (1, 0, -5, math.inf, math.nan):
        with pytest.raises(ValueError, match="max_timescale must be a finite number of steps, at least 2, got"):
            chrono_init_(nn.LSTM(2, 4), bad)
    with pytest.raises(TypeError, match="max_timescale must be a float, got str"):
        chrono_forget_bias(4, "200")
    with pytest.raises(ValueError, match="policy_offset must be finite"):
        chrono_init_(aLSTM(2, 4, 2), 100, policy_offset=math.inf)


def test_a_rejected_call_changes_nothing():
    model = aLSTM(2, 4, 2)
    before = {n: p.clone() for n, p in model.named_parameters()}
    with pytest.raises(ValueError):
        chrono_init_(model, 1)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
