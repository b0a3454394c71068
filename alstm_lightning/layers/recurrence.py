"""The time loop of a chain of adaptive layers: the straightforward per-step reference path.

A *chain* is a group of layers stepped together in time (all layers of a unidirectional stack, or
one layer of one direction of a bidirectional stack). At step t, layer l of the chain computes

    a, a_c = LSTMCell_l([x, h_{l,t-1}, a_below], (a, a_c))     # adaptation model
    a      = a ⊙ m_a                                            # variational adaptation dropout
    pi     = tanh(P_l a)                                        # policy
    h, c   = cell_l(x, (h_{l,t-1}, c), split(pi))               # adaptive cell
    h      = h ⊙ m_h                                            # variational hidden dropout

where ``a_below`` is the (dropped) adaptation state of layer l-1 at step t; for the chain's first
layer it is the chain's *top* layer's adaptation state from step t-1 (``wrap=True``, the hybrid
RHN-LSTM adaptation), or a given sequence (``a_below``), or absent (single-layer stacks).
The dropped ``h`` recurs and is the next layer's input ``x``. With a ``step_mask``, padded steps
leave every state unchanged.

:mod:`alstm_lightning.layers.fused` implements the same function, faster.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .cell import AdaptiveCell
from .policy import Project, split_policy


class ChainLayer(NamedTuple):
    """The modules and dropout masks of one layer of a chain.

    ``h_mask: (B, H_l)`` and ``a_mask: (B, A)`` are ``None`` when that dropout is off.
    """

    adapt: nn.LSTMCell
    project: Project
    cell: AdaptiveCell
    h_mask: Tensor | None
    a_mask: Tensor | None


class LayerState(NamedTuple):
    """One layer's state: ``h, c: (B, H_l)`` (``c`` is ``None`` for the aRNN), ``a, a_c: (B, A)``."""

    h: Tensor
    c: Tensor | None
    a: Tensor
    a_c: Tensor


class ChainResult(NamedTuple):
    """What a chain returns.

    Fields:
        raw: per layer, outputs before dropout, ``(T, B, H_l)``.
        dropped: per layer, outputs after dropout (the next layer's input), ``(T, B, H_l)``.
        adapt_seq: the last layer's dropped adaptation states ``(T, B, A)`` when asked for, else ``None``.
        states: per layer, the final :class:`LayerState`.
    """

    raw: list[Tensor]
    dropped: list[Tensor]
    adapt_seq: Tensor | None
    states: list[LayerState]


def _keep_where(mask: Tensor | None, new: Tensor | None, old: Tensor | None) -> Tensor | None:
    """``new`` on rows where ``mask`` (``(B, 1)``) is true, ``old`` elsewhere."""
    if mask is None or new is None:
        return new
    return torch.where(mask, new, old)


def run_chain_naive(
    x: Tensor,
    layers: list[ChainLayer],
    states: list[LayerState],
    *,
    wrap: bool,
    a_below: Tensor | None = None,
    step_mask: Tensor | None = None,
    return_adapt_seq: bool = False,
) -> ChainResult:
    """Step a chain of adaptive layers through time with autograd recording every op.

    Args:
        x: the first layer's input, ``(T, B, I)``.
        layers: the chain's layers, bottom to top.
        states: their initial states.
        wrap: feed the top layer's previous adaptation state to the first layer.
        a_below: a ``(T, B, A)`` sequence fed to the first layer instead (used when ``wrap`` is off).
        step_mask: ``(T, B)`` bool, false on padded steps (packed input), or ``None``.
        return_adapt_seq: also return the last layer's adaptation states.

    Returns:
        A :class:`ChainResult`.
    """
    states = list(states)
    raw: list[list[Tensor]] = [[] for _ in layers]
    dropped: list[list[Tensor]] = [[] for _ in layers]
    adapt_seq: list[Tensor] = []
    for t in range(x.size(0)):
        valid = None if step_mask is None else step_mask[t].unsqueeze(-1)
        inp = x[t]
        below = states[-1].a if wrap else (None if a_below is None else a_below[t])
        for k, layer in enumerate(layers):
            h, c, a, a_c = states[k]
            adapt_in = [inp, h] if below is None else [inp, h, below]
            a_new, a_c_new = layer.adapt(torch.cat(adapt_in, -1), (a, a_c))
            if layer.a_mask is not None:
                a_new = a_new * layer.a_mask
            pi = split_policy(layer.project(a_new), layer.cell.policy_slices)
            h_raw, c_new = layer.cell.step(inp, h, c, pi, layer.cell.weight_ih, layer.cell.weight_hh, layer.cell.bias)
            h_new = h_raw if layer.h_mask is None else h_raw * layer.h_mask
            raw[k].append(h_raw)
            dropped[k].append(h_new)
            states[k] = LayerState(
                _keep_where(valid, h_new, h),
                _keep_where(valid, c_new, c),
                _keep_where(valid, a_new, a),
                _keep_where(valid, a_c_new, a_c),
            )
            inp, below = h_new, a_new
        if return_adapt_seq:
            adapt_seq.append(below)
    return ChainResult(
        [torch.stack(r) for r in raw],
        [torch.stack(d) for d in dropped],
        torch.stack(adapt_seq) if return_adapt_seq else None,
        states,
    )
