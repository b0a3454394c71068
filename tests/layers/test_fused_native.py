"""The fused path's C++ loop: when it runs, its float activations, and the fallback to the Python loop."""

from __future__ import annotations

import warnings

import pytest
import torch

from alstm_lightning import aLSTM
from alstm_lightning.layers.fused import PackingThresholds, autograd, native, use_packing_thresholds
from alstm_lightning.layers.fused.backward import WeightGrads
from alstm_lightning.layers.fused.chain import LayerTensors, Weights
from alstm_lightning.layers.fused.forward import ForwardOperands, SavedLayer
from alstm_lightning.layers.recurrence import LayerState

T, B, I, H, A = 5, 3, 4, 6, 3


@pytest.fixture
def built():
    """The extension's ops; the test is skipped with the reason where it cannot be built."""
    ops = native.native_ops()
    if ops is None:
        pytest.skip(f"the C++ loop is unavailable: {native.LOADER.reason}")
    return ops


@pytest.fixture
def loops_run(monkeypatch) -> list[str]:
    """Which loop each fused call ran, ``"native"`` or ``"python"``, in order."""
    runs: list[str] = []
    for name in ("NATIVE", "PYTHON"):
        loops = getattr(autograd, f"{name}_LOOPS")

        def forward(*args, _loops=loops, _name=name.lower(), **kwargs):
            runs.append(_name)
            return _loops.forward(*args, **kwargs)

        monkeypatch.setattr(autograd, f"{name}_LOOPS", autograd.Loops(forward, loops.backward))
    return runs


def _train_step(model: aLSTM, x: torch.Tensor, **autocast) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", enabled=bool(autocast), **autocast):
        output, _ = model(x)
    output.float().sum().backward()
    return output.detach(), [p.grad for p in model.parameters()]


def test_the_native_loop_runs_by_default_on_cpu_and_the_switch_forces_python(built, loops_run, monkeypatch):
    model, x = aLSTM(I, H, A, num_layers=2), torch.randn(T, B, I)
    native_result = _train_step(model, x)
    with torch.no_grad():
        model(x)
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    python_result = _train_step(model, x)
    assert loops_run == ["native", "native", "python"]
    torch.testing.assert_close(native_result, python_result)


@pytest.mark.parametrize("sizes", [(1, H, A), (I, 1, A), (I, H, 1), (1, 1, 1)], ids=["I=1", "H=1", "A=1", "all 1"])
def test_size_one_dimensions_give_the_python_loop_results(sizes, built, loops_run, monkeypatch):
    """A weight with a dimension of 1 has strides that read as both row- and column-major; BLAS must
    get the layout it was admitted in (an input size of 1 once gave MKL errors and wrong gradients)."""
    input_size, hidden_size, adapt_size = sizes
    model = aLSTM(input_size, hidden_size, adapt_size, num_layers=2)
    x = torch.randn(T, B, input_size)
    weights = torch.randn(T, B, hidden_size)

    def run() -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        output, _ = model(x)
        (output * weights).sum().backward()
        return [output.detach(), *(p.grad for p in model.parameters())]

    native_result = run()
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    python_result = run()
    assert loops_run == ["native", "python"]
    torch.testing.assert_close(native_result, python_result)


#: calls the C++ loop does not cover: (parameter dtype, autocast dtype or None)
UNCOVERED = {
    "bfloat16 parameters": (torch.bfloat16, None),
    "float16 autocast": (torch.float32, torch.float16),
    "float64 parameters under bfloat16 autocast": (torch.float64, torch.bfloat16),
}


@pytest.mark.parametrize("case", list(UNCOVERED))
def test_calls_the_native_loop_does_not_cover_run_the_python_loop(case, built, loops_run, monkeypatch):
    dtype, autocast_dtype = UNCOVERED[case]
    model = aLSTM(I, H, A, num_layers=2).to(dtype)
    x = torch.randn(T, B, I, dtype=dtype)
    autocast = {} if autocast_dtype is None else {"dtype": autocast_dtype}
    with use_packing_thresholds(PackingThresholds(min_bf16_autocast_size=0)):  # bfloat16 products, small as it is
        result = _train_step(model, x, **autocast)
        assert loops_run == ["python"]
        monkeypatch.setenv(native.ENV_SWITCH, "0")
        torch.testing.assert_close(result, _train_step(model, x, **autocast), rtol=0, atol=0)


@pytest.mark.parametrize("split", ["slices", "row loops"])
def test_rows_split_across_threads_give_the_python_loop_results(split, built, monkeypatch):
    """Wide and deep enough that the C++ loop runs on two threads, in batch slices (the default) or
    with every row loop split over the threads (with the reference layout's shared policy units,
    and a step mask)."""
    model = aLSTM(16, 32, 8, num_layers=2, policy_layout="reference")
    x = torch.nn.utils.rnn.pack_padded_sequence(torch.randn(6, 64, 16), torch.randint(1, 7, (64,)), enforce_sorted=False)

    def step():
        model.zero_grad(set_to_none=True)
        output, state = model(x)
        (output.data.sum() + sum(t.sum() for field in state for t in field)).backward()
        return output.data.detach(), [p.grad for p in model.parameters()]

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    thresholds = PackingThresholds() if split == "slices" else PackingThresholds(min_slice_rows=10**9)
    try:
        with use_packing_thresholds(thresholds):
            native_result = step()
            monkeypatch.setenv(native.ENV_SWITCH, "0")
            torch.testing.assert_close(native_result, step())
    finally:
        torch.set_num_threads(threads)


def test_float_products_run_on_mkl_packed_weights_where_torch_has_mkl(built):
    """Where torch has MKL, its packed GEMM is what the float products use (so the tests above run
    them on packed weights: their "prepacked" thresholds pack from the first step on)."""
    assert built.packs_float_operands() == torch.backends.mkl.is_available()


@pytest.fixture
def packing_kept(built):
    """MKL-packed operands from the first step on, and no buffers kept before or after the test."""
    if not built.packs_float_operands():
        pytest.skip("torch's MKL provides no packed GEMM here: no packed operands, no buffers to keep")
    native.release_kept_buffers()
    with use_packing_thresholds(PackingThresholds(min_steps=1)):
        yield
    native.release_kept_buffers()


def _big_model(hidden_size: int, num_layers: int = 2) -> aLSTM:
    """Layers whose cell weight has at least 2^20 elements (4 * hidden_size**2): their packed
    buffers are the ones kept."""
    return aLSTM(8, hidden_size, 4, num_layers=num_layers)


def test_an_inference_call_keeps_its_packed_buffers_for_the_next_and_training_keeps_none(packing_kept, monkeypatch):
    model, x = _big_model(512), torch.randn(3, 2, 8)
    with torch.no_grad():
        first, _ = model(x)
        kept = native.kept_buffer_bytes()
        # 4 * 512 * 512 float32 elements per cell weight, three such weights per layer at least
        assert kept >= 2 * 3 * 4 * 512 * 512 * 4
        second, _ = model(x)  # packs into the kept buffers
        assert native.kept_buffer_bytes() == kept
        monkeypatch.setenv(native.ENV_SWITCH, "0")
        python, _ = model(x)
    torch.testing.assert_close(second, first, rtol=0, atol=0)
    torch.testing.assert_close(second, python)
    monkeypatch.delenv(native.ENV_SWITCH)
    output, _ = model(x)  # tracked: takes the kept buffers, keeps none into the backward
    assert native.kept_buffer_bytes() == 0
    output.sum().backward()
    torch.testing.assert_close(output.detach(), first, rtol=0, atol=0)


def test_a_smaller_model_packs_into_a_larger_ones_kept_buffers(packing_kept):
    small, x = _big_model(512, num_layers=1), torch.randn(3, 2, 8)
    with torch.no_grad():
        fresh, _ = small(x)
        native.release_kept_buffers()
        _big_model(640)(x)
        larger = native.kept_buffer_bytes()
        reused, _ = small(x)
    assert 0 < native.kept_buffer_bytes() < larger  # what the last call used, and only that, is kept
    torch.testing.assert_close(reused, fresh, rtol=0, atol=0)


def test_releasing_kept_buffers_returns_their_bytes(packing_kept):
    with torch.no_grad():
        _big_model(512)(torch.randn(3, 2, 8))
    kept = native.kept_buffer_bytes()
    assert kept > 0
    assert native.release_kept_buffers() == kept
    assert native.kept_buffer_bytes() == 0 and native.release_kept_buffers() == 0


def test_small_weights_get_fresh_buffers(packing_kept):
    with torch.no_grad():
        aLSTM(I, H, A, num_layers=2)(torch.randn(T, B, I))
    assert native.kept_buffer_bytes() == 0


def test_the_python_side_passes_the_arguments_the_cpp_loop_reads(built):
    layer_fields, saved_fields, forward_stride, backward_stride = built.argument_layout()
    assert layer_fields == len(LayerTensors._fields) and saved_fields == len(SavedLayer._fields)
    layer, saved = LayerTensors(*[None] * layer_fields), SavedLayer(*[None] * saved_fields)
    operands = ForwardOperands(*[None] * len(ForwardOperands._fields))
    assert len(native.forward_arguments(layer, operands, saved, None)) == forward_stride
    weights, d_weights = Weights(*[None] * len(Weights._fields)), WeightGrads(*[None] * len(WeightGrads._fields))
    d_state = LayerState(None, None, None, None)
    assert len(native.backward_arguments(layer, weights, saved, None, None, d_state, d_weights)) == backward_stride


def test_float_activations_are_within_a_few_ulp(built):
    x = torch.linspace(-12.0, 12.0, 100_001)
    tanh, sigmoid = built.activations(x)
    # torch's own float tanh and sigmoid are about 1e-7 from the float64 values here
    assert (tanh.double() - torch.tanh(x.double())).abs().max() < 4e-7
    assert (sigmoid.double() - torch.sigmoid(x.double())).abs().max() < 4e-7
    assert tanh[0] == -1.0 and tanh[-1] == 1.0
    assert built.activations(torch.zeros(1)).flatten().tolist() == [0.0, 0.5]


def _fresh_loader(monkeypatch) -> native.NativeLoader:
    loader = native.NativeLoader()
    monkeypatch.setattr(native, "LOADER", loader)
    return loader


def _warnings_of_two_runs(model: aLSTM, x: torch.Tensor) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _train_step(model, x)
        _train_step(model, x)
    return [w for w in caught if "C++ loop" in str(w.message)]


def _fail_to_build(*args, **kwargs):
    raise RuntimeError("Error building extension:\nforward.cpp:1:1: error: simulated failure\nninja: build stopped")


#: how each missing piece is simulated, and what the warning then names
MISSING = {
    "ninja": (
        lambda mp: mp.setattr(torch.utils.cpp_extension, "is_ninja_available", lambda: False),
        "ninja executable",
    ),
    "compiler": (lambda mp: mp.setenv("CXX", "/nonexistent/c++"), "'/nonexistent/c++'"),
    "build": (lambda mp: mp.setattr(torch.utils.cpp_extension, "load", _fail_to_build), "error: simulated failure"),
}


@pytest.mark.parametrize("missing", list(MISSING))
def test_without_a_build_the_python_loop_runs_after_one_warning(missing, monkeypatch, loops_run):
    loader = _fresh_loader(monkeypatch)
    simulate, named = MISSING[missing]
    simulate(monkeypatch)
    model, x = aLSTM(I, H, A, num_layers=2), torch.randn(T, B, I)
    caught = _warnings_of_two_runs(model, x)
    assert len(caught) == 1 and caught[0].category is RuntimeWarning
    message = str(caught[0].message)
    assert named in message and f"{native.ENV_SWITCH}=0" in message, message
    assert loader.reason is not None and native.native_ops() is None
    assert loops_run == ["python", "python"]


def test_the_switch_skips_the_build_and_its_warning(monkeypatch, loops_run):
    _fresh_loader(monkeypatch)
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    monkeypatch.setattr(native.NativeLoader, "ops", lambda self: pytest.fail("the loader must not be asked"))
    model, x = aLSTM(I, H, A), torch.randn(T, B, I)
    assert _warnings_of_two_runs(model, x) == []
    assert loops_run == ["python", "python"]


def test_a_loaded_extension_reports_its_load_time(built):
    assert native.LOADER.reason is None and native.LOADER.seconds > 0
