"""aLSTM / aRNN stacks against a naive per-step implementation of the issue's equations, plus
equivalences (packed, bidirectional, batch_first, chunks) and every error path."""

import itertools

import pytest
import torch
from torch.func import functional_call
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

from alstm_lightning import AdaptiveState, aLSTM, aRNN

T, B, I, H, A = 5, 2, 4, 3, 2


# --- the equations, written out independently -------------------------------------------------

def split_ref(pi, in_size, hid, gates, bias, layout):
    """Sub-policies (pi_x, pi_h, pi_i, pi_hh, pi_b) as the issue states them."""
    G = gates * hid
    if layout == "paper":
        bounds, start = [], 0
        for size in [in_size, hid, G, G, G][: 5 if bias else 4]:
            bounds.append((start, start + size))
            start += size
    elif gates == 4:  # the original implementation's offsets, as listed in the issue
        bounds = [(0, in_size), (in_size, in_size + hid), (hid, 5 * hid), (4 * hid, 8 * hid), (4 * hid, 8 * hid)]
    else:  # the same rule (each chunk starts at the previous chunk's length) for one gate block
        bounds = [(0, in_size), (in_size, in_size + hid), (hid, 2 * hid), (hid, 2 * hid), (hid, 2 * hid)]
    parts = [pi[:, lo:hi] for lo, hi in bounds[: 5 if bias else 4]]
    return parts + ([None] if not bias else [])


def lstm_cell_ref(inp, a, a_c, w_ih, w_hh, b_ih, b_hh):
    gates = inp @ w_ih.T + b_ih + a @ w_hh.T + b_hh
    i, f, g, o = gates.chunk(4, 1)
    a_c = torch.sigmoid(f) * a_c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(a_c), a_c


def layer_params(model, layer, suffix=""):
    sd = model.state_dict()
    cells = "alstm_layers" if isinstance(model, aLSTM) else "arnn_layers"
    return {
        "adapt": [sd[f"adapt_layers{suffix}.{layer}.{n}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")],
        "P": sd[f"project_layers{suffix}.{layer}.linear.weight"],
        "w_ih": sd[f"{cells}{suffix}.{layer}.weight_ih"],
        "w_hh": sd[f"{cells}{suffix}.{layer}.weight_hh"],
        "b": sd.get(f"{cells}{suffix}.{layer}.bias"),
    }


def ref_chain(model, seq, params, third, h_masks=None):
    """Time-major loop over a chain of layers. ``third``: "wrap", "none", or a (T, B, A) tensor."""
    lstm = isinstance(model, aLSTM)
    gates = 4 if lstm else 1
    n = len(params)
    hid = [p["w_hh"].size(1) for p in params]
    h = [seq.new_zeros(seq.size(1), s) for s in hid]
    c = [seq.new_zeros(seq.size(1), s) for s in hid]
    a = [seq.new_zeros(seq.size(1), model.adapt_size) for _ in params]
    ac = [seq.new_zeros(seq.size(1), model.adapt_size) for _ in params]
    outs, a_seq = [[] for _ in params], []
    for t in range(seq.size(0)):
        inp = seq[t]
        for l, p in enumerate(params):
            parts = [inp, h[l]]
            if l > 0:
                parts.append(a[l - 1])
            elif third == "wrap":
                parts.append(a[n - 1])
            elif isinstance(third, torch.Tensor):
                parts.append(third[t])
            a[l], ac[l] = lstm_cell_ref(torch.cat(parts, 1), a[l], ac[l], *p["adapt"])
            pi = torch.tanh(a[l] @ p["P"].T)
            pi_x, pi_h, pi_i, pi_hh, pi_b = split_ref(pi, inp.size(1), hid[l], gates, p["b"] is not None, model.policy_layout)
            pre = (inp * pi_x) @ p["w_ih"].T * pi_i + (h[l] * pi_h) @ p["w_hh"].T * pi_hh
            if p["b"] is not None:
                pre = pre + p["b"] * pi_b
            if lstm:
                i, f, g, o = pre.chunk(4, 1)
                c[l] = torch.sigmoid(f) * c[l] + torch.sigmoid(i) * torch.tanh(g)
                h_new = torch.sigmoid(o) * torch.tanh(c[l])
            else:
                h_new = torch.tanh(pre)
            outs[l].append(h_new)
            if h_masks is not None:
                h_new = h_new * h_masks[l]
            h[l] = inp = h_new
        a_seq.append(a[n - 1])
    return [torch.stack(o) for o in outs], torch.stack(a_seq), (h, c, a, ac)


def ref_forward(model, x, h_masks=None):
    """The whole stack from the equations; returns the last layer's output (T, B, D*O)."""
    L = model.num_layers
    if not model.bidirectional:
        params = [layer_params(model, l) for l in range(L)]
        outs, _, _ = ref_chain(model, x, params, "wrap" if L > 1 else "none", h_masks)
        return outs[-1]
    # bidirectional: layer by layer, each direction its own adaptation chain; layer 0 reads zeros
    below = [x.new_zeros(x.size(0), x.size(1), model.adapt_size)] * 2 if L > 1 else ["none", "none"]
    inp = x
    for l in range(L):
        outs = []
        for d, suffix in enumerate(["", "_reverse"]):
            seq = inp if d == 0 else inp.flip(0)
            out, below[d], _ = ref_chain(model, seq, [layer_params(model, l, suffix)], below[d])
            outs.append(out[0] if d == 0 else out[0].flip(0))
        inp = torch.cat(outs, -1)
    return inp


# --- equality with the equations --------------------------------------------------------------

@pytest.mark.parametrize(
    "cls,layout,num_layers,bias,output_size",
    list(itertools.product([aLSTM, aRNN], ["paper", "reference"], [1, 2, 3], [True, False], [None, 5])),
)
def test_stack_matches_equations(cls, layout, num_layers, bias, output_size):
    model = cls(I, H, A, output_size=output_size, num_layers=num_layers, bias=bias, policy_layout=layout, impl="naive")
    x = torch.randn(T, B, I)
    output, state = model(x)
    assert output.shape == (T, B, output_size or H)
    torch.testing.assert_close(output, ref_forward(model, x))
    torch.testing.assert_close(state.h[-1], output[-1])


@pytest.mark.parametrize("cls,num_layers", list(itertools.product([aLSTM, aRNN], [1, 2])))
def test_bidirectional_matches_equations(cls, num_layers):
    model = cls(I, H, A, num_layers=num_layers, bidirectional=True, output_size=4, impl="naive")
    x = torch.randn(T, B, I)
    output, state = model(x)
    assert output.shape == (T, B, 8)
    assert len(state.h) == 2 * num_layers
    torch.testing.assert_close(output, ref_forward(model, x))


def test_bidirectional_reverse_equals_unidirectional_on_flipped_input():
    bi = aLSTM(I, H, A, bidirectional=True, impl="naive")
    uni = aLSTM(I, H, A, impl="naive")
    reverse = {k.replace("_reverse", ""): v for k, v in bi.state_dict().items() if "_reverse" in k}
    uni.load_state_dict(reverse)
    x = torch.randn(T, B, I)
    output, state = bi(x)
    flipped_output, flipped_state = uni(x.flip(0))
    torch.testing.assert_close(output[..., H:], flipped_output.flip(0))
    torch.testing.assert_close(state.h[1], flipped_state.h[0])
    torch.testing.assert_close(state.a_c[1], flipped_state.a_c[0])


def test_dropped_hidden_state_recurs_and_output_is_undropped():
    model = aLSTM(I, H, A, num_layers=2, output_size=3, dropout=0.5, impl="naive").train()
    x = torch.randn(T, B, I)
    result = model(x, return_all=True)
    # recover each layer's (constant) mask from dropped / raw at the first step
    masks = [(d[0] / r[0]) for d, r in zip(result.outputs, result.raw_outputs)]
    model.eval()
    torch.testing.assert_close(result.output, ref_forward(model, x, h_masks=masks))
    torch.testing.assert_close(result.output, result.raw_outputs[-1])


# --- equivalences ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "cls,num_layers,bidirectional", list(itertools.product([aLSTM, aRNN], [1, 2], [False, True]))
)
def test_packed_equals_each_sequence_alone(cls, num_layers, bidirectional):
    model = cls(I, H, A, num_layers=num_layers, bidirectional=bidirectional, impl="naive")
    seqs = [torch.randn(n, I) for n in (4, 6, 2)]
    packed_out, state = model(pack_sequence(seqs, enforce_sorted=False))
    padded, lengths = pad_packed_sequence(packed_out)
    assert lengths.tolist() == [4, 6, 2]
    for b, seq in enumerate(seqs):
        alone_out, alone_state = model(seq.unsqueeze(1))
        torch.testing.assert_close(padded[: len(seq), b], alone_out[:, 0])
        for field in AdaptiveState._fields:
            for got, want in zip(getattr(state, field), getattr(alone_state, field)):
                torch.testing.assert_close(got[b], want[0])


def test_packed_output_keeps_the_input_packing():
    model = aLSTM(I, H, A, impl="naive")
    packed = pack_sequence([torch.randn(n, I) for n in (3, 5)], enforce_sorted=False)
    output, _ = model(packed)
    assert torch.equal(output.batch_sizes, packed.batch_sizes)
    assert torch.equal(output.sorted_indices, packed.sorted_indices)
    assert torch.equal(output.unsorted_indices, packed.unsorted_indices)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_batch_first_parity(bidirectional):
    model = aLSTM(I, H, A, num_layers=2, bidirectional=bidirectional, impl="naive")
    twin = aLSTM(I, H, A, num_layers=2, bidirectional=bidirectional, batch_first=True, impl="naive")
    twin.load_state_dict(model.state_dict())
    x = torch.randn(T, B, I)
    output, state = model(x)
    output_bf, state_bf = twin(x.transpose(0, 1))
    torch.testing.assert_close(output_bf, output.transpose(0, 1))
    torch.testing.assert_close(state_bf.h[0], state.h[0])


@pytest.mark.parametrize("cls", [aLSTM, aRNN])
def test_two_chunks_with_carried_state_equal_one_pass(cls):
    model = cls(I, H, A, num_layers=2, dropout=0.3, adapt_dropout=0.3, impl="naive").eval()
    x = torch.randn(7, B, I)
    full, full_state = model(x)
    first, state = model(x[:3])
    second, final_state = model(x[3:], state)
    torch.testing.assert_close(torch.cat([first, second]), full)
    for field in AdaptiveState._fields:
        for got, want in zip(getattr(final_state, field), getattr(full_state, field)):
            torch.testing.assert_close(got, want)


def test_dropout_masks_constant_across_time_and_off_in_eval():
    model = aLSTM(I, 8, A, num_layers=2, dropout=0.5, impl="naive").train()
    result = model(torch.randn(T, 3, I), return_all=True)
    for dropped, raw in zip(result.outputs, result.raw_outputs):
        mask = dropped / raw
        assert set(mask.unique().round(decimals=4).tolist()) <= {0.0, 2.0}
        assert (mask == mask[0]).all(), "the mask must not change over time"
        assert (mask[0] == 0).any() and (mask[0] != 0).any()
    model.eval()
    x = torch.randn(T, 3, I)
    result = model(x, return_all=True)
    for dropped, raw in zip(result.outputs, result.raw_outputs):
        torch.testing.assert_close(dropped, raw)
    torch.testing.assert_close(model(x)[0], model(x)[0])


def test_adapt_dropout_changes_the_output_in_training_only():
    model = aLSTM(I, H, A, adapt_dropout=0.5, impl="naive")
    x = torch.randn(T, B, I)
    torch.manual_seed(1)
    train_a = model(x)[0]
    torch.manual_seed(2)
    train_b = model(x)[0]
    assert not torch.allclose(train_a, train_b)
    model.eval()
    torch.testing.assert_close(model(x)[0], ref_forward(model, x))


# --- gradients ------------------------------------------------------------------------------

def test_gradcheck_two_layer_stack_float64():
    model = aLSTM(3, 2, 2, num_layers=2, output_size=3, policy_layout="reference", impl="naive").double()
    params = dict(model.named_parameters())
    names = ["alstm_layers.1.weight_hh", "alstm_layers.0.bias", "project_layers.0.linear.weight", "adapt_layers.1.weight_ih"]
    x = torch.randn(3, 2, 3, dtype=torch.double, requires_grad=True)

    def run(x, *tensors):
        output, state = functional_call(model, {**params, **dict(zip(names, tensors))}, (x,))
        return output, state.c[0], state.a[1]

    inputs = (x, *[params[n].detach().clone().requires_grad_() for n in names])
    assert torch.autograd.gradcheck(run, inputs)


def test_gradients_reach_initial_state_and_all_parameters():
    model = aLSTM(I, H, A, num_layers=2, impl="naive")
    hx = model.init_hidden(B)
    hx = AdaptiveState(*(tuple(t.clone().requires_grad_() for t in field) for field in hx))
    output, _ = model(torch.randn(T, B, I), hx)
    output.sum().backward()
    for tensor in hx.h + hx.c + hx.a + hx.a_c:
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# --- construction, compatibility, state -----------------------------------------------------

def test_state_dict_keys_match_the_original_implementation():
    model = aLSTM(I, H, A, num_layers=2)
    expected = {
        f"{group}.{l}.{name}"
        for l in range(2)
        for group, names in [
            ("adapt_layers", ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]),
            ("project_layers", ["linear.weight"]),
            ("alstm_layers", ["weight_ih", "weight_hh", "bias"]),
        ]
        for name in names
    }
    assert set(model.state_dict()) == expected
    sd = model.state_dict()
    # original sizes: adaptation input I_l + H_l + A, projection I_l + H_l + 12 H_l
    assert sd["adapt_layers.0.weight_ih"].shape == (4 * A, I + H + A)
    assert sd["project_layers.1.linear.weight"].shape == (H + H + 12 * H, A)
    assert set(aLSTM(I, H, A, bidirectional=True).state_dict()) >= {"alstm_layers_reverse.0.weight_ih"}
    assert "arnn_layers.0.bias" in aRNN(I, H, A).state_dict()


def test_original_keyword_aliases():
    model = aLSTM(I, H, A, nlayers=2, dropout_alstm=0.2, dropout_adapt=0.1)
    assert (model.num_layers, model.dropout, model.adapt_dropout) == (2, 0.2, 0.1)
    assert aRNN(I, H, A, dropout_arnn=0.3).dropout == 0.3
    assert aLSTM(I, H, A, dropout_alstm=None).dropout == 0.0  # the original's "no dropout"
    positional = aLSTM(I, H, A, 5, 2, 0.1, 0.2, True, False)
    assert (positional.output_size, positional.num_layers, positional.batch_first, positional.bias) == (5, 2, True, False)
    with pytest.raises(TypeError, match="both num_layers=2 and its alias nlayers=3"):
        aLSTM(I, H, A, num_layers=2, nlayers=3)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['dropout_arnn'\]"):
        aLSTM(I, H, A, dropout_arnn=0.1)


def test_init_hidden_and_reset_parameters():
    model = aLSTM(I, H, A, num_layers=2, output_size=5)
    state = model.init_hidden(3)
    assert [t.shape for t in state.h] == [(3, H), (3, 5)]
    assert all(t.abs().sum() == 0 for t in state.a + state.a_c)
    with torch.no_grad():
        model.alstm_layers[0].bias.zero_()
    model.reset_parameters()
    assert model.alstm_layers[0].bias[H : 2 * H].eq(1).all()


def test_extra_repr_lists_only_non_defaults():
    text = repr(aLSTM(I, H, A, num_layers=2, policy_layout="reference"))
    assert text.startswith(f"aLSTM(\n  {I}, {H}, {A}, num_layers=2, policy_layout='reference'")
    assert "dropout" not in text.splitlines()[1]


# --- errors -----------------------------------------------------------------------------------

def test_error_original_readme_example_wrong_feature_size():
    # the original README fed hidden_size features into a model; with a different input_size
    # this must be a clear error, not a shape error inside a matmul
    seq_len, batch_size, input_size, hidden_size, adapt_size = 20, 5, 8, 10, 3
    model = aLSTM(input_size, hidden_size, adapt_size)
    with pytest.raises(ValueError, match=r"input.size\(-1\) must equal input_size=8, got 10 \(input shape \(20, 5, 10\)\)"):
        model(torch.rand(seq_len, batch_size, hidden_size))


@pytest.mark.parametrize(
    "input,error,match",
    [
        (torch.randn(T, I), ValueError, "input must have 3 dimensions"),
        (torch.ones(T, B, I, dtype=torch.long), TypeError, "input must be a floating-point tensor"),
        (torch.randn(T, 0, I), ValueError, "input batch size must be positive"),
        (torch.randn(0, B, I), ValueError, "input sequence length must be positive"),
        ([[0.0] * I], TypeError, "input must be a torch.Tensor or a PackedSequence"),
    ],
)
def test_error_bad_input(input, error, match):
    with pytest.raises(error, match=match):
        aLSTM(I, H, A)(input)


def test_error_packed_input_wrong_features():
    packed = pack_sequence([torch.randn(3, I + 1)])
    with pytest.raises(ValueError, match=r"input.data.size\(-1\) must equal input_size=4, got 5"):
        aRNN(I, H, A)(packed)


def test_error_bad_state():
    model = aLSTM(I, H, A, num_layers=2)
    x = torch.randn(T, B, I)
    good = model.init_hidden(B)
    with pytest.raises(ValueError, match=r"hx.h\[0\] shape must be \(2, 3\) \(batch size 2 from the input\), got \(3, 3\)"):
        model(x, model.init_hidden(3))
    with pytest.raises(ValueError, match="hx.a must hold 2 tensors"):
        model(x, good._replace(a=good.a[:1]))
    with pytest.raises(TypeError, match=r"hx.c\[0\] must have dtype torch.float32, got torch.float64"):
        model(x, good._replace(c=(good.c[0].double(), good.c[1])))
    with pytest.raises(ValueError, match=r"hx.a_c\[0\] must be on device cpu, got meta"):
        model(x, good._replace(a_c=(good.a_c[0].to("meta"), good.a_c[1])))
    with pytest.raises(TypeError, match="hx must be an AdaptiveState"):
        model(x, (good.h, good.c))
    with pytest.raises(TypeError, match="return_all must be a bool"):
        model(x, return_all="yes")


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"hidden_size": 0}, ValueError, "hidden_size must be a positive int, got 0"),
        ({"adapt_size": -1}, ValueError, "adapt_size must be a positive int"),
        ({"output_size": 0}, ValueError, "output_size must be a positive int"),
        ({"num_layers": 0}, ValueError, "num_layers must be a positive int"),
        ({"input_size": 3.0}, TypeError, "input_size must be an int"),
        ({"dropout": 1.0}, ValueError, r"dropout must be in \[0, 1\), got 1.0"),
        ({"adapt_dropout": -0.1}, ValueError, r"adapt_dropout must be in \[0, 1\)"),
        ({"dropout": "0.1"}, TypeError, "dropout must be a float"),
        ({"policy_layout": "original"}, ValueError, "policy_layout must be one of"),
        ({"impl": "cuda"}, ValueError, "impl must be one of"),
        ({"bidirectional": 1}, TypeError, "bidirectional must be a bool"),
    ],
)
def test_error_bad_constructor_arguments(kwargs, error, match):
    args = {"input_size": I, "hidden_size": H, "adapt_size": A, **kwargs}
    with pytest.raises(error, match=match):
        aLSTM(**args)
