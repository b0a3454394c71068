r"""The fused path's forward: the chain stepped through time without autograd, keeping what the backward reads.

Per step and layer it runs four products (the adaptation model on ``u = [x (layers > 0), h,
a_below, a]``, the policy ``P a``, ``W_ih x'`` and ``W_hh h'``) on weights arranged once per call
(:func:`~alstm_lightning.layers.fused.products.step_operand`); layer 0's adaptation-model input
term ``W^a_x x + b^a`` is one product over the whole sequence before the loop (``W_ih x`` cannot
leave it: ``x`` is scaled by ``pi_x`` at every step). When training, the step's values go straight
into ``(T, B, *)`` buffers (:class:`SavedLayer`); the policy ``pi`` and the activated gates, the
widest per-step tensors, are not kept but recomputed by the backward.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..policy import split_policy
from .chain import ChainSpec, LayerTensors, adapt_step_width, layer_weights
from .gates import lstm_activate, lstm_update, policy_gates
from .products import mm, step_operand


class ForwardOperands(NamedTuple):
    """One layer's weights as the right operands of the forward's products (see :func:`step_operand`)."""

    adapt_x: Tensor | None  # (I, 4A), layer 0 only: one product over the whole sequence
    adapt_rec: Tensor  # (K, 4A)
    adapt_bias: Tensor | None  # (4A,) b_ih + b_hh, state dtype
    project: Tensor  # (A, span)
    weight_ih: Tensor  # (I, G*H)
    weight_hh: Tensor  # (H, G*H)


class SavedLayer(NamedTuple):
    """One layer's ``(T, B, width)`` buffers, filled step by step; ``None`` where nothing is kept.

    The products' operands and results (``u, x_p, h_p, gx, gh``) are in the matmul dtype, the
    rest in the parameters' dtype. Without gradients only ``a_new`` of the last layer is kept, and
    only when the chain returns its adaptation sequence.
    """

    u: Tensor | None  # (T, B, K): [x (layers > 0), h, a_below, a] before the step
    a_gates: Tensor | None  # (T, B, 4A): the adaptation LSTM's activated gates i, f, g, o
    a_c_new: Tensor | None  # (T, B, A): its cell state after the step
    a_c_kept: Tensor | None  # (T, B, A): the same where the step is valid, else the old one (step mask only)
    a_new: Tensor | None  # (T, B, A): the (dropped) adaptation state after the step
    x_p: Tensor | None  # (T, B, I): x ⊙ pi_x
    h_p: Tensor | None  # (T, B, H): h ⊙ pi_h
    gx: Tensor | None  # (T, B, G*H): W_ih x'
    gh: Tensor | None  # (T, B, G*H): W_hh h'
    c_new: Tensor | None  # (T, B, H): the cell state after the step (aLSTM)
    c_kept: Tensor | None  # (T, B, H): as a_c_kept, for c (aLSTM, step mask only)


class ForwardResult(NamedTuple):
    """What :func:`forward` returns.

    Fields:
        raws: per layer, the outputs before dropout, ``(T, B, H_l)``.
        adapt_seq: the last layer's adaptation states ``(T, B, A)`` when the chain returns them.
        finals: per layer, the final ``[h, c, a, a_c]`` (``c`` is ``None`` for the aRNN).
        saved: per layer, what the backward reads, or ``None`` without ``save``.
    """

    raws: list[Tensor]
    adapt_seq: Tensor | None
    finals: list[list[Tensor | None]]
    saved: list[SavedLayer] | None


def forward_operands(
    spec: ChainSpec, layers: list[LayerTensors], rows: int, steps: int, reorder_float32: bool = True
) -> list[ForwardOperands]:
    """Every layer's :class:`ForwardOperands` for ``steps`` products with ``rows`` rows
    (``reorder_float32``: see :func:`step_operand`)."""

    def operand(b: Tensor) -> Tensor:
        return step_operand(b, rows, steps, reorder_float32)

    operands = []
    for k, lt in enumerate(layers):
        w = layer_weights(spec, k, lt)
        operands.append(
            ForwardOperands(
                adapt_x=None if w.adapt_x is None else w.adapt_x.t(),
                adapt_rec=operand(w.adapt_rec.t()),
                adapt_bias=None if lt.adapt_bias_ih is None else lt.adapt_bias_ih + lt.adapt_bias_hh,
                project=operand(w.project.t()),
                weight_ih=operand(w.weight_ih.t()),
                weight_hh=operand(w.weight_hh.t()),
            )
        )
    return operands


def saved_layer(spec: ChainSpec, k: int, lt: LayerTensors, x: Tensor, save: bool, masked: bool) -> SavedLayer:
    """Layer ``k``'s buffers (see :class:`SavedLayer`), uninitialised."""
    T, B = x.shape[:2]
    lspec = spec.layers[k]
    H, A, G = lspec.hidden_size, lt.a.size(1), lt.weight_ih.size(0)

    def buffer(width: int, keep: bool = save, dtype: torch.dtype | None = None) -> Tensor | None:
        return x.new_empty(T, B, width, dtype=dtype) if keep else None

    md = spec.mm_dtype
    last = k == len(spec.layers) - 1
    return SavedLayer(
        u=buffer(adapt_step_width(spec, k, lt), dtype=md),
        a_gates=buffer(4 * A),
        a_c_new=buffer(A),
        a_c_kept=buffer(A, save and masked),
        a_new=buffer(A, save or (last and spec.return_adapt_seq)),
        x_p=buffer(lspec.input_size, dtype=md),
        h_p=buffer(H, dtype=md),
        gx=buffer(G, dtype=md),
        gh=buffer(G, dtype=md),
        c_new=buffer(H, save and spec.lstm),
        c_kept=buffer(H, save and spec.lstm and masked),
    )


def adaptation_input_term(x: Tensor, first: ForwardOperands) -> Tensor:
    """Layer 0's adaptation-model input term ``W^a_x x + b^a`` for every step at once, ``(T, B, 4A)``."""
    T, B = x.shape[:2]
    xa = mm(x.reshape(T * B, -1), first.adapt_x)  # (T*B, I) @ (I, 4A)
    if first.adapt_bias is not None:
        xa += first.adapt_bias
    return xa.view(T, B, -1)


class ForwardSetup(NamedTuple):
    """What a forward prepares once per call, whichever loop (Python or C++) then runs the steps."""

    operands: list[ForwardOperands]
    saved: list[SavedLayer]
    raws: list[Tensor]  # per layer, the (T, B, H) raw outputs the loop fills


def forward_setup(
    spec: ChainSpec,
    x: Tensor,
    step_mask: Tensor | None,
    layers: list[LayerTensors],
    save: bool,
    reorder_float32: bool = True,
) -> ForwardSetup:
    """The per-call operands, saved buffers and output buffers of a forward on ``x`` (``(T, B, I)``);
    ``reorder_float32``: see :func:`~alstm_lightning.layers.fused.products.step_operand`."""
    T, B = x.shape[:2]
    return ForwardSetup(
        forward_operands(spec, layers, B, T, reorder_float32),
        [saved_layer(spec, k, lt, x, save, step_mask is not None) for k, lt in enumerate(layers)],
        [x.new_empty(T, B, s.hidden_size) for s in spec.layers],
    )


def forward_result(spec: ChainSpec, setup: ForwardSetup, finals: list[list[Tensor | None]], save: bool) -> ForwardResult:
    """The :class:`ForwardResult` of a loop that filled ``setup`` and ended in the states ``finals``."""
    adapt_seq = setup.saved[-1].a_new if spec.return_adapt_seq else None
    return ForwardResult(setup.raws, adapt_seq, finals, setup.saved if save else None)


def _slot(buffer: Tensor | None, t: int) -> Tensor | None:
    """Step ``t`` of a saved ``(T, ...)`` buffer, or ``None`` (a fresh tensor) when nothing is saved."""
    return None if buffer is None else buffer[t]


def _step_out(buffer: Tensor | None, t: int, like: Tensor, width: int, dtype: torch.dtype) -> Tensor:
    """Step ``t`` of a saved ``(T, B, width)`` buffer, or a fresh ``(B, width)`` tensor of ``dtype`` like ``like``."""
    return like.new_empty(like.size(0), width, dtype=dtype) if buffer is None else buffer[t]


def forward(
    spec: ChainSpec,
    x: Tensor,
    a_below: Tensor | None,
    step_mask: Tensor | None,
    layers: list[LayerTensors],
    save: bool,
) -> ForwardResult:
    """Run the chain without autograd.

    Args:
        spec: the chain's description.
        x: the first layer's input, ``(T, B, I)``, contiguous, in the parameters' dtype.
        a_below: ``(T, B, A)`` fed to the first layer (when ``spec.wrap`` is off), or ``None``.
        step_mask: ``(T, B)`` bool, false on padded steps, or ``None``.
        layers: each layer's tensors.
        save: keep what the backward needs.

    Returns:
        A :class:`ForwardResult`.
    """
    T = x.size(0)
    md = spec.mm_dtype
    setup = forward_setup(spec, x, step_mask, layers, save)
    operands, saved, raws = setup
    widths = [
        (s.hidden_size, adapt_step_width(spec, k, lt), 4 * lt.a.size(1), lt.weight_ih.size(0))
        for k, (s, lt) in enumerate(zip(spec.layers, layers))
    ]
    xa = adaptation_input_term(x, operands[0])

    states = [[lt.h, lt.c, lt.a, lt.a_c] for lt in layers]
    for t in range(T):
        valid = None if step_mask is None else step_mask[t].unsqueeze(-1)
        inp = x[t]
        below = states[-1][2] if spec.wrap else (None if a_below is None else a_below[t])
        for k, (lspec, lt, ops, buf, (H, K, A4, G)) in enumerate(zip(spec.layers, layers, operands, saved, widths)):
            h, c, a, a_c = states[k]
            # adaptation model: one GEMM on [x (layers > 0), h, a_below, a]
            parts = [h, a] if below is None else [h, below, a]
            if k > 0:
                parts.insert(0, inp)
            u = torch.cat(parts, 1, out=_step_out(buf.u, t, h, K, md))
            add = xa[t] if k == 0 else ops.adapt_bias
            ga = mm(u, ops.adapt_rec, out=_step_out(buf.a_gates, t, h, A4, h.dtype), add=add)
            a_new, a_c_new = lstm_update(lstm_activate(ga), a_c, _slot(buf.a_c_new, t), _slot(buf.a_new, t))
            if lt.a_mask is not None:
                a_new.mul_(lt.a_mask)
            # policy and adaptive cell
            pi = mm(a_new, ops.project).tanh_()
            pi_x, pi_h, pi_i, pi_hh, pi_b = split_policy(pi, lspec.slices)
            xp = torch.mul(inp, pi_x, out=_step_out(buf.x_p, t, h, lspec.input_size, md))
            hp = torch.mul(h, pi_h, out=_step_out(buf.h_p, t, h, H, md))
            gx = mm(xp, ops.weight_ih, out=_step_out(buf.gx, t, h, G, md))
            gh = mm(hp, ops.weight_hh, out=_step_out(buf.gh, t, h, G, md))
            gates = policy_gates(gx, gh, pi_i, pi_hh, pi_b, lt.bias)
            h_raw = raws[k][t]
            if spec.lstm:
                _, c_new = lstm_update(lstm_activate(gates), c, _slot(buf.c_new, t), h_raw)
            else:
                c_new = None
                torch.tanh(gates, out=h_raw)
            h_new = h_raw if lt.h_mask is None else h_raw * lt.h_mask
            if valid is None:
                states[k] = [h_new, c_new, a_new, a_c_new]
            else:
                states[k] = [
                    torch.where(valid, h_new, h),
                    None if c is None else torch.where(valid, c_new, c, out=_slot(buf.c_kept, t)),
                    torch.where(valid, a_new, a),
                    torch.where(valid, a_c_new, a_c, out=_slot(buf.a_c_kept, t)),
                ]
            inp, below = h_new, a_new
    finals = [[None if s is None else s.clone() for s in state] for state in states]
    return forward_result(spec, setup, finals, save)
