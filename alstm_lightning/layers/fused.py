r"""The fast whole-sequence path of a chain: same math as :mod:`~alstm_lightning.layers.recurrence`.

:func:`run_chain_fused` computes exactly what :func:`~alstm_lightning.layers.recurrence.run_chain_naive`
computes (see that module for the equations), as one autograd node per chain instead of some forty
per layer and step. What makes it fast, measured on a 2-core CPU at the paper's Penn Treebank size
(``python -m benchmarks.layers``):

* **One graph node, a hand-written backward through time.** The forward runs without autograd and
  keeps only what the backward needs, in ``(T, B, *)`` buffers written in place. The backward
  only reads them, so ``retain_graph`` and ``gradcheck`` work.
* **Weight gradients as large GEMMs over ``16*B`` rows** (16 steps at a time, which bounds the
  gradient buffers), instead of ``T`` rank-``B`` updates (the naive path's main cost):
  ``dW_ih = dgx^T (x ⊙ pi_x)``, ``dW_hh = dgh^T (h ⊙ pi_h)``, ``dP = dpre^T a``,
  ``dW^a = dgates_a^T [x, h, a_below, a]``.
* **Time-invariant work out of the loop.** Layer 0's adaptation-model input term
  ``W^a_x x + b^a`` is one GEMM over the sequence (``W_ih x`` of the main cell cannot be: ``x`` is
  scaled by ``pi_x`` at every step), and so is its share of the input gradient.
  The adaptation model's input and recurrent weights are concatenated, so each step does one
  GEMM on ``[x, h, a_below, a]``.
* **Weights arranged once per call for the per-step products.** On CPU the forward's weights are
  reordered into oneDNN's blocked layout once per call (:func:`_step_operand`), so the ``B``-row
  products skip packing them at every step: at ``ptb`` the step's ``(20, 1150) @ (1150, 4600)``
  product went from about 120 to 160 GFLOP/s (fp32). The backward reads the weights as stored
  (``dgates @ W`` is already row-major; reordering the transpose costs more than it saves).
* **Only the used part of the policy.** The ``"reference"`` layout never reads the tail of
  ``P a`` (:func:`~alstm_lightning.layers.policy.unused_policy_fraction`); only the rows in use are
  computed.
* **The widest tensors are recomputed, not kept.** The policy ``pi`` (``I + 13H`` wide, the widest
  per-step tensor) and the activated gates are rebuilt in the backward from the saved adaptation
  states and gate products, 16 steps at a time, with one ``(16*B, A) @ (A, P)`` product; this
  keeps well under half of what a step would otherwise save. At ``ptb`` the peak training memory
  fell from 498 to 345 MiB (fp32) and from 631 to 376 MiB (bf16 autocast), for about 6 % more
  time per training step (interleaved runs, median of 6, within the machine's +-20 % spread).
* **Inference keeps nothing.** Without gradients the same loop runs on fresh per-step tensors.

Mixed precision: under ``torch.autocast`` every matrix product runs in the autocast dtype (bf16 on
CPU; bf16 or fp16 on CUDA) while the gate math, the states and the gradient accumulators stay in the
parameters' dtype. The products' operands and results are kept in the autocast dtype (a product's
result is exact there, and its operands are rounded to it anyway), so they are cast once and
stored at half the size; the backward reads the saved ``h`` and ``x`` rounded to it too. The casts
happen inside (autocast is switched off within the chain); the outputs have the parameters' dtype,
like the naive path's under autocast.
``torch.compile`` is not used: the loop is dominated by GEMMs on CPU, and the path must work as is.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .policy import PolicySlice, split_policy
from .recurrence import ChainLayer, ChainResult, LayerState

#: Fewest products by one weight for which :func:`_step_operand` reorders it (measured at ``ptb``:
#: the break-even lies between 8 and 16 steps)
_PACK_MIN_STEPS = 12
#: Fewest elements of a float32 matrix for which :func:`_step_operand` reorders it
_PACK_MIN_FP32_SIZE = 2**19


class _LayerSpec(NamedTuple):
    """Static description of one layer of a chain (no tensors)."""

    input_size: int
    hidden_size: int
    slices: tuple[PolicySlice, ...]
    span: int  # policy units in use: rows [0, span) of the projection
    back_to_back: bool  # the slices tile [0, span) in order (the "paper" layout)
    has_below: bool  # the adaptation model reads an adaptation state from below


class _ChainSpec(NamedTuple):
    """Static description of a chain: what :class:`_FusedChain` needs besides tensors."""

    layers: tuple[_LayerSpec, ...]
    lstm: bool  # aLSTM (gates i, f, g, o and a cell state) or aRNN (one tanh block)
    wrap: bool
    return_adapt_seq: bool
    mm_dtype: torch.dtype


class _LayerTensors(NamedTuple):
    """One layer's tensor inputs, flattened into :class:`_FusedChain`'s arguments in this order."""

    h: Tensor
    c: Tensor | None
    a: Tensor
    a_c: Tensor
    adapt_weight_ih: Tensor
    adapt_weight_hh: Tensor
    adapt_bias_ih: Tensor | None
    adapt_bias_hh: Tensor | None
    project_weight: Tensor
    weight_ih: Tensor
    weight_hh: Tensor
    bias: Tensor | None
    h_mask: Tensor | None
    a_mask: Tensor | None


_SLOTS = len(_LayerTensors._fields)


class _Weights(NamedTuple):
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


class _ForwardOperands(NamedTuple):
    """One layer's weights as the right operands of the forward's products (see :func:`_step_operand`)."""

    adapt_x: Tensor | None  # (I, 4A), layer 0 only: one product over the whole sequence
    adapt_rec: Tensor  # (K, 4A)
    adapt_bias: Tensor | None  # (4A,) b_ih + b_hh, state dtype
    project: Tensor  # (A, span)
    weight_ih: Tensor  # (I, G*H)
    weight_hh: Tensor  # (H, G*H)


def _mm(
    a: Tensor, b: Tensor, out: Tensor | None = None, add: Tensor | None = None, dtype: torch.dtype | None = None
) -> Tensor:
    """``a @ b (+ add)`` with the product computed in ``b``'s dtype (the matmul dtype).

    ``b`` is a ``(k, n)`` matrix or an operand made by :func:`_step_operand`. The result goes to
    ``out`` (whatever its dtype), or to a new tensor of ``dtype`` (default ``a``'s).
    """
    target = out.dtype if out is not None else (dtype or a.dtype)
    if b.is_mkldnn:
        product = torch.ops.mkldnn._linear_pointwise(a.to(b.dtype), b, None, "none", [], "")
    elif a.dtype == b.dtype == target and (add is None or add.dtype == target):
        return torch.mm(a, b, out=out) if add is None else torch.addmm(add, a, b, out=out)
    else:
        product = torch.mm(a.to(b.dtype), b)
    if out is None:
        out = product.to(target)
    else:
        out.copy_(product)
    return out if add is None else out.add_(add)


def _step_operand(b: Tensor, rows: int, steps: int) -> Tensor:
    """``b: (k, n)`` arranged for ``steps`` products ``(rows, k) @ b`` in a row, for :func:`_mm`.

    On CPU, a matrix used for at least ``_PACK_MIN_STEPS`` products is reordered once into
    oneDNN's blocked layout, which spares every product the packing of ``b``, when that pays: in
    bfloat16 always (measured 1.1-1.4x faster per product), in float32 from ``_PACK_MIN_FP32_SIZE``
    elements on (1.3-1.5x at ``ptb``'s sizes; below, oneDNN's per-call overhead outweighs the
    gain), unless ``torch.backends.mkldnn.enabled`` is off. Otherwise ``b`` is returned as is: a
    view, no copy (one-step generation pays nothing).
    """
    onednn = b.device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
    if not onednn or steps < _PACK_MIN_STEPS:
        return b
    if b.dtype == torch.bfloat16:
        pays = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    else:
        pays = b.dtype == torch.float32 and b.numel() >= _PACK_MIN_FP32_SIZE
    return torch.ops.mkldnn._reorder_linear_weight(b.t(), rows) if pays else b


def _slot(buffer: Tensor | None, t: int) -> Tensor | None:
    """Step ``t`` of a saved ``(T, ...)`` buffer, or ``None`` (a fresh tensor) when nothing is saved."""
    return None if buffer is None else buffer[t]


def _step_out(buffer: Tensor | None, t: int, like: Tensor, width: int, dtype: torch.dtype) -> Tensor:
    """Step ``t`` of a saved ``(T, B, width)`` buffer, or a fresh ``(B, width)`` tensor of ``dtype`` like ``like``."""
    return like.new_empty(like.size(0), width, dtype=dtype) if buffer is None else buffer[t]


def _policy_gates(
    gx: Tensor, gh: Tensor, pi_i: Tensor, pi_hh: Tensor, pi_b: Tensor | None, bias: Tensor | None
) -> Tensor:
    """``gx ⊙ pi_i + gh ⊙ pi_hh (+ b ⊙ pi_b)``, a new tensor in the policy's dtype (any leading shape).

    The forward and the backward's recomputation both call this, so they compute the same gates.
    """
    gates = torch.mul(gx, pi_i).addcmul_(gh, pi_hh)
    return gates if bias is None else gates.addcmul_(pi_b, bias)


def _lstm_activate(gates: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """In place: sigmoid on blocks i, f, o and tanh on g of ``gates: (B, 4n)``; returns the blocks."""
    n = gates.size(1) // 4
    gates[:, : 2 * n].sigmoid_()
    gates[:, 2 * n : 3 * n].tanh_()
    gates[:, 3 * n :].sigmoid_()
    return gates.chunk(4, 1)


def _lstm_backward(
    gates: Tensor, c_new: Tensor, c_prev: Tensor, dh: Tensor, dc: Tensor, out: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Back through ``c_new = f c_prev + i g``, ``h = o tanh(c_new)``.

    Args:
        gates: the activations i, f, g, o, ``(B, 4n)`` (not modified).
        c_new, c_prev: the cell state after and before the step, ``(B, n)``.
        dh, dc: the gradients of ``h`` and ``c_new`` from above.
        out: where to write the gradient of the pre-activations, or ``None``.

    Returns:
        ``(d pre-activations (B, 4n), dc_prev (B, n))``.
    """
    i, f, g, o = gates.chunk(4, 1)
    tanh_c = torch.tanh(c_new)
    dc = torch.addcmul(dc, dh * o, 1.0 - tanh_c * tanh_c)
    d_pre = torch.cat([dc * g, dc * c_prev, dc * i, dh * tanh_c], 1, out=out)
    # derivatives of the activations: s (1 - s) for the sigmoids, 1 - g^2 for the tanh
    slope = torch.addcmul(gates, gates, gates, value=-1.0)
    n = i.size(1)
    slope[:, 2 * n : 3 * n] = 1.0 - g * g
    return d_pre.mul_(slope), dc * f


def _accumulate_mm(
    acc: Tensor, a: Tensor, b: Tensor, mm_dtype: torch.dtype, scratch: tuple[Tensor, Tensor] | None
) -> None:
    """``acc += a @ b`` with the product computed in ``mm_dtype``.

    When that is not ``acc``'s dtype, ``scratch`` holds two flat buffers, at least ``acc.numel()``
    long, reused by every call: one in ``mm_dtype`` for the product, one in ``acc``'s dtype for its
    conversion (a fresh tensor per call, as ``acc.add_(product)`` would make, measured about 4x
    slower to fill, from the page faults of its first touch).
    """
    if mm_dtype == acc.dtype:
        acc.addmm_(a.to(mm_dtype), b.to(mm_dtype))
        return
    product, converted = (buf[: acc.numel()].view_as(acc) for buf in scratch)
    torch.mm(a.to(mm_dtype), b.to(mm_dtype), out=product)
    acc.add_(converted.copy_(product))


def _layer_weights(spec: _ChainSpec, k: int, lt: _LayerTensors) -> _Weights:
    """Layer ``k``'s weights in the matmul dtype."""
    md = spec.mm_dtype
    adapt = torch.cat([lt.adapt_weight_ih, lt.adapt_weight_hh], 1).to(md)  # (4A, I + H [+ A] + A)
    i = spec.layers[k].input_size
    adapt_x, adapt_rec = (adapt[:, :i], adapt[:, i:]) if k == 0 else (None, adapt)
    project = lt.project_weight[: spec.layers[k].span].to(md)
    return _Weights(adapt_x, adapt_rec, project, lt.weight_ih.to(md), lt.weight_hh.to(md))


def _adapt_step_width(spec: _ChainSpec, k: int, lt: _LayerTensors) -> int:
    """``K``, the width of layer ``k``'s per-step adaptation input ``[x (layers > 0), h, a_below, a]``."""
    width = lt.adapt_weight_ih.size(1) + lt.adapt_weight_hh.size(1)
    return width - spec.layers[k].input_size if k == 0 else width


def _forward_operands(spec: _ChainSpec, layers: list[_LayerTensors], rows: int, steps: int) -> list[_ForwardOperands]:
    operands = []
    for k, lt in enumerate(layers):
        w = _layer_weights(spec, k, lt)
        operands.append(
            _ForwardOperands(
                adapt_x=None if w.adapt_x is None else w.adapt_x.t(),
                adapt_rec=_step_operand(w.adapt_rec.t(), rows, steps),
                adapt_bias=None if lt.adapt_bias_ih is None else lt.adapt_bias_ih + lt.adapt_bias_hh,
                project=_step_operand(w.project.t(), rows, steps),
                weight_ih=_step_operand(w.weight_ih.t(), rows, steps),
                weight_hh=_step_operand(w.weight_hh.t(), rows, steps),
            )
        )
    return operands


def _forward(
    spec: _ChainSpec,
    x: Tensor,
    a_below: Tensor | None,
    step_mask: Tensor | None,
    layers: list[_LayerTensors],
    save: bool,
) -> tuple[list[Tensor], Tensor | None, list[list[Tensor | None]], dict | None]:
    """Run the chain without autograd.

    Returns the raw outputs per layer, the adaptation sequence (or ``None``), the final states per
    layer ``[h, c, a, a_c]``, and, when ``save``, what the backward needs.
    """
    T, B = x.shape[:2]
    operands = _forward_operands(spec, layers, B, T)
    last = len(layers) - 1

    md = spec.mm_dtype

    def buffer(width: int, keep: bool = save, dtype: torch.dtype | None = None) -> Tensor | None:
        return x.new_empty(T, B, width, dtype=dtype) if keep else None

    raws, bufs, widths = [], [], []
    for k, (lspec, lt) in enumerate(zip(spec.layers, layers)):
        H, A = lspec.hidden_size, lt.a.size(1)
        K, G = _adapt_step_width(spec, k, lt), lt.weight_ih.size(0)
        widths.append((H, K, 4 * A, G))
        masked = step_mask is not None
        bufs.append(
            {
                # the matrix products' operands and results are kept in the matmul dtype
                "U": buffer(K, dtype=md),
                "GA": buffer(4 * A),
                "ACN": buffer(A),
                "ACK": buffer(A, save and masked),
                "AN": buffer(A, save or (k == last and spec.return_adapt_seq)),
                "XP": buffer(lspec.input_size, dtype=md),
                "HP": buffer(H, dtype=md),
                "GX": buffer(G, dtype=md),
                "GH": buffer(G, dtype=md),
                "CN": buffer(H, save and spec.lstm),
                "CK": buffer(H, save and spec.lstm and masked),
            }
        )
        raws.append(x.new_empty(T, B, H))
    # layer 0's adaptation-model input term for every step at once: (T*B, I) @ (I, 4A)
    xa = _mm(x.reshape(T * B, -1), operands[0].adapt_x)
    if operands[0].adapt_bias is not None:
        xa += operands[0].adapt_bias
    xa = xa.view(T, B, -1)

    states = [[lt.h, lt.c, lt.a, lt.a_c] for lt in layers]
    for t in range(T):
        valid = None if step_mask is None else step_mask[t].unsqueeze(-1)
        inp = x[t]
        below = states[-1][2] if spec.wrap else (None if a_below is None else a_below[t])
        for k, (lspec, lt, ops, buf, (H, K, A4, G)) in enumerate(zip(spec.layers, layers, operands, bufs, widths)):
            h, c, a, a_c = states[k]
            # adaptation model: one GEMM on [x (layers > 0), h, a_below, a]
            parts = [h, a] if below is None else [h, below, a]
            if k > 0:
                parts.insert(0, inp)
            u = torch.cat(parts, 1, out=_step_out(buf["U"], t, h, K, md))
            add = xa[t] if k == 0 else ops.adapt_bias
            ga = _mm(u, ops.adapt_rec, out=_step_out(buf["GA"], t, h, A4, h.dtype), add=add)
            ai, af, ag, ao = _lstm_activate(ga)
            a_c_new = torch.mul(af, a_c, out=_slot(buf["ACN"], t)).addcmul_(ai, ag)
            a_new = torch.tanh(a_c_new, out=_slot(buf["AN"], t)).mul_(ao)
            if lt.a_mask is not None:
                a_new.mul_(lt.a_mask)
            # policy and adaptive cell
            # (the backward recomputes pi and the gates rather than keeping them)
            pi = _mm(a_new, ops.project).tanh_()
            pi_x, pi_h, pi_i, pi_hh, pi_b = split_policy(pi, lspec.slices)
            xp = torch.mul(inp, pi_x, out=_step_out(buf["XP"], t, h, lspec.input_size, md))
            hp = torch.mul(h, pi_h, out=_step_out(buf["HP"], t, h, H, md))
            gx = _mm(xp, ops.weight_ih, out=_step_out(buf["GX"], t, h, G, md))
            gh = _mm(hp, ops.weight_hh, out=_step_out(buf["GH"], t, h, G, md))
            gates = _policy_gates(gx, gh, pi_i, pi_hh, pi_b, lt.bias)
            h_raw = raws[k][t]
            if spec.lstm:
                i, f, g, o = _lstm_activate(gates)
                c_new = torch.mul(f, c, out=_slot(buf["CN"], t)).addcmul_(i, g)
                torch.tanh(c_new, out=h_raw).mul_(o)
            else:
                c_new = None
                torch.tanh(gates, out=h_raw)
            h_new = h_raw if lt.h_mask is None else h_raw * lt.h_mask
            if valid is None:
                states[k] = [h_new, c_new, a_new, a_c_new]
            else:
                states[k] = [
                    torch.where(valid, h_new, h),
                    None if c is None else torch.where(valid, c_new, c, out=_slot(buf["CK"], t)),
                    torch.where(valid, a_new, a),
                    torch.where(valid, a_c_new, a_c, out=_slot(buf["ACK"], t)),
                ]
            inp, below = h_new, a_new
    adapt_seq = bufs[-1]["AN"] if spec.return_adapt_seq else None
    finals = [[None if s is None else s.clone() for s in state] for state in states]
    saved = {"bufs": bufs} if save else None
    return raws, adapt_seq, finals, saved


class _FusedChain(torch.autograd.Function):
    """The whole chain over the whole sequence as one autograd node.

    Arguments: ``spec, x, a_below, step_mask, *flat`` with ``_SLOTS`` tensors (or ``None``) per
    layer in :class:`_LayerTensors` order. Outputs: the raw outputs per layer, the adaptation
    sequence when ``spec.return_adapt_seq``, then per layer the final ``h, [c,] a, a_c``.
    """

    @staticmethod
    def forward(ctx, spec: _ChainSpec, x, a_below, step_mask, *flat):
        layers = [_LayerTensors(*flat[k : k + _SLOTS]) for k in range(0, len(flat), _SLOTS)]
        raws, adapt_seq, finals, saved = _forward(spec, x, a_below, step_mask, layers, save=True)
        ctx.spec = spec
        ctx.saved = saved
        # the outputs are saved only through save_for_backward (a plain attribute would be a cycle)
        ctx.save_for_backward(x, a_below, step_mask, *flat, *([] if spec.lstm else raws))
        ctx.set_materialize_grads(False)
        outputs = list(raws)
        if spec.return_adapt_seq:
            outputs.append(adapt_seq.clone())
        for state in finals:
            outputs.extend(s for s in state if s is not None)
        return tuple(outputs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        spec: _ChainSpec = ctx.spec
        x, a_below, step_mask, *rest = ctx.saved_tensors
        flat = rest[: _SLOTS * len(spec.layers)]
        layers = [_LayerTensors(*flat[k : k + _SLOTS]) for k in range(0, len(flat), _SLOTS)]
        raws = rest[len(flat) :]
        with torch.autocast(x.device.type, enabled=False):
            d_x, d_below, d_layers = _backward(
                spec, ctx.saved, x, step_mask, layers, raws, list(grads), ctx.needs_input_grad[1:3]
            )
        return (None, d_x, d_below, None, *[g for layer in d_layers for g in layer])


#: Steps whose gradients are gathered before the weight-gradient GEMMs run on them (``chunk*B`` rows):
#: large enough for efficient GEMMs, small enough that the gradient buffers stay small.
_GRAD_CHUNK = 16


def _backward(
    spec: _ChainSpec,
    saved: dict,
    x: Tensor,
    step_mask: Tensor | None,
    layers: list[_LayerTensors],
    raws: list[Tensor],
    grads: list[Tensor | None],
    needs: tuple[bool, bool],
) -> tuple[Tensor | None, Tensor | None, list[list[Tensor | None]]]:
    """Back-propagate through the chain; the saved buffers are read, never modified.

    Args:
        saved: what :func:`_forward` kept.
        raws: the raw outputs per layer (aRNN only; the aLSTM's backward does not read them).
        grads: the gradients of :class:`_FusedChain`'s outputs, ``None`` where unused.
        needs: whether ``x`` and ``a_below`` need a gradient.

    Returns:
        The gradients of ``x``, of ``a_below`` and, per layer, of the :class:`_LayerTensors`.
    """
    bufs: list[dict] = saved["bufs"]
    T, B = x.shape[:2]
    # made again rather than kept from the forward: under autocast that recasts the weights (about
    # 2 ms per ptb-sized matrix) instead of holding bf16 copies of them from the forward to here
    weights = [_layer_weights(spec, k, lt) for k, lt in enumerate(layers)]
    L = len(layers)
    md = spec.mm_dtype
    d_raw = grads[:L]
    pos = L
    d_adapt_seq = None
    if spec.return_adapt_seq:
        d_adapt_seq, pos = grads[L], L + 1
    # running gradients w.r.t. each layer's state after the current step: [h, c, a, a_c]
    d_state = []
    for lt in layers:
        row = []
        for s in (lt.h, lt.c, lt.a, lt.a_c):
            if s is None:
                row.append(None)
                continue
            g = grads[pos]
            pos += 1
            row.append(torch.zeros_like(s) if g is None else g.clone())
        d_state.append(row)
    needs_x, needs_below = needs
    d_x = torch.zeros(x.shape, dtype=x.dtype, device=x.device) if needs_x else None
    d_a_below = x.new_empty(T, B, layers[0].a.size(1)) if needs_below else None
    valid_f = None if step_mask is None else step_mask.unsqueeze(-1).to(x.dtype)  # (T, B, 1)

    # weight gradients, accumulated chunk by chunk; per layer:
    # [adapt x part (layer 0), adapt rest, adapt bias, projection rows in use, W_ih, W_hh, bias]
    d_weights = []
    chunk_bufs = []
    for k, (lspec, lt) in enumerate(zip(spec.layers, layers)):
        A4 = lt.adapt_weight_ih.size(0)
        G = lt.weight_ih.size(0)
        d_weights.append(
            {
                "adapt_x": x.new_zeros(A4, lspec.input_size) if k == 0 else None,
                "adapt_rec": x.new_zeros(A4, _adapt_step_width(spec, k, lt)),
                "adapt_bias": None if lt.adapt_bias_ih is None else x.new_zeros(A4),
                "project": x.new_zeros(lspec.span, lt.a.size(1)),
                "weight_ih": x.new_zeros(G, lspec.input_size),
                "weight_hh": x.new_zeros(G, lspec.hidden_size),
                "bias": None if lt.bias is None else x.new_zeros(G),
            }
        )
        chunk = min(_GRAD_CHUNK, T)
        chunk_bufs.append(
            {
                # recomputed from the saved buffers: the policy and the activated gates (aLSTM)
                "PI": x.new_empty(chunk, B, lspec.span),
                "G": None,
                # gradients; those only read by matrix products are kept in the matmul dtype
                "GA": x.new_empty(chunk, B, A4),
                "PRE": x.new_empty(chunk, B, lspec.span, dtype=md),
                "GX": x.new_empty(chunk, B, G, dtype=md),
                "GH": x.new_empty(chunk, B, G, dtype=md),
            }
        )
    # under autocast: where each chunk's weight-gradient products go before they are added up
    widest = max(g.numel() for dw in d_weights for g in dw.values() if g is not None)
    scratch = None if md == x.dtype else (x.new_empty(widest, dtype=md), x.new_empty(widest))

    def refill(k: int, start: int, stop: int) -> None:
        """Recompute layer ``k``'s policy (and aLSTM gates) for steps ``[start, stop)`` into its chunk buffers."""
        buf, cb, lt, w, lspec = bufs[k], chunk_bufs[k], layers[k], weights[k], spec.layers[k]
        n = stop - start
        pi = cb["PI"][:n]
        _mm(buf["AN"][start:stop].reshape(n * B, -1), w.project.t(), out=pi.view(n * B, -1)).tanh_()
        if spec.lstm:
            _, _, pi_i, pi_hh, pi_b = split_policy(pi, lspec.slices)
            gates = _policy_gates(buf["GX"][start:stop], buf["GH"][start:stop], pi_i, pi_hh, pi_b, lt.bias)
            _lstm_activate(gates.view(n * B, -1))
            cb["G"] = gates

    def flush(k: int, start: int, stop: int) -> None:
        """Add steps ``[start, stop)`` of layer ``k``'s chunk buffers to its weight gradients."""
        buf, cb, dw, w = bufs[k], chunk_bufs[k], d_weights[k], weights[k]
        rows = (stop - start) * B
        n = stop - start

        def flat(t: Tensor) -> Tensor:
            return t.reshape(rows, -1)

        dga = flat(cb["GA"][:n])
        _accumulate_mm(dw["adapt_rec"], dga.t(), flat(buf["U"][start:stop]), md, scratch)
        if dw["adapt_bias"] is not None:
            dw["adapt_bias"].add_(dga.sum(0))
        if k == 0:
            _accumulate_mm(dw["adapt_x"], dga.t(), flat(x[start:stop]), md, scratch)
            if needs_x:
                flat(d_x[start:stop]).add_(_mm(dga, w.adapt_x))
        _accumulate_mm(dw["project"], flat(cb["PRE"][:n]).t(), flat(buf["AN"][start:stop]), md, scratch)
        _accumulate_mm(dw["weight_ih"], flat(cb["GX"][:n]).t(), flat(buf["XP"][start:stop]), md, scratch)
        _accumulate_mm(dw["weight_hh"], flat(cb["GH"][:n]).t(), flat(buf["HP"][start:stop]), md, scratch)

    for t in range(T - 1, -1, -1):
        valid = None if valid_f is None else valid_f[t]
        j = t % _GRAD_CHUNK  # this step's row in the chunk buffers
        chunk_stop = min(t - j + _GRAD_CHUNK, T)
        ext_h = None  # gradient w.r.t. this step's dropped h of the layer below, from the layer above
        ext_a = None if d_adapt_seq is None else d_adapt_seq[t]  # likewise for its adaptation state
        for k in range(L - 1, -1, -1):
            lspec, lt, w, buf, cb, dw = spec.layers[k], layers[k], weights[k], bufs[k], chunk_bufs[k], d_weights[k]
            if t == chunk_stop - 1:
                refill(k, t - j, chunk_stop)
            dh_s, dc_s, da_s, dac_s = d_state[k]
            I, H, A = lspec.input_size, lspec.hidden_size, lt.a.size(1)
            u = buf["U"][t]  # [x (layers > 0), h, a_below, a] before the step
            off = 0 if k == 0 else I
            h_prev = u[:, off : off + H]
            x_t = x[t] if k == 0 else u[:, :I]
            # gradient of the dropped h and of the cell output h_raw
            dh_new = dh_s if valid is None else dh_s * valid
            if ext_h is not None:
                dh_new = dh_new + ext_h
            dh_raw = dh_new if lt.h_mask is None else dh_new * lt.h_mask
            if d_raw[k] is not None:
                dh_raw = dh_raw + d_raw[k][t]
            # through the cell's nonlinearities
            if spec.lstm:
                dc_new = dc_s if valid is None else dc_s * valid
                c_prev = lt.c if t == 0 else (buf["CK"] if step_mask is not None else buf["CN"])[t - 1]
                dg, dc_prev = _lstm_backward(cb["G"][j], buf["CN"][t], c_prev, dh_raw, dc_new)
            else:
                h_raw = raws[k][t]
                dg = (1.0 - h_raw * h_raw).mul_(dh_raw)
                dc_prev = None
            # through gates = gx ⊙ pi_i + gh ⊙ pi_hh + b ⊙ pi_b
            pi = cb["PI"][j]
            pi_x, pi_h, pi_i, pi_hh, pi_b = split_policy(pi, lspec.slices)
            d_pi = [None, None, dg * buf["GX"][t], dg * buf["GH"][t]]
            if lt.bias is not None:
                d_pi.append(dg * lt.bias)
                dw["bias"].add_((dg * pi_b).sum(0))
            dgx = torch.mul(dg, pi_i, out=cb["GX"][j])
            dgh = torch.mul(dg, pi_hh, out=cb["GH"][j])
            d_xp = _mm(dgx, w.weight_ih, dtype=dg.dtype)  # (B, I): d (x ⊙ pi_x)
            d_hp = _mm(dgh, w.weight_hh, dtype=dg.dtype)  # (B, H): d (h ⊙ pi_h)
            d_pi[0] = d_xp * x_t
            d_pi[1] = d_hp * h_prev
            d_x_main = d_xp * pi_x if (k > 0 or needs_x) else None
            dh_prev = d_hp * pi_h
            # through pi = tanh(P a)
            if lspec.back_to_back:
                d_pi_full = torch.cat(d_pi, 1)
            else:
                # overlapping slices ("reference" layout): gradients of a shared unit add up
                d_pi_full = pi.new_zeros(B, lspec.span)
                for s, d in zip(lspec.slices, d_pi):
                    d_pi_full[:, s.start : s.start + s.length] += d
            d_pre = torch.addcmul(d_pi_full, d_pi_full * pi, pi, value=-1.0, out=cb["PRE"][j])
            da_new = _mm(d_pre, w.project, dtype=dg.dtype)  # (B, A)
            if ext_a is not None:
                da_new += ext_a
            da_new += da_s if valid is None else da_s * valid
            if lt.a_mask is not None:
                da_new *= lt.a_mask
            # through the adaptation LSTM
            dac_new = dac_s if valid is None else dac_s * valid
            ac_prev = lt.a_c if t == 0 else (buf["ACK"] if step_mask is not None else buf["ACN"])[t - 1]
            dga, dac_prev = _lstm_backward(buf["GA"][t], buf["ACN"][t], ac_prev, da_new, dac_new, out=cb["GA"][j])
            du = _mm(dga, w.adapt_rec)  # (B, K): d [x (layers > 0), h, a_below, a]
            d_u_below = du[:, off + H : off + H + A] if lspec.has_below else None
            # gradients w.r.t. the state before this step; padded rows pass theirs through
            new_state = [dh_prev.add_(du[:, off : off + H]), dc_prev, du[:, -A:], dac_prev]
            if valid is not None:
                carry = 1.0 - valid
                new_state = [None if n is None else n + old * carry for n, old in zip(new_state, d_state[k])]
            d_state[k] = new_state
            if k > 0:
                ext_h = d_x_main + du[:, :I]
                ext_a = d_u_below
            else:
                if needs_x:
                    d_x[t] += d_x_main
                if spec.wrap:
                    d_state[L - 1][2] = d_state[L - 1][2] + d_u_below
                elif needs_below:
                    d_a_below[t] = d_u_below
            if j == 0:
                flush(k, t, chunk_stop)

    d_layers = []
    for k, (lt, dw) in enumerate(zip(layers, d_weights)):
        adapt = dw["adapt_rec"] if k > 0 else torch.cat([dw["adapt_x"], dw["adapt_rec"]], 1)  # (4A, I + H [+ A] + A)
        A = lt.a.size(1)
        d_project = torch.zeros_like(lt.project_weight)
        d_project[: dw["project"].size(0)] = dw["project"]
        d_layers.append(
            [
                *d_state[k],
                adapt[:, :-A],
                adapt[:, -A:],
                dw["adapt_bias"],
                dw["adapt_bias"],
                d_project,
                dw["weight_ih"],
                dw["weight_hh"],
                dw["bias"],
                None,
                None,
            ]
        )
    return d_x, d_a_below, d_layers


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
    dropout masks are constants (no gradient flows to them).

    Args:
        x: the first layer's input, ``(T, B, I)``.
        layers: the chain's layers, bottom to top.
        states: their initial states.
        wrap: feed the top layer's previous adaptation state to the first layer.
        a_below: a ``(T, B, A)`` sequence fed to the first layer instead (used when ``wrap`` is off).
        step_mask: ``(T, B)`` bool, false on padded steps (packed input), or ``None``.
        return_adapt_seq: also return the last layer's adaptation states.

    Returns:
        A :class:`~alstm_lightning.layers.recurrence.ChainResult`.
    """
    device_type = x.device.type
    dtype = layers[0].cell.weight_ih.dtype
    autocast = torch.is_autocast_enabled(device_type)
    spec = _ChainSpec(
        tuple(
            _LayerSpec(
                layer.cell.input_size,
                layer.cell.hidden_size,
                layer.cell.policy_slices,
                max(s.start + s.length for s in layer.cell.policy_slices),
                all(
                    s.start == sum(p.length for p in layer.cell.policy_slices[:j])
                    for j, s in enumerate(layer.cell.policy_slices)
                ),
                k > 0 or wrap or a_below is not None,
            )
            for k, layer in enumerate(layers)
        ),
        layers[0].cell.has_cell_state,
        wrap,
        return_adapt_seq,
        torch.get_autocast_dtype(device_type) if autocast else dtype,
    )

    def cast(tensor: Tensor | None) -> Tensor | None:
        return None if tensor is None else tensor.to(dtype)

    flat: list[Tensor | None] = []
    for layer, state in zip(layers, states):
        adapt, cell = layer.adapt, layer.cell
        flat += map(
            cast,
            _LayerTensors(
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
            ),
        )
    x, a_below = cast(x).contiguous(), cast(a_below)
    tracked = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in [x, a_below, *flat])
    with torch.autocast(device_type, enabled=False):
        if tracked:
            outputs = list(_FusedChain.apply(spec, x, a_below, step_mask, *flat))
        else:
            chain = [_LayerTensors(*flat[k : k + _SLOTS]) for k in range(0, len(flat), _SLOTS)]
            raws, adapt_seq, finals, _ = _forward(spec, x, a_below, step_mask, chain, save=False)
            states_out = [s for final in finals for s in final if s is not None]
            outputs = [*raws, *([adapt_seq] if return_adapt_seq else []), *states_out]
    raw = outputs[: len(layers)]
    rest = iter(outputs[len(layers) + (1 if return_adapt_seq else 0) :])
    final_states = [
        LayerState(next(rest), next(rest) if spec.lstm else None, next(rest), next(rest)) for _ in layers
    ]
    dropped = [r if layer.h_mask is None else r * cast(layer.h_mask) for r, layer in zip(raw, layers)]
    return ChainResult(raw, dropped, outputs[len(layers)] if return_adapt_seq else None, final_states)
