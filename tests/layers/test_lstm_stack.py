"""LSTMStack: plain LSTM layers shaped as the aLSTM follow the LSTM equations, carry their state, pack and drop."""

import pytest
import torch

from alstm_lightning.layers import LSTMStack

E, H = 6, 8


def naive_lstm_layer(layer: torch.nn.LSTM, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
    """A one-layer unidirectional LSTM from its equations, step by step: ``x: (T, B, I)``, ``h, c: (B, H)``."""
    outputs = []
    for x_t in x:
        gates = x_t @ layer.weight_ih_l0.T + layer.bias_ih_l0 + h @ layer.weight_hh_l0.T + layer.bias_hh_l0
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs), h, c


def test_lstm_stack_follows_the_lstm_equations_and_carries_its_state():
    encoder = LSTMStack(E, H, 3, num_layers=3).double()
    layers = [torch.nn.LSTM(E, H), torch.nn.LSTM(H, H), torch.nn.LSTM(H, 3)]
    lower = encoder.hidden_layers
    for l, layer in enumerate(layers[:2]):  # the stack's layer l, as a one-layer LSTM of its own
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(layer, f"{kind}_l0").data = getattr(lower, f"{kind}_l{l}").data
    layers[2] = encoder.output_layer
    x = torch.randn(7, 2, E, dtype=torch.float64)
    y, state = x, []
    for layer in layers:
        width = layer.hidden_size
        zeros = torch.zeros(2, width, dtype=torch.float64)
        y, h, c = naive_lstm_layer(layer, y, zeros, zeros)
        state.append((h, c))
    output, got = encoder(x)
    torch.testing.assert_close(output, y)
    assert [tuple(h.shape) for h, _ in got] == [(1, 2, H), (1, 2, H), (1, 2, 3)]
    for (h, c), (want_h, want_c) in zip(got, state):
        torch.testing.assert_close(h[0], want_h)
        torch.testing.assert_close(c[0], want_c)
    # two chunks with the state carried equal one pass
    first, carried = encoder(x[:3])
    second, final = encoder(x[3:], carried)
    torch.testing.assert_close(torch.cat([first, second]), output)
    for (h, c), (want_h, want_c) in zip(final, got):
        torch.testing.assert_close(h, want_h)
        torch.testing.assert_close(c, want_c)


def test_lstm_stack_packed_bidirectional_input_matches_each_sequence_alone():
    encoder = LSTMStack(E, H, 3, num_layers=2, bidirectional=True).double()
    lengths = [5, 2, 4]
    x = torch.randn(5, 3, E, dtype=torch.float64)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)
    output, state = encoder(packed)
    output, _ = torch.nn.utils.rnn.pad_packed_sequence(output)
    assert output.shape == (5, 3, 2 * 3)
    for b, T in enumerate(lengths):
        alone, alone_state = encoder(x[:T, b : b + 1])
        torch.testing.assert_close(output[:T, b : b + 1], alone)
        for (h, c), (want_h, want_c) in zip(state, alone_state):
            torch.testing.assert_close(h[:, b : b + 1], want_h)
            torch.testing.assert_close(c[:, b : b + 1], want_c)


def test_lstm_stack_dropout_is_between_layers_only():
    encoder = LSTMStack(E, H, 3, num_layers=2, dropout=0.5)
    x = torch.randn(4, 2, E)
    encoder.eval()
    reference = encoder(x)[0]
    encoder.train()
    torch.manual_seed(1)
    dropped = encoder(x)[0]
    assert not torch.equal(dropped, reference)  # the mask falls between the layers...
    encoder.layer_dropout.p = 0.0
    torch.testing.assert_close(encoder(x)[0], reference)  # ...and nowhere else


def test_lstm_stack_rejects_bad_arguments_and_state():
    with pytest.raises(ValueError, match="num_layers must be at least 2, got 1"):
        LSTMStack(E, H, 3, num_layers=1)
    with pytest.raises(ValueError, match="dropout must be"):
        LSTMStack(E, H, 3, dropout=1.5)
    encoder = LSTMStack(E, H, 3, num_layers=2)
    x = torch.randn(4, 2, E)
    _, state = encoder(x)
    with pytest.raises(ValueError, match=r"hx must hold num_layers=2 \(h, c\) pairs, got 1"):
        encoder(x, state[:1])
    with pytest.raises(ValueError, match=r"hx\[1\].h shape must be \(1, 2, 3\) .*got \(1, 2, 8\)"):
        encoder(x, [state[0], state[0]])
    with pytest.raises(TypeError, match="hx must be a list of"):
        encoder(x, torch.zeros(1))
    with pytest.raises(ValueError, match="input.size\\(-1\\) must equal input_size=6"):
        encoder(torch.randn(4, 2, E + 1))
