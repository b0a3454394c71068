"""AWDLSTM: AWD-LSTM's stack of weight-dropped LSTMs, against plain nn.LSTMs chained by hand."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from alstm_lightning.layers import AWDLSTM, WeightDropLSTM

I, H, O, T, B = 4, 6, 3, 7, 2


def chained_lstms(encoder: AWDLSTM) -> list[nn.LSTM]:
    """Plain one-layer nn.LSTMs holding copies of the encoder's raw weights, layer by layer."""
    plain = []
    for layer in encoder.layers:
        lstm = nn.LSTM(layer.input_size, layer.hidden_size, dtype=torch.float64)
        lstm.load_state_dict(layer.state_dict())
        plain.append(lstm)
    return plain


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("output_size", [None, O])
def test_eval_output_and_state_equal_plain_lstms_chained(num_layers, output_size):
    encoder = AWDLSTM(I, H, output_size=output_size, num_layers=num_layers, dropout=0.3, weight_dropout=0.5,
                      dtype=torch.float64).eval()
    x = torch.randn(T, B, I, dtype=torch.float64)
    output, state = encoder(x)

    y, expected_state = x, []
    for lstm in chained_lstms(encoder):
        y, (h, c) = lstm(y)
        expected_state.append((h, c))
    sizes = [H] * (num_layers - 1) + [output_size or H]
    assert output.shape == (T, B, sizes[-1])
    assert isinstance(state, list) and len(state) == num_layers
    assert [tuple(h.shape) for h, _ in state] == [(1, B, n) for n in sizes]
    torch.testing.assert_close(output, y)
    for (h, c), (h_ref, c_ref) in zip(state, expected_state):
        torch.testing.assert_close(h, h_ref)
        torch.testing.assert_close(c, c_ref)


def test_two_chunks_with_carried_state_equal_one_pass():
    encoder = AWDLSTM(I, H, output_size=O, num_layers=3, dropout=0.3, weight_dropout=0.5, dtype=torch.float64).eval()
    x = torch.randn(T, B, I, dtype=torch.float64)
    whole, whole_state = encoder(x)
    first, state = encoder(x[:3])
    second, carried_state = encoder(x[3:], state)
    torch.testing.assert_close(torch.cat([first, second]), whole)
    for (h, c), (h_ref, c_ref) in zip(carried_state, whole_state):
        torch.testing.assert_close(h, h_ref)
        torch.testing.assert_close(c, c_ref)


def test_weight_drop_draws_a_new_mask_per_call_in_training_only():
    encoder = AWDLSTM(I, H, output_size=O, num_layers=2, weight_dropout=0.5, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64)
    first, _ = encoder(x)
    second, _ = encoder(x)
    assert not torch.allclose(first, second)
    encoder.eval()
    torch.testing.assert_close(encoder(x)[0], encoder(x)[0])
    # without any dropout, training computes exactly what evaluation does
    plain = AWDLSTM(I, H, output_size=O, num_layers=2, dtype=torch.float64)
    torch.testing.assert_close(plain(x)[0], plain.eval()(x)[0])


def test_dropout_is_locked_between_layers_and_absent_on_the_output():
    p = 0.5
    encoder = AWDLSTM(I, H, output_size=O, num_layers=3, dropout=p, dtype=torch.float64)
    seen = {}
    for l, layer in enumerate(encoder.layers):
        layer.register_forward_pre_hook(lambda module, args, l=l: seen.__setitem__(("in", l), args[0]))
        layer.register_forward_hook(lambda module, args, out, l=l: seen.__setitem__(("out", l), out[0]))
    output, _ = encoder(torch.randn(T, B, I, dtype=torch.float64))
    for l in (1, 2):
        mask = seen[("in", l)] / seen[("out", l - 1)]  # (T, B, H): one mask per sequence, shared over time
        torch.testing.assert_close(mask, mask[:1].expand_as(mask))
        assert set(mask.unique().tolist()) == {0.0, 1.0 / (1.0 - p)}
    torch.testing.assert_close(output, seen[("out", 2)])


def test_gradient_reaches_every_raw_recurrent_weight_through_its_mask():
    encoder = AWDLSTM(I, H, output_size=O, num_layers=3, dropout=0.3, weight_dropout=0.5, dtype=torch.float64)
    output, state = encoder(torch.randn(T, B, I, dtype=torch.float64))
    (output.square().sum() + sum(c.sum() for _, c in state)).backward()
    for l, layer in enumerate(encoder.layers):
        names = [name for name, _ in layer.named_parameters()]
        assert names == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
        grad = layer.weight_hh_l0.grad
        assert grad is not None and grad.abs().sum() > 0, f"no gradient for layers.{l}.weight_hh_l0"
        # dropped entries receive no gradient: about half of them with weight_dropout=0.5
        assert 0.3 < (grad == 0).double().mean().item() < 0.7


def test_parameter_count_at_ptb_sizes_is_about_24m():
    V, E, H_ptb, L = 10_000, 400, 1150, 3
    with torch.device("meta"):
        encoder = AWDLSTM(E, H_ptb, output_size=E, num_layers=L, weight_dropout=0.5)
    sizes = [E, H_ptb, H_ptb, E]
    expected = sum(4 * sizes[l + 1] * (sizes[l] + sizes[l + 1]) + 8 * sizes[l + 1] for l in range(L))
    assert sum(p.numel() for p in encoder.parameters()) == expected == 20_211_600
    # with the tied embedding table (V x E) and the decoder's bias (V): AWD-LSTM's "24M"
    assert expected + V * E + V == 24_221_600


def test_layers_are_weight_dropped_lstms_and_repr_shows_the_settings():
    encoder = AWDLSTM(I, H, output_size=O, num_layers=2, dropout=0.25, weight_dropout=0.5)
    assert all(isinstance(layer, WeightDropLSTM) and layer.weight_dropout == 0.5 for layer in encoder.layers)
    assert encoder.layer_sizes == (H, O)
    assert "4, 6, output_size=3, num_layers=2, dropout=0.25, weight_dropout=0.5" in repr(encoder)
    assert repr(AWDLSTM(I, H)).startswith("AWDLSTM(\n  4, 6\n")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_layers": 0}, ValueError, "num_layers"),
        ({"output_size": 2.0}, TypeError, "output_size"),
        ({"dropout": 1.0}, ValueError, "dropout"),
        ({"weight_dropout": -0.1}, ValueError, "weight_dropout"),
        ({"bias": 1}, TypeError, "bias"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        AWDLSTM(I, H, **kwargs)


def test_forward_rejects_bad_input_and_state():
    encoder = AWDLSTM(I, H, output_size=O, num_layers=2)
    x = torch.randn(T, B, I)
    with pytest.raises(TypeError, match="input must be a .*PackedSequence"):
        encoder(pack_padded_sequence(x, [T, T]))
    with pytest.raises(ValueError, match="input.size\\(-1\\) must equal input_size=4"):
        encoder(torch.randn(T, B, I + 1))
    _, state = encoder(x)
    with pytest.raises(TypeError, match="hx must be a list"):
        encoder(x, state[0][0])
    with pytest.raises(ValueError, match="hx must hold num_layers=2"):
        encoder(x, state[:1])
    with pytest.raises(TypeError, match=r"hx\[1\] must be a pair"):
        encoder(x, [state[0], state[1][0]])
    with pytest.raises(ValueError, match=r"hx\[1\].c shape must be \(1, 2, 3\)"):
        encoder(x, [state[0], (state[1][0], state[1][1].repeat(1, 1, 2))])
