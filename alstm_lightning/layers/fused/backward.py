r"""The fused path's backward through time: per-step gradients, weight gradients as chunked GEMMs.

Walking the steps backwards, each layer's step is differentiated by hand from the forward's
:class:`~alstm_lightning.layers.fused.forward.SavedLayer` buffers, which are only read (so
``retain_graph`` and ``gradcheck`` work). Every ``GRAD_CHUNK`` steps, two things happen per layer:

* the policy ``pi = tanh(P a)`` and the activated gates of the coming chunk are recomputed from the
  saved adaptation states and gate products (one ``(chunk*B, A) @ (A, span)`` product), since
  keeping them would more than double what a step saves (the C++ loop recomputes them step by
  step instead: a chunk's worth would not stay in cache until it is read);
* the chunk's per-step gradients, gathered in :class:`ChunkBuffers`, enter the weight gradients as
  GEMMs over ``chunk*B`` rows, instead of ``T`` rank-``B`` updates (the naive path's main cost):
  ``dW_ih = d_gx^T x'``, ``dW_hh = d_gh^T h'``, ``dP = d_pre^T a``, ``dW^a = d_a_gates^T u``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..policy import split_policy
from ..recurrence import LayerState
from .chain import ChainSpec, LayerSpec, LayerTensors, Weights, adapt_step_width, layer_weights
from .forward import SavedLayer
from .gates import lstm_activate, lstm_backward, policy_gates
from .products import accumulate_mm, mm

#: Steps whose gradients are gathered before the weight-gradient GEMMs run on them (``chunk*B`` rows):
#: large enough for efficient GEMMs, small enough that the gradient buffers stay small.
GRAD_CHUNK = 16


class ChainGrads(NamedTuple):
    """The gradients of the chain's outputs (``None`` where an output is unused).

    Fields:
        raw: per layer, of the outputs before dropout, ``(T, B, H_l)``.
        adapt_seq: of the last layer's adaptation sequence ``(T, B, A)``, when the chain returns it.
        states: per layer, of the final state.
    """

    raw: list[Tensor | None]
    adapt_seq: Tensor | None
    states: list[LayerState]


class ChunkBuffers(NamedTuple):
    """One layer's ``(chunk, B, width)`` buffers for the current chunk of steps.

    ``pi`` is recomputed from the saved buffers; the rest are gradients written step by step and
    read by the weight-gradient GEMMs (those only read by products are in the matmul dtype).
    """

    pi: Tensor  # (chunk, B, span): the policy in use
    d_a_gates: Tensor  # (chunk, B, 4A): of the adaptation LSTM's pre-activations
    d_pre: Tensor  # (chunk, B, span): of the policy's pre-activations P a
    d_gx: Tensor  # (chunk, B, G*H): of W_ih x'
    d_gh: Tensor  # (chunk, B, G*H): of W_hh h'


class WeightGrads(NamedTuple):
    """One layer's weight gradients, accumulated chunk by chunk (in place)."""

    adapt_x: Tensor | None  # (4A, I), layer 0 only
    adapt_rec: Tensor  # (4A, K)
    adapt_bias: Tensor | None  # (4A,), shared by b_ih and b_hh
    project: Tensor  # (span, A), column-major: its GEMMs run 1.2-1.6x faster so (span >> A)
    weight_ih: Tensor  # (G*H, I)
    weight_hh: Tensor  # (G*H, H)
    bias: Tensor | None  # (G*H,)


class _Layer(NamedTuple):
    """Everything the backward reads or writes for one layer."""

    spec: LayerSpec
    tensors: LayerTensors
    weights: Weights
    saved: SavedLayer
    chunk: ChunkBuffers
    grads: WeightGrads


def weight_grads(spec: ChainSpec, k: int, lt: LayerTensors, like: Tensor) -> WeightGrads:
    """Layer ``k``'s :class:`WeightGrads`, zeros."""
    lspec = spec.layers[k]
    A4, G = lt.adapt_weight_ih.size(0), lt.weight_ih.size(0)
    return WeightGrads(
        adapt_x=like.new_zeros(A4, lspec.input_size) if k == 0 else None,
        adapt_rec=like.new_zeros(A4, adapt_step_width(spec, k, lt)),
        adapt_bias=None if lt.adapt_bias_ih is None else like.new_zeros(A4),
        project=like.new_zeros(lt.a.size(1), lspec.span).t(),
        weight_ih=like.new_zeros(G, lspec.input_size),
        weight_hh=like.new_zeros(G, lspec.hidden_size),
        bias=None if lt.bias is None else like.new_zeros(G),
    )


def _chunk_buffers(spec: ChainSpec, k: int, lt: LayerTensors, like: Tensor) -> ChunkBuffers:
    chunk, B = min(GRAD_CHUNK, like.size(0)), like.size(1)
    span, md, G = spec.layers[k].span, spec.mm_dtype, lt.weight_ih.size(0)
    return ChunkBuffers(
        pi=like.new_empty(chunk, B, span),
        d_a_gates=like.new_empty(chunk, B, lt.adapt_weight_ih.size(0)),
        d_pre=like.new_empty(chunk, B, span, dtype=md),
        d_gx=like.new_empty(chunk, B, G, dtype=md),
        d_gh=like.new_empty(chunk, B, G, dtype=md),
    )


def _refill(layer: _Layer, lstm: bool, start: int, stop: int) -> Tensor | None:
    """Recompute the policy for steps ``[start, stop)`` into ``layer.chunk.pi``; return the aLSTM's
    activated gates for those steps, ``(stop - start, B, 4H)`` (``None`` for the aRNN)."""
    n, B = stop - start, layer.chunk.pi.size(1)
    pi = layer.chunk.pi[:n]
    mm(layer.saved.a_new[start:stop].reshape(n * B, -1), layer.weights.project.t(), out=pi.view(n * B, -1)).tanh_()
    if not lstm:
        return None
    _, _, pi_i, pi_hh, pi_b = split_policy(pi, layer.spec.slices)
    gates = policy_gates(layer.saved.gx[start:stop], layer.saved.gh[start:stop], pi_i, pi_hh, pi_b, layer.tensors.bias)
    lstm_activate(gates.view(n * B, -1))
    return gates


def _flush(
    layer: _Layer,
    first: bool,
    x: Tensor,
    d_x: Tensor | None,
    start: int,
    stop: int,
    mm_dtype: torch.dtype,
    scratch: tuple[Tensor, Tensor] | None,
) -> None:
    """Add steps ``[start, stop)`` of the layer's chunk buffers to its weight gradients (and, for the
    chain's ``first`` layer, the adaptation model's share of ``d_x``)."""
    n = stop - start
    rows = n * x.size(1)
    saved, chunk, dw = layer.saved, layer.chunk, layer.grads

    def flat(t: Tensor) -> Tensor:
        return t.reshape(rows, -1)

    d_a_gates = flat(chunk.d_a_gates[:n])
    accumulate_mm(dw.adapt_rec, d_a_gates.t(), flat(saved.u[start:stop]), mm_dtype, scratch)
    if dw.adapt_bias is not None:
        dw.adapt_bias.add_(d_a_gates.sum(0))
    if first:
        accumulate_mm(dw.adapt_x, d_a_gates.t(), flat(x[start:stop]), mm_dtype, scratch)
        if d_x is not None:
            flat(d_x[start:stop]).add_(mm(d_a_gates, layer.weights.adapt_x))
    accumulate_mm(dw.project, flat(chunk.d_pre[:n]).t(), flat(saved.a_new[start:stop]), mm_dtype, scratch)
    accumulate_mm(dw.weight_ih, flat(chunk.d_gx[:n]).t(), flat(saved.x_p[start:stop]), mm_dtype, scratch)
    accumulate_mm(dw.weight_hh, flat(chunk.d_gh[:n]).t(), flat(saved.h_p[start:stop]), mm_dtype, scratch)


class _StepGrads(NamedTuple):
    """What one layer's step hands on: gradients w.r.t. its state before the step and its inputs."""

    state: LayerState
    x_main: Tensor | None  # of the cell's input x through x' = x ⊙ pi_x, (B, I)
    u: Tensor  # of the adaptation model's input u, (B, K)


def _step_back(
    layer: _Layer,
    lstm: bool,
    first: bool,
    t: int,
    j: int,
    gates: Tensor | None,
    x: Tensor,
    raw: Tensor | None,
    step_mask: Tensor | None,
    valid: Tensor | None,
    d_state: LayerState,
    d_h_from_above: Tensor | None,
    d_a_from_above: Tensor | None,
    d_raw: Tensor | None,
    needs_x_main: bool,
) -> _StepGrads:
    """Differentiate one layer's step ``t`` (row ``j`` of the chunk), writing the chunk's gradient rows.

    Args:
        gates: the chunk's recomputed activated gates (aLSTM), ``(chunk, B, 4H)``.
        raw: the layer's outputs before dropout (aRNN only), ``(T, B, H)``.
        valid: ``(B, 1)`` in the state dtype, 1 on valid rows (step mask only).
        d_state: gradients w.r.t. the layer's state after the step.
        d_h_from_above, d_a_from_above: gradients w.r.t. this step's dropped ``h`` and ``a`` from
            the layer above (or, for ``a`` of the top layer, from the adaptation sequence).
        d_raw: the gradient of this step's output before dropout, or ``None``.
        needs_x_main: whether to return the gradient of ``x`` through ``x'``.
    """
    lspec, lt, w, saved, chunk = layer.spec, layer.tensors, layer.weights, layer.saved, layer.chunk
    dh_s, dc_s, da_s, dac_s = d_state
    I, H, A = lspec.input_size, lspec.hidden_size, lt.a.size(1)
    B = x.size(1)
    u = saved.u[t]  # [x (layers > 0), h, a_below, a] before the step
    off = 0 if first else I
    h_prev = u[:, off : off + H]
    x_t = x[t] if first else u[:, :I]
    # gradient of the dropped h and of the cell output h_raw
    dh_new = dh_s if valid is None else dh_s * valid
    if d_h_from_above is not None:
        dh_new = dh_new + d_h_from_above
    dh_raw = dh_new if lt.h_mask is None else dh_new * lt.h_mask
    if d_raw is not None:
        dh_raw = dh_raw + d_raw
    # through the cell's nonlinearities
    if lstm:
        dc_new = dc_s if valid is None else dc_s * valid
        c_prev = lt.c if t == 0 else (saved.c_kept if step_mask is not None else saved.c_new)[t - 1]
        dg, dc_prev = lstm_backward(gates[j], saved.c_new[t], c_prev, dh_raw, dc_new)
    else:
        h_raw = raw[t]
        dg = (1.0 - h_raw * h_raw).mul_(dh_raw)
        dc_prev = None
    # through gates = gx ⊙ pi_i + gh ⊙ pi_hh + b ⊙ pi_b
    pi = chunk.pi[j]
    pi_x, pi_h, pi_i, pi_hh, pi_b = split_policy(pi, lspec.slices)
    d_pi = [None, None, dg * saved.gx[t], dg * saved.gh[t]]
    if lt.bias is not None:
        d_pi.append(dg * lt.bias)
        layer.grads.bias.add_((dg * pi_b).sum(0))
    d_gx = torch.mul(dg, pi_i, out=chunk.d_gx[j])
    d_gh = torch.mul(dg, pi_hh, out=chunk.d_gh[j])
    d_xp = mm(d_gx, w.weight_ih, dtype=dg.dtype)  # (B, I): d (x ⊙ pi_x)
    d_hp = mm(d_gh, w.weight_hh, dtype=dg.dtype)  # (B, H): d (h ⊙ pi_h)
    d_pi[0] = d_xp * x_t
    d_pi[1] = d_hp * h_prev
    d_x_main = d_xp * pi_x if needs_x_main else None
    dh_prev = d_hp * pi_h
    # through pi = tanh(P a)
    if lspec.back_to_back:
        d_pi_full = torch.cat(d_pi, 1)
    else:
        # overlapping slices ("reference" layout): gradients of a shared unit add up
        d_pi_full = pi.new_zeros(B, lspec.span)
        for s, d in zip(lspec.slices, d_pi):
            d_pi_full[:, s.start : s.start + s.length] += d
    d_pre = torch.addcmul(d_pi_full, d_pi_full * pi, pi, value=-1.0, out=chunk.d_pre[j])
    da_new = mm(d_pre, w.project, dtype=dg.dtype)  # (B, A)
    if d_a_from_above is not None:
        da_new += d_a_from_above
    da_new += da_s if valid is None else da_s * valid
    if lt.a_mask is not None:
        da_new *= lt.a_mask
    # through the adaptation LSTM
    dac_new = dac_s if valid is None else dac_s * valid
    ac_prev = lt.a_c if t == 0 else (saved.a_c_kept if step_mask is not None else saved.a_c_new)[t - 1]
    d_a_gates, dac_prev = lstm_backward(
        saved.a_gates[t], saved.a_c_new[t], ac_prev, da_new, dac_new, out=chunk.d_a_gates[j]
    )
    du = mm(d_a_gates, w.adapt_rec)  # (B, K): d [x (layers > 0), h, a_below, a]
    # gradients w.r.t. the state before this step; padded rows pass theirs through
    state = LayerState(dh_prev.add_(du[:, off : off + H]), dc_prev, du[:, -A:], dac_prev)
    if valid is not None:
        carry = 1.0 - valid
        state = LayerState(*(None if n is None else n + old * carry for n, old in zip(state, d_state)))
    return _StepGrads(state, d_x_main, du)


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
    """Back-propagate through the chain; the saved buffers are read, never modified.

    Args:
        spec: the chain's description.
        saved: what :func:`~alstm_lightning.layers.fused.forward.forward` kept.
        x: the first layer's input, ``(T, B, I)``.
        step_mask: ``(T, B)`` bool, or ``None``.
        layers: each layer's tensors.
        raws: the raw outputs per layer (aRNN only; the aLSTM's backward does not read them).
        grads: the gradients of the chain's outputs.
        needs: whether ``x`` and ``a_below`` need a gradient.

    Returns:
        The gradients of ``x`` (``(T, B, I)``), of ``a_below`` (``(T, B, A)``) and, per layer, of its
        :class:`LayerTensors` (``None`` for the masks).
    """
    T = x.size(0)
    L = len(layers)
    md = spec.mm_dtype
    needs_x, needs_below = needs
    d_x, d_a_below, d_state = input_grads_and_state(x, layers, grads, needs)
    valid_f = None if step_mask is None else step_mask.unsqueeze(-1).to(x.dtype)  # (T, B, 1)
    chain = [
        _Layer(
            spec.layers[k],
            lt,
            # made again rather than kept from the forward: under autocast that recasts the weights
            # (about 2 ms per ptb-sized matrix) instead of holding bf16 copies of them until here
            layer_weights(spec, k, lt),
            saved[k],
            _chunk_buffers(spec, k, lt, x),
            weight_grads(spec, k, lt, x),
        )
        for k, lt in enumerate(layers)
    ]
    # under autocast: where each chunk's weight-gradient products go before they are added up
    widest = max(g.numel() for layer in chain for g in layer.grads if g is not None)
    scratch = None if md == x.dtype else (x.new_empty(widest, dtype=md), x.new_empty(widest))

    gates: list[Tensor | None] = [None] * L
    for t in range(T - 1, -1, -1):
        valid = None if valid_f is None else valid_f[t]
        j = t % GRAD_CHUNK  # this step's row in the chunk buffers
        chunk_stop = min(t - j + GRAD_CHUNK, T)
        d_h_from_above = None  # of this step's dropped h of the layer below, from the layer above
        d_a_from_above = None if grads.adapt_seq is None else grads.adapt_seq[t]  # likewise for a
        for k in range(L - 1, -1, -1):
            layer, first = chain[k], k == 0
            if t == chunk_stop - 1:
                gates[k] = _refill(layer, spec.lstm, t - j, chunk_stop)
            step = _step_back(
                layer,
                spec.lstm,
                first,
                t,
                j,
                gates[k],
                x,
                None if spec.lstm else raws[k],
                step_mask,
                valid,
                d_state[k],
                d_h_from_above,
                d_a_from_above,
                None if grads.raw[k] is None else grads.raw[k][t],
                needs_x_main=not first or needs_x,
            )
            d_state[k] = step.state
            lspec, A = layer.spec, layer.tensors.a.size(1)
            off = 0 if first else lspec.input_size
            d_u_below = step.u[:, off + lspec.hidden_size : off + lspec.hidden_size + A] if lspec.has_below else None
            if not first:
                d_h_from_above = step.x_main + step.u[:, : lspec.input_size]
                d_a_from_above = d_u_below
            else:
                if needs_x:
                    d_x[t] += step.x_main
                if spec.wrap:
                    d_state[L - 1] = d_state[L - 1]._replace(a=d_state[L - 1].a + d_u_below)
                elif needs_below:
                    d_a_below[t] = d_u_below
            if j == 0:
                _flush(layer, first, x, d_x, t, chunk_stop, md, scratch)

    return d_x, d_a_below, [layer_grads(layer.tensors, layer.grads, d) for layer, d in zip(chain, d_state)]


def input_grads_and_state(
    x: Tensor, layers: list[LayerTensors], grads: ChainGrads, needs: tuple[bool, bool]
) -> tuple[Tensor | None, Tensor | None, list[LayerState]]:
    """What a backward fills in, whichever loop runs it: the gradient of ``x`` (zeros, ``(T, B, I)``)
    and of ``a_below`` (``(T, B, A)``, every step written), each only where ``needs`` says so, and
    the running state gradients (:func:`initial_state_grads`)."""
    T, B = x.shape[:2]
    needs_x, needs_below = needs
    d_x = torch.zeros(x.shape, dtype=x.dtype, device=x.device) if needs_x else None
    d_a_below = x.new_empty(T, B, layers[0].a.size(1)) if needs_below else None
    return d_x, d_a_below, initial_state_grads(layers, grads)


def initial_state_grads(layers: list[LayerTensors], grads: ChainGrads) -> list[LayerState]:
    """The running gradients w.r.t. each layer's state after the last step: those of the final
    states, contiguous copies (the loop updates them), zeros where unused."""

    def start(s: Tensor | None, g: Tensor | None) -> Tensor | None:
        if s is None:
            return None
        return torch.zeros_like(s) if g is None else g.clone(memory_format=torch.contiguous_format)

    return [LayerState(*(start(s, g) for s, g in zip(lt[:4], d))) for lt, d in zip(layers, grads.states)]


def layer_grads(lt: LayerTensors, dw: WeightGrads, d_state: LayerState) -> LayerTensors:
    """A layer's gradients in the structure of its :class:`LayerTensors` (``None`` for the masks)."""
    adapt = dw.adapt_rec if dw.adapt_x is None else torch.cat([dw.adapt_x, dw.adapt_rec], 1)  # (4A, I + H [+ A] + A)
    A = lt.a.size(1)
    d_project = torch.zeros_like(lt.project_weight)
    d_project[: dw.project.size(0)] = dw.project
    return LayerTensors(
        *d_state,
        adapt_weight_ih=adapt[:, :-A],
        adapt_weight_hh=adapt[:, -A:],
        adapt_bias_ih=dw.adapt_bias,
        adapt_bias_hh=dw.adapt_bias,
        project_weight=d_project,
        weight_ih=dw.weight_ih,
        weight_hh=dw.weight_hh,
        bias=dw.bias,
        h_mask=None,
        a_mask=None,
    )
