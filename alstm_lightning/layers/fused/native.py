r"""The fused path's loop over time in C++ (``csrc/``), built at first use; the same math.

:func:`forward` and :func:`backward` take and return what
:func:`~alstm_lightning.layers.fused.forward.forward` and
:func:`~alstm_lightning.layers.fused.backward.backward` do: the per-call setup (weights in the
matmul dtype, prepacked operands, layer 0's input term, the saved buffers and gradient
accumulators) is theirs, shared; only the loop over time runs in C++, where each layer's step is
its four products and a handful of element-wise loops instead of some forty torch kernels called
from Python. Two things only the C++ loop does, both set by
:class:`~alstm_lightning.layers.fused.products.PackingThresholds`: the forward's float32 products
run on weights packed once per call by MKL (where torch's MKL provides its packed GEMM, in place of
the oneDNN reordering the Python loop uses), and the batch runs in slices of rows, one per thread,
each through every step on its own (rows never interact within a step). An untracked call
(inference) keeps the packed copies' buffers of large weights for the next call
(:func:`kept_buffer_bytes`, :func:`release_kept_buffers`).

The extension is compiled at first use with :func:`torch.utils.cpp_extension.load` (which needs
the ``ninja`` executable and a C++ compiler) and cached in torch's extensions directory
(``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``), so later processes only load
it. Where it cannot be built, :func:`native_ops` warns once and returns ``None``, and the Python
loop runs instead. It covers CPU tensors in float32 (with float32 or, under autocast, bfloat16
products) and float64 (:func:`supports`); anything else, CUDA included, runs the Python loop.

The environment variable ``ALSTM_NATIVE=0`` forces the Python loop (the reference, and a way to
skip the build and its warning); it is read at every call (:func:`enabled`).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import warnings
from pathlib import Path

import torch
from torch import Tensor

from ..recurrence import LayerState
from .backward import ChainGrads, WeightGrads, input_grads_and_state, layer_grads, weight_grads
from .chain import ChainSpec, LayerTensors, Weights, layer_weights
from .forward import ForwardOperands, ForwardResult, SavedLayer, adaptation_input_term, forward_result, forward_setup
from .products import packing_thresholds

_log = logging.getLogger(__name__)

#: The C++ sources, shipped inside the package (with ``csrc/common.h``)
_CSRC = Path(__file__).with_name("csrc")
SOURCES: tuple[Path, ...] = (_CSRC / "forward.cpp", _CSRC / "backward.cpp", _CSRC / "ops.cpp")
#: Set to ``0`` to run the fused path's Python loop instead (and never build the extension)
ENV_SWITCH = "ALSTM_NATIVE"

#: (state dtype, matmul dtype) pairs the C++ loop is instantiated for
_DTYPES = {(torch.float32, torch.float32), (torch.float64, torch.float64), (torch.float32, torch.bfloat16)}

#: Compiler flags per CPU capability torch reports: the element-wise loops are written to be
#: vectorised by the compiler (the extension is built on the machine that runs it)
_ARCH_FLAGS = {
    "AVX512": ["-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq"],
    "AVX2": ["-mavx2", "-mfma"],
}


class NativeLoader:
    """Builds or loads the extension once per process; remembers why not when it cannot.

    Attributes:
        reason: why the extension is unavailable (``None`` while it is, or before the first try).
        seconds: how long building or loading it took (``None`` before the first try).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tried = False
        self._ops = None
        self.reason: str | None = None
        self.seconds: float | None = None

    def ops(self):
        """``torch.ops.alstm_fused`` once built or loaded, else ``None`` (with one warning per loader)."""
        if self._tried:
            return self._ops
        with self._lock:
            if not self._tried:
                self._ops, self.reason = self._load()
                self._tried = True
                if self.reason is not None:
                    warnings.warn(
                        f"alstm_lightning: the fused path's C++ loop is unavailable ({self.reason}); "
                        "running its Python loop instead (same results, slower on CPU). "
                        f"Set {ENV_SWITCH}=0 to skip the build and this warning.",
                        RuntimeWarning,
                        stacklevel=2,
                    )
        return self._ops

    def loaded_ops(self):
        """The ops once built or loaded, else ``None``; never builds."""
        return self._ops

    def _load(self):
        from torch.utils import cpp_extension

        if not cpp_extension.is_ninja_available():
            return None, "the ninja executable was not found"
        compiler = os.environ.get("CXX", "c++")
        if shutil.which(compiler) is None:
            return None, f"no C++ compiler ({compiler!r}) was found"
        capability = torch.backends.cpu.get_cpu_capability()
        start = time.perf_counter()
        try:
            _log.info("alstm_lightning: building or loading the fused path's C++ loop (cached after the first build)")
            cpp_extension.load(
                name=f"alstm_fused_{capability.lower()}",
                sources=[str(s) for s in SOURCES],
                # OpenMP: the loops' rows run on torch's intra-op threads (its own libgomp, same soname)
                extra_cflags=["-O3", "-fopenmp", *_ARCH_FLAGS.get(capability, [])],
                extra_ldflags=["-fopenmp"],
                is_python_module=False,
            )
        except (RuntimeError, OSError, ImportError) as error:
            return None, f"building it failed: {_first_error(error)}"
        self.seconds = time.perf_counter() - start
        return torch.ops.alstm_fused, None


def _first_error(error: BaseException) -> str:
    """The compiler's first ``error:`` line in a failed build's message, else its last line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    return (errors or lines or [type(error).__name__])[0 if errors else -1]


#: The process's loader
LOADER = NativeLoader()


def native_ops():
    """The extension's ops (``torch.ops.alstm_fused``), built or loaded at the first call; ``None``
    where it cannot be (warned once)."""
    return LOADER.ops()


def kept_buffer_bytes() -> int:
    """Bytes of the buffers the C++ loop keeps between untracked calls (0 where it is not loaded).

    An untracked forward (inference, e.g. under ``torch.no_grad``) whose float32 products ran on
    MKL-packed weights keeps the buffers of those weights with at least 2^20 elements for the next
    forward (on any thread), which packs into them instead of faulting in fresh memory: at ``ptb``
    (``python -m benchmarks.layers``), 37 ms of packing a call become 10 ms, and 226 MB are kept,
    of which packing touches (makes resident) about 84 MB, the weights' own size. Only the last
    untracked forward's buffers are kept; a tracked forward (training) takes them and keeps none,
    so that none outlive a forward into its backward. :func:`release_kept_buffers` frees them.
    """
    ops = LOADER.loaded_ops()
    return 0 if ops is None else ops.packed_buffer_bytes()


def release_kept_buffers() -> int:
    """Free the buffers :func:`kept_buffer_bytes` counts; returns how many bytes that was."""
    ops = LOADER.loaded_ops()
    return 0 if ops is None else ops.release_packed_buffers()


def enabled() -> bool:
    """Whether the C++ loop may run: unless ``ALSTM_NATIVE=0`` is set."""
    return os.environ.get(ENV_SWITCH) != "0"


def supports(spec: ChainSpec, x: Tensor) -> bool:
    """Whether the C++ loop covers a chain on ``x``: CPU, and state and matmul dtypes it is built for."""
    return x.device.type == "cpu" and (x.dtype, spec.mm_dtype) in _DTYPES


def _slices(spec: ChainSpec) -> list[int]:
    """Per layer ``(start, length)`` of ``pi_x, pi_h, pi_i, pi_hh, pi_b``, flat; ``(0, 0)`` without a bias."""
    flat = []
    for layer in spec.layers:
        for s in layer.slices:
            flat += [s.start, s.length]
        flat += [0, 0] * (5 - len(layer.slices))
    return flat


def _loop_thresholds() -> tuple[int, int, int]:
    """What the C++ loop reads of :func:`packing_thresholds`: ``min_steps`` (MKL-packed operands),
    ``min_slice_rows`` and ``max_slice_weights`` (the batch in slices)."""
    thresholds = packing_thresholds()
    return thresholds.min_steps, thresholds.min_slice_rows, thresholds.max_slice_weights


def forward_arguments(lt: LayerTensors, ops: ForwardOperands, saved: SavedLayer, raw: Tensor) -> list[Tensor | None]:
    """One layer's arguments of ``chain_forward``, in the C++ loop's order: its tensors, the
    operands but ``adapt_x``, its buffers, its raw-output buffer."""
    return [*lt, ops.adapt_rec, ops.adapt_bias, ops.project, ops.weight_ih, ops.weight_hh, *saved, raw]


def backward_arguments(
    lt: LayerTensors,
    weights: Weights,
    saved: SavedLayer,
    raw: Tensor | None,
    d_raw: Tensor | None,
    d_state: LayerState,
    d_weights: WeightGrads,
) -> list[Tensor | None]:
    """One layer's arguments of ``chain_backward``, in the C++ loop's order: its tensors, its weights,
    its buffers, its raw output (aRNN) and that output's gradient, the running state gradients and
    the weight-gradient accumulators (both updated in place)."""
    return [*lt, *weights, *saved, raw, d_raw, *d_state, *d_weights]


def forward(
    spec: ChainSpec,
    x: Tensor,
    a_below: Tensor | None,
    step_mask: Tensor | None,
    layers: list[LayerTensors],
    save: bool,
) -> ForwardResult:
    """:func:`~alstm_lightning.layers.fused.forward.forward`, its loop in C++."""
    ops = native_ops()
    setup = forward_setup(spec, x, step_mask, layers, save, reorder_float32=not ops.packs_float_operands())
    tensors = [t for args in map(forward_arguments, layers, *setup) for t in args]
    finals = iter(
        ops.chain_forward(
            x,
            adaptation_input_term(x, setup.operands[0]),
            a_below,
            None if step_mask is None else step_mask.contiguous(),
            tensors,
            _slices(spec),
            spec.lstm,
            spec.wrap,
            spec.mm_dtype,
            *_loop_thresholds(),
            not save,  # an untracked call keeps its MKL-packed weights' buffers for the next one
        )
    )
    states = [[next(finals), next(finals) if spec.lstm else None, next(finals), next(finals)] for _ in layers]
    return forward_result(spec, setup, states, save)


def backward(
    spec: ChainSpec,
    saved: list[SavedLayer],
    x: Tensor,
    step_mask: Tensor | None,
    layers: list[LayerTensors],
    raws: list[Tensor],
    grads: ChainGrads,
    needs: tuple[bool, bool],
) -> tuple[Tensor | None, Tensor | None, list[LayerTensors]]:
    """:func:`~alstm_lightning.layers.fused.backward.backward`, its loop in C++."""
    d_x, d_a_below, d_state = input_grads_and_state(x, layers, grads, needs)
    d_weights = [weight_grads(spec, k, lt, x) for k, lt in enumerate(layers)]
    tensors: list[Tensor | None] = []
    for k, lt in enumerate(layers):
        raw = None if spec.lstm else raws[k]
        weights = layer_weights(spec, k, lt)
        tensors += backward_arguments(lt, weights, saved[k], raw, grads.raw[k], d_state[k], d_weights[k])
    native_ops().chain_backward(
        x,
        None if step_mask is None else step_mask.contiguous(),
        tensors,
        _slices(spec),
        spec.lstm,
        spec.wrap,
        grads.adapt_seq,
        d_x,
        d_a_below,
        spec.mm_dtype,
        *_loop_thresholds()[1:],
    )
    return d_x, d_a_below, [layer_grads(lt, dw, d) for lt, dw, d in zip(layers, d_weights, d_state)]
