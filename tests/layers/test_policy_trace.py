"""trace_policies: the recorded policy is tanh(P a) of the step that read each input position."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_sequence

from alstm_lightning import aLSTM, aRNN, policy_slices
from alstm_lightning.layers.policy_trace import trace_policies

T, B, I, H, A = 5, 3, 4, 3, 2


def _by_hand(model, layer, suffix, a):
    """``tanh(P a)`` with the layer's projection weight, written out (the rows the cell reads)."""
    (direction,) = [d for d in model.directions() if d.suffix == suffix]
    P = direction.project_layers[layer].linear.weight[: direction.cell_layers[layer].policy_size]
    return torch.tanh(a @ P.T)


@pytest.mark.parametrize("cls, gates", [(aLSTM, 4), (aRNN, 1)])
@pytest.mark.parametrize("layout", ["paper", "reference"])
def test_shapes_and_first_step_by_hand(cls, gates, layout):
    model = cls(I, H, A, output_size=2, num_layers=2, policy_layout=layout).eval()
    x = torch.randn(T, B, I)
    policies = trace_policies(model, x)
    widths = [I + H + 3 * gates * H, H + 2 + 3 * gates * 2]  # layer 1 reads H, outputs O = 2
    assert [tuple(p.shape) for p in policies] == [(T, B, w) for w in widths]
    assert model.impl == cls(I, H, A).impl, "impl is restored"

    # step 0 of layer 0: a = LSTMCell([x_0, h = 0, a_top = 0], (0, 0)), written out
    adapt = model.adapt_layers[0]
    w_ih, b_ih, b_hh = adapt.weight_ih, adapt.bias_ih, adapt.bias_hh  # W_hh a vanishes with a = 0
    inp = torch.cat([x[0], torch.zeros(B, H + A)], -1)
    i, f, g, o = (inp @ w_ih.T + b_ih + b_hh).chunk(4, -1)
    a = torch.sigmoid(o) * torch.tanh(torch.sigmoid(i) * torch.tanh(g))
    torch.testing.assert_close(policies[0][0], _by_hand(model, 0, "", a))


@pytest.mark.parametrize("num_layers", [1, 3])
def test_every_step_is_tanh_of_the_projected_adaptation_state(num_layers):
    model = aLSTM(I, H, A, num_layers=num_layers).eval()
    x = torch.randn(T, B, I)
    policies = trace_policies(model, x)
    for t in range(T):
        _, state = model(x[: t + 1])  # state.a[l] is a_{l,t}
        for layer in range(num_layers):
            torch.testing.assert_close(policies[layer][t], _by_hand(model, layer, "", state.a[layer]))


def test_bidirectional_positions_align_with_the_input():
    model = aLSTM(I, H, A, num_layers=2, bidirectional=True).eval()
    x = torch.randn(T, B, I)
    policies = trace_policies(model, x)
    assert len(policies) == 4  # (layer, direction) in the state's order
    t = 1
    forward_state = model(x[: t + 1])[1]  # the forward direction has read x_0 .. x_t
    reverse_state = model(x[t:])[1]  # the reverse direction has read x_{T-1} .. x_t
    torch.testing.assert_close(policies[0][t], _by_hand(model, 0, "", forward_state.a[0]))
    torch.testing.assert_close(policies[1][t], _by_hand(model, 0, "_reverse", reverse_state.a[1]))


def test_packed_input_equals_one_sequence_at_a_time_and_pads_with_nan():
    model = aLSTM(I, H, A, num_layers=2, bidirectional=True).eval()
    sequences = [torch.randn(n, I) for n in (3, 5, 2)]
    policies = trace_policies(model, pack_sequence(sequences, enforce_sorted=False))
    for b, seq in enumerate(sequences):
        alone = trace_policies(model, seq.unsqueeze(1))
        n = seq.size(0)
        for packed_policy, single in zip(policies, alone):
            torch.testing.assert_close(packed_policy[:n, b], single[:, 0])
            assert packed_policy[n:, b].isnan().all()


def test_batch_first_input_gives_time_major_policies():
    model = aLSTM(I, H, A)
    model_bf = aLSTM(I, H, A, batch_first=True)
    model_bf.load_state_dict(model.state_dict())
    x = torch.randn(T, B, I)
    torch.testing.assert_close(trace_policies(model_bf, x.transpose(0, 1))[0], trace_policies(model, x)[0])


@pytest.mark.parametrize("bias", [True, False])
def test_split_gives_named_views_of_the_policy(bias):
    model = aLSTM(I, H, A, bias=bias, policy_layout="reference").eval()
    x = torch.randn(T, B, I)
    (policy,) = trace_policies(model, x)
    (sub,) = trace_policies(model, x, split=True)
    slices = policy_slices(I, H, 4, bias, "reference")
    for name, s in zip(sub._fields, slices):
        torch.testing.assert_close(getattr(sub, name), policy[..., s.start : s.start + s.length])
    assert (sub.pi_b is None) == (not bias)
    assert sub.pi_x.shape == (T, B, I) and sub.pi_hh.shape == (T, B, 4 * H)


def test_errors():
    with pytest.raises(TypeError, match="trace_policies: model must be an aLSTM or aRNN, got LSTM"):
        trace_policies(nn.LSTM(I, H), torch.randn(T, B, I))
    with pytest.raises(TypeError, match="trace_policies: split must be a bool"):
        trace_policies(aLSTM(I, H, A), torch.randn(T, B, I), split="yes")
    model = aLSTM(I, H, A)
    impl = model.impl
    with pytest.raises(ValueError, match="input_size"):
        trace_policies(model, torch.randn(T, B, I + 1))
    assert model.impl == impl, "restored after an error"
    # no hook left behind: the traced projection runs as before
    a = torch.randn(B, A)
    torch.testing.assert_close(model.project_layers[0](a), torch.tanh(a @ model.project_layers[0].linear.weight.T))
    assert trace_policies(model, torch.randn(T, B, I))[0].shape[0] == T, "one policy per step: no hook left over"
