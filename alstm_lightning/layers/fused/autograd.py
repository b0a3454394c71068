"""The fused path's autograd glue: the chain as one node, and its entry points :func:`run_chain_fused`
(the C++ loop where it is available and covers the call, else the Python loop) and
:func:`run_chain_fused_python` (always the Python loop: the reference for the C++ one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from ..recurrence import ChainLayer, ChainResult, LayerState
from . import backward, forward, native
from .backward import ChainGrads
from .chain import ChainSpec, chain_spec, layer_tensors, unflatten
from .products import product_dtype


class Loops(NamedTuple):
    """One implementation of the loop over time: ``forward`` and ``backward`` with the signatures of
    :func:`~alstm_lightning.layers.fused.forward.forward` and
    :func:`~alstm_lightning.layers.fused.backward.backward`."""

    forward: Callable
    backward: Callable


PYTHON_LOOPS = Loops(forward.forward, backward.backward)
NATIVE_LOOPS = Loops(native.forward, native.backward)


def _outputs(
    spec: ChainSpec, raws: list[Tensor], adapt_seq: Tensor | None, finals: list[list[Tensor | None]]
) -> list[Tensor]:
    """The node's outputs in order: raw outputs per layer, [adaptation sequence], final states per layer."""
    outputs = list(raws)
    if spec.return_adapt_seq:
        outputs.append(adapt_seq)
    for state in finals:
        outputs.extend(s for s in state if s is not None)
    return outputs


def _split_outputs(spec: ChainSpec, outputs: list) -> tuple[list, object, list[LayerState]]:
    """The inverse of :func:`_outputs`: ``(raws, adapt_seq, final states)`` (also for their gradients)."""
    L = len(spec.layers)
    rest = iter(outputs[L + (1 if spec.return_adapt_seq else 0) :])
    states = [LayerState(next(rest), next(rest) if spec.lstm else None, next(rest), next(rest)) for _ in range(L)]
    return list(outputs[:L]), outputs[L] if spec.return_adapt_seq else None, states


class FusedChain(torch.autograd.Function):
    """The whole chain over the whole sequence as one autograd node.

    Arguments: ``spec, loops, x, a_below, step_mask, *flat`` with the tensors (or ``None``) of every
    layer's :class:`~alstm_lightning.layers.fused.chain.LayerTensors`, flat; ``loops`` is the
    implementation of the loop over time, which the backward uses too. Outputs: the raw outputs per
    layer, the adaptation sequence when ``spec.return_adapt_seq``, then per layer the final
    ``h, [c,] a, a_c``.
    """

    @staticmethod
    def forward(ctx, spec: ChainSpec, loops: Loops, x, a_below, step_mask, *flat):
        result = loops.forward(spec, x, a_below, step_mask, unflatten(flat), save=True)
        ctx.spec = spec
        ctx.loops = loops
        ctx.saved = result.saved
        # the outputs are saved only through save_for_backward (a plain attribute would be a cycle)
        ctx.save_for_backward(x, a_below, step_mask, *flat, *([] if spec.lstm else result.raws))
        ctx.set_materialize_grads(False)
        adapt_seq = None if result.adapt_seq is None else result.adapt_seq.clone()
        return tuple(_outputs(spec, result.raws, adapt_seq, result.finals))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        spec: ChainSpec = ctx.spec
        x, a_below, step_mask, *rest = ctx.saved_tensors
        n_flat = len(rest) if spec.lstm else len(rest) - len(spec.layers)
        layers, raws = unflatten(rest[:n_flat]), rest[n_flat:]
        with torch.autocast(x.device.type, enabled=False):
            d_x, d_below, d_layers = ctx.loops.backward(
                spec,
                ctx.saved,
                x,
                step_mask,
                layers,
                raws,
                ChainGrads(*_split_outputs(spec, list(grads))),
                ctx.needs_input_grad[2:4],
            )
        return (None, None, d_x, d_below, None, *[g for layer in d_layers for g in layer])


def run_chain_fused(
    x: Tensor,
    layers: list[ChainLayer],
    states: list[LayerState],
    *,
    wrap: bool,
    a_below: Tensor | None = None,
    step_mask: Tensor | None = None,
    return_adapt_seq: bool = False,
) -> ChainResult:
    """Step a chain of adaptive layers through time: the fast path, one autograd node per chain.

    Same arguments and result as :func:`~alstm_lightning.layers.recurrence.run_chain_naive`; the
    dropout masks are constants (no gradient flows to them). The loop over time runs in C++ where
    the extension is available and covers the call (see :mod:`~alstm_lightning.layers.fused.native`;
    ``ALSTM_NATIVE=0`` forces the Python loop), else in Python; the results are the same.
    """
    return _run(x, layers, states, wrap, a_below, step_mask, return_adapt_seq, use_native=True)


def run_chain_fused_python(
    x: Tensor,
    layers: list[ChainLayer],
    states: list[LayerState],
    *,
    wrap: bool,
    a_below: Tensor | None = None,
    step_mask: Tensor | None = None,
    return_adapt_seq: bool = False,
) -> ChainResult:
    """:func:`run_chain_fused` with its loop over time always in Python: the C++ loop's reference."""
    return _run(x, layers, states, wrap, a_below, step_mask, return_adapt_seq, use_native=False)


def _run(
    x: Tensor,
    layers: list[ChainLayer],
    states: list[LayerState],
    wrap: bool,
    a_below: Tensor | None,
    step_mask: Tensor | None,
    return_adapt_seq: bool,
    use_native: bool,
) -> ChainResult:
    device_type = x.device.type
    dtype = layers[0].cell.weight_ih.dtype
    largest_weight = max(max(layer.cell.weight_ih.numel(), layer.cell.weight_hh.numel()) for layer in layers)
    spec = chain_spec(
        layers,
        wrap=wrap,
        has_a_below=a_below is not None,
        return_adapt_seq=return_adapt_seq,
        mm_dtype=product_dtype(device_type, dtype, largest_weight),
    )
    flat = [t for layer, state in zip(layers, states) for t in layer_tensors(layer, state, dtype)]
    x = x.to(dtype).contiguous()
    loops = NATIVE_LOOPS if use_native and _native_covers(spec, x) else PYTHON_LOOPS
    a_below = None if a_below is None else a_below.to(dtype)
    tracked = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in [x, a_below, *flat])
    with torch.autocast(device_type, enabled=False):
        if tracked:
            outputs = list(FusedChain.apply(spec, loops, x, a_below, step_mask, *flat))
        else:
            result = loops.forward(spec, x, a_below, step_mask, unflatten(flat), save=False)
            outputs = _outputs(spec, result.raws, result.adapt_seq, result.finals)
    raw, adapt_seq, final_states = _split_outputs(spec, outputs)
    dropped = [r if layer.h_mask is None else r * layer.h_mask.to(dtype) for r, layer in zip(raw, layers)]
    return ChainResult(raw, dropped, adapt_seq, final_states)


def _native_covers(spec: ChainSpec, x: Tensor) -> bool:
    # native_ops() last: a call the C++ loop does not cover never triggers the build
    return native.enabled() and native.supports(spec, x) and native.native_ops() is not None
