"""What the fused path works on: a chain's static description and each layer's tensors, in one order."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..policy import PolicySlice
from ..recurrence import ChainLayer, LayerState


class LayerSpec(NamedTuple):
    """Static description of one layer of a chain (no tensors)."""

    input_size: int
    hidden_size: int
    slices: tuple[PolicySlice, ...]
    span: int  # policy units in use: rows [0, span) of the projection
    back_to_back: bool  # the slices tile [0, span) in order (the "paper" layout)
    has_below: bool  # the adaptation model reads an adaptation state from below


class ChainSpec(NamedTuple):
    """Static description of a chain: what the fused path needs besides tensors."""

    layers: tuple[LayerSpec, ...]
    lstm: bool  # aLSTM (gates i, f, g, o and a cell state) or aRNN (one tanh block)
    wrap: bool
    return_adapt_seq: bool
    mm_dtype: torch.dtype  # the dtype of every matrix product (see products.product_dtype)


class LayerTensors(NamedTuple):
    """One layer's tensor inputs in the parameters' dtype; the autograd node takes them flat, in this order.

    ``h, c: (B, H)`` (``c`` is ``None`` for the aRNN), ``a, a_c: (B, A)``, then the parameters as
    named in :class:`~alstm_lightning.layers.recurrence.ChainLayer`'s modules, then the dropout
    masks ``h_mask: (B, H)``, ``a_mask: (B, A)`` (``None`` when off). The backward returns the
    gradients in the same structure.
    """

    h: Tensor | None
    c: Tensor | None
    a: Tensor | None
    a_c: Tensor | None
    adapt_weight_ih: Tensor | None  # (4A, I + H [+ A])
    adapt_weight_hh: Tensor | None  # (4A, A)
    adapt_bias_ih: Tensor | None  # (4A,)
    adapt_bias_hh: Tensor | None  # (4A,)
    project_weight: Tensor | None  # (P, A)
    weight_ih: Tensor | None  # (G*H, I)
    weight_hh: Tensor | None  # (G*H, H)
    bias: Tensor | None  # (G*H,)
    h_mask: Tensor | None
    a_mask: Tensor | None


SLOTS = len(LayerTensors._fields)


def layer_tensors(layer: ChainLayer, state: LayerState, dtype: torch.dtype) -> LayerTensors:
    """``layer``'s parameters and masks and its initial ``state``, cast to ``dtype``."""
    adapt, cell = layer.adapt, layer.cell
    tensors = (
        *state,
        adapt.weight_ih,
        adapt.weight_hh,
        adapt.bias_ih,
        adapt.bias_hh,
        layer.project.linear.weight,
        cell.weight_ih,
        cell.weight_hh,
        cell.bias,
        layer.h_mask,
        layer.a_mask,
    )
    return LayerTensors(*(None if t is None else t.to(dtype) for t in tensors))


def unflatten(flat: tuple[Tensor | None, ...] | list[Tensor | None]) -> list[LayerTensors]:
    """The inverse of ``[t for layer in layers for t in layer]``."""
    return [LayerTensors(*flat[k : k + SLOTS]) for k in range(0, len(flat), SLOTS)]


def chain_spec(
    layers: list[ChainLayer], *, wrap: bool, has_a_below: bool, return_adapt_seq: bool, mm_dtype: torch.dtype
) -> ChainSpec:
    """The static description of a chain of ``layers`` (``has_a_below``: a sequence is fed from below)."""
    specs = []
    for k, layer in enumerate(layers):
        slices = layer.cell.policy_slices
        back_to_back = all(s.start == sum(p.length for p in slices[:j]) for j, s in enumerate(slices))
        specs.append(
            LayerSpec(
                layer.cell.input_size,
                layer.cell.hidden_size,
                slices,
                max(s.start + s.length for s in slices),
                back_to_back,
                k > 0 or wrap or has_a_below,
            )
        )
    return ChainSpec(tuple(specs), layers[0].cell.has_cell_state, wrap, return_adapt_seq, mm_dtype)


class Weights(NamedTuple):
    """One layer's weights in the matmul dtype, as stored (views where no cast is needed).

    The backward's products ``(B, n) @ W`` read them as they are. A oneDNN-packed copy would
    multiply faster (1.0 vs 1.36 ms at ``ptb``'s ``(20, 4600) @ (4600, 1150)``, fp32), but making it
    from the transpose took 23 ms, about what 70 steps would save.
    """

    adapt_x: Tensor | None  # (4A, I), layer 0 only: the adaptation model's columns for x
    adapt_rec: Tensor  # (4A, K), its columns for the per-step input [x (layers > 0), h, a_below, a]
    project: Tensor  # (span, A), the projection rows in use
    weight_ih: Tensor  # (G*H, I)
    weight_hh: Tensor  # (G*H, H)


def layer_weights(spec: ChainSpec, k: int, lt: LayerTensors) -> Weights:
    """Layer ``k``'s weights in the matmul dtype."""
    md = spec.mm_dtype
    adapt = torch.cat([lt.adapt_weight_ih, lt.adapt_weight_hh], 1).to(md)  # (4A, I + H [+ A] + A)
    i = spec.layers[k].input_size
    adapt_x, adapt_rec = (adapt[:, :i], adapt[:, i:]) if k == 0 else (None, adapt)
    project = lt.project_weight[: spec.layers[k].span].to(md)
    return Weights(adapt_x, adapt_rec, project, lt.weight_ih.to(md), lt.weight_hh.to(md))


def adapt_step_width(spec: ChainSpec, k: int, lt: LayerTensors) -> int:
    """``K``, the width of layer ``k``'s per-step adaptation input ``[x (layers > 0), h, a_below, a]``."""
    width = lt.adapt_weight_ih.size(1) + lt.adapt_weight_hh.size(1)
    return width - spec.layers[k].input_size if k == 0 else width
