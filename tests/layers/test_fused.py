"""The fused whole-sequence path equals the naive per-step path: values, states and every gradient.

Every test runs with the fused path's loop over time in C++ and in Python, on per-step products on
prepacked and on plain weights, on the device given by ``--device``.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from alstm_lightning import AdaptiveState, aLSTM, aRNN
from alstm_lightning.layers.fused import PackingThresholds, native, run_chain_fused, use_packing_thresholds
from alstm_lightning.layers.recurrence import ChainLayer, LayerState, run_chain_naive

T, B, I, H, A, O = 6, 3, 5, 7, 4, 6


#: Per-step products on prepacked weights (oneDNN's, or MKL's in the C++ loop: on CPU, whatever the
#: size and from the first step on, so the small test models use them) with the C++ loop's batch in
#: slices, one per thread (from one row per slice on); or on the plain weights, the batch in one piece
OPERANDS = {
    "prepacked": PackingThresholds(
        min_steps=1, min_fp32_size=0, min_bf16_autocast_size=0, min_slice_rows=1, max_slice_weights=10**12
    ),
    "plain": PackingThresholds(
        min_steps=10**9, min_fp32_size=10**12, min_bf16_autocast_size=0, min_slice_rows=10**9
    ),
}


@pytest.fixture(autouse=True, params=list(OPERANDS))
def product_operands(request) -> str:
    """Run every test twice: on prepacked and on plain operands (see ``OPERANDS``), with two threads
    (so that the prepacked runs' batch of 3 rows is in two slices, of 1 and 2 rows)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with use_packing_thresholds(OPERANDS[request.param]):
            yield request.param
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True, params=["native", "python"])
def loop(request, monkeypatch, device) -> str:
    """Run every test with the loop over time in C++ (where it is built; CPU only) and in Python."""
    if request.param == "python":
        monkeypatch.setenv(native.ENV_SWITCH, "0")
    elif device.type != "cpu":
        pytest.skip("the C++ loop is CPU-only: the Python loop runs on other devices")
    elif native.native_ops() is None:
        pytest.skip(f"the C++ loop is unavailable: {native.LOADER.reason}")
    return request.param


def _random_state(model, batch_size: int) -> AdaptiveState:
    return model.init_hidden(batch_size).map(lambda t: torch.randn_like(t) * 0.5)


def _run(model, impl: str, input, hx: AdaptiveState, seed: int = 3):
    """Forward and backward with ``impl``; returns outputs, final state and every gradient."""
    model.impl = model.impl if impl is None else impl
    model.zero_grad(set_to_none=True)
    x = (input.data if isinstance(input, PackedSequence) else input).detach().clone().requires_grad_()
    if isinstance(input, PackedSequence):
        input = PackedSequence(x, input.batch_sizes, input.sorted_indices, input.unsorted_indices)
    else:
        input = x
    hx = hx.map(lambda t: t.detach().clone().requires_grad_())
    torch.manual_seed(seed)  # same dropout masks on both paths
    result = model(input, hx, return_all=True)
    output = result.output.data if isinstance(result.output, PackedSequence) else result.output
    weights = torch.linspace(-1.0, 1.0, output.numel(), device=output.device).view_as(output)
    loss = (output * weights).sum()
    loss = loss + sum((t * t).sum() for field in result.state for t in field)
    loss = loss + sum((d.data if isinstance(d, PackedSequence) else d).sum() for d in result.outputs[:-1])
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    return {
        "output": output,
        "dropped": [d.data if isinstance(d, PackedSequence) else d for d in result.outputs],
        "state": result.state,
        "input.grad": x.grad,
        "hx.grad": hx.map(lambda t: t.grad),
        "params.grad": grads,
    }


def _assert_same(fused: dict, naive: dict) -> None:
    torch.testing.assert_close(fused["output"], naive["output"])
    torch.testing.assert_close(fused["dropped"], naive["dropped"])
    torch.testing.assert_close(tuple(fused["state"]), tuple(naive["state"]))
    torch.testing.assert_close(fused["input.grad"], naive["input.grad"])
    torch.testing.assert_close(tuple(fused["hx.grad"]), tuple(naive["hx.grad"]))
    assert fused["params.grad"].keys() == naive["params.grad"].keys()
    for name, grad in naive["params.grad"].items():
        assert grad is not None, name
        torch.testing.assert_close(fused["params.grad"][name], grad, msg=lambda m: f"{name}: {m}")


def test_fused_is_the_default():
    model = aLSTM(I, H, A)
    assert model.impl == "fused"
    assert "impl" not in model.extra_repr()
    assert "impl='naive'" in aLSTM(I, H, A, impl="naive").extra_repr()


@pytest.mark.parametrize("cls", [aLSTM, aRNN])
@pytest.mark.parametrize("policy_layout", ["paper", "reference"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_matches_naive(cls, policy_layout, num_layers, bias, device):
    model = cls(I, H, A, output_size=O, num_layers=num_layers, bias=bias, policy_layout=policy_layout, device=device)
    x = torch.randn(T, B, I, device=device)
    hx = _random_state(model, B)
    _assert_same(_run(model, "fused", x, hx), _run(model, "naive", x, hx))


@pytest.mark.parametrize("cls", [aLSTM, aRNN])
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize(
    "variant", ["bidirectional", "packed", "dropout", "batch_first", "bidirectional+packed+dropout"]
)
def test_fused_matches_naive_variants(cls, num_layers, variant, device):
    options = {
        "bidirectional": "bidirectional" in variant,
        "batch_first": variant == "batch_first",
        "dropout": 0.3 if "dropout" in variant else 0.0,
        "adapt_dropout": 0.2 if "dropout" in variant else 0.0,
        "policy_layout": "reference" if num_layers == 3 else "paper",
    }
    model = cls(I, H, A, output_size=O, num_layers=num_layers, device=device, **options)
    x = torch.randn(B, T, I, device=device) if options["batch_first"] else torch.randn(T, B, I, device=device)
    if "packed" in variant:
        x = pack_padded_sequence(x, torch.tensor([4, T, 2]), enforce_sorted=False)  # unsorted lengths
    hx = _random_state(model, B)
    _assert_same(_run(model, "fused", x, hx), _run(model, "naive", x, hx))


def _chain(num_layers: int, third_input: bool, device: torch.device):
    """A hand-built float64 chain of aLSTM layers with explicit dropout masks, and initial states."""
    f64 = {"dtype": torch.float64, "device": device}
    stack = aLSTM(I, H, A, num_layers=num_layers, output_size=O, **f64)
    layers, states = [], []
    for k in range(num_layers):
        cell = stack.alstm_layers[k]
        adapt = stack.adapt_layers[k]
        if num_layers == 1 and third_input:  # a lone layer reading an adaptation state from below
            adapt = torch.nn.LSTMCell(I + O + A, A, **f64)
        h_mask = (torch.rand(B, cell.hidden_size, **f64) > 0.3) / 0.7
        a_mask = (torch.rand(B, A, **f64) > 0.3) / 0.7
        layers.append(ChainLayer(adapt, stack.project_layers[k], cell, h_mask, a_mask))
        sizes = (cell.hidden_size, cell.hidden_size, A, A)
        states.append(LayerState(*(torch.randn(B, n, **f64, requires_grad=True) for n in sizes)))
    return layers, states


@pytest.mark.parametrize(
    "num_layers,wrap,with_below",
    [(1, False, False), (1, True, False), (1, False, True), (2, True, False), (2, False, True)],
)
def test_chain_runners_agree(num_layers, wrap, with_below, device):
    """Same masks, step mask, wrap or a given a_below, and gradients into every output kind."""
    layers, states = _chain(num_layers, wrap or with_below, device)
    f64 = {"dtype": torch.float64, "device": device}
    x = torch.randn(T, B, I, **f64, requires_grad=True)
    a_below = torch.randn(T, B, A, **f64, requires_grad=True) if with_below else None
    step_mask = torch.arange(T, device=device).unsqueeze(1) < torch.tensor([T, 3, 5], device=device)
    inputs = [x, *([a_below] if with_below else []), *(t for s in states for t in s)]
    params = [p for layer in layers for m in (layer.adapt, layer.project, layer.cell) for p in m.parameters()]
    results = {}
    for name, runner in [("fused", run_chain_fused), ("naive", run_chain_naive)]:
        result = runner(x, layers, states, wrap=wrap, a_below=a_below, step_mask=step_mask, return_adapt_seq=True)
        outputs = [*result.raw, *result.dropped, result.adapt_seq, *(t for s in result.states for t in s)]
        generator = torch.Generator().manual_seed(0)
        loss = sum((o * torch.randn(o.shape, dtype=o.dtype, generator=generator).to(device)).sum() for o in outputs)
        results[name] = (outputs, torch.autograd.grad(loss, inputs + params))
    torch.testing.assert_close(results["fused"], results["naive"])


@pytest.mark.parametrize("cls,policy_layout", [(aLSTM, "paper"), (aLSTM, "reference"), (aRNN, "paper")])
def test_gradcheck_through_the_fused_path(cls, policy_layout, device):
    model = cls(3, 4, 2, num_layers=2, output_size=3, policy_layout=policy_layout, dtype=torch.float64, device=device)
    names = [name for name, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    x = torch.randn(4, 2, 3, dtype=torch.float64, device=device, requires_grad=True)
    hx = _random_state(model, 2).map(lambda t: t.requires_grad_())
    n_state = sum(len(field) for field in hx)

    def function(x, *tensors):
        state_tensors, weights = tensors[:n_state], tensors[n_state:]
        fields, start = [], 0
        for field in hx:
            fields.append(tuple(state_tensors[start : start + len(field)]))
            start += len(field)
        output, state = functional_call(model, dict(zip(names, weights)), (x, AdaptiveState(*fields)))
        return output, *(t for field in state for t in field)

    state_tensors = [t for field in hx for t in field]
    assert torch.autograd.gradcheck(function, (x, *state_tensors, *params), fast_mode=True)


def test_autocast_bfloat16_is_close_to_float32(device):
    model = aLSTM(8, 16, 4, num_layers=2, device=device)
    x = torch.randn(T, B, 8, device=device)
    reference = _run(model, "fused", x, model.init_hidden(B))
    with torch.autocast(device.type, dtype=torch.bfloat16):
        low = _run(model, "fused", x, model.init_hidden(B))
    assert low["output"].dtype == torch.float32
    for name, grad in reference["params.grad"].items():
        assert torch.isfinite(low["params.grad"][name]).all(), name
        error = (low["params.grad"][name] - grad).norm() / grad.norm().clamp_min(1e-6)
        assert error < 0.05, f"{name}: relative error {error:.3f}"
    torch.testing.assert_close(low["output"], reference["output"], atol=0.03, rtol=0.03)
    torch.testing.assert_close(low["input.grad"], reference["input.grad"], atol=0.03, rtol=0.05)


@pytest.mark.filterwarnings("error")  # e.g. torch's warning about resizing a wrongly sized `out=` tensor
@pytest.mark.parametrize("output_size", [None, H - 2])
@pytest.mark.parametrize("autocast", [False, True])
def test_inference_equals_training_forward(output_size, autocast, device):
    model = aLSTM(I, H, A, num_layers=2, output_size=output_size, device=device)
    x = torch.randn(T, B, I, device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        output, state = model(x)
        with torch.no_grad():
            no_grad_output, no_grad_state = model(x)
    torch.testing.assert_close(no_grad_output, output)
    torch.testing.assert_close(tuple(no_grad_state), tuple(state))
    assert output.grad_fn is not None and no_grad_output.grad_fn is None
