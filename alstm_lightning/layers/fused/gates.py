r"""The cell math of :mod:`~alstm_lightning.layers.cell`, written into given buffers, and its derivatives.

:func:`policy_gates` is :func:`~alstm_lightning.layers.cell.adaptive_preactivation` from the
products ``gx = W_ih x'`` and ``gh = W_hh h'``; :func:`lstm_activate` followed by
:func:`lstm_update` is :func:`~alstm_lightning.layers.cell.lstm_update` (tests hold them equal).
The forward and the backward's recomputation both call them, so they compute the same gates;
:func:`lstm_backward` is the derivative of that update.
"""

from __future__ import annotations

import torch
from torch import Tensor


def policy_gates(
    gx: Tensor, gh: Tensor, pi_i: Tensor, pi_hh: Tensor, pi_b: Tensor | None, bias: Tensor | None
) -> Tensor:
    """``gx ⊙ pi_i + gh ⊙ pi_hh (+ b ⊙ pi_b)``, a new tensor in the policy's dtype (any leading shape)."""
    gates = torch.mul(gx, pi_i).addcmul_(gh, pi_hh)
    return gates if bias is None else gates.addcmul_(pi_b, bias)


def lstm_activate(gates: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """In place: sigmoid on blocks i, f, o and tanh on g of ``gates: (B, 4n)``; returns the blocks."""
    n = gates.size(1) // 4
    gates[:, : 2 * n].sigmoid_()
    gates[:, 2 * n : 3 * n].tanh_()
    gates[:, 3 * n :].sigmoid_()
    return gates.chunk(4, 1)


def lstm_update(
    blocks: tuple[Tensor, Tensor, Tensor, Tensor], c: Tensor, c_out: Tensor | None, h_out: Tensor | None
) -> tuple[Tensor, Tensor]:
    """``c_new = f c + i g``, ``h = o tanh(c_new)`` from the activated blocks, into ``c_out`` and ``h_out``.

    Args:
        blocks: ``i, f, g, o`` as :func:`lstm_activate` returns them, each ``(B, n)``.
        c: the cell state before the step, ``(B, n)``.
        c_out, h_out: ``(B, n)`` buffers for the results, or ``None`` for new tensors.

    Returns:
        ``(h, c_new)``.
    """
    i, f, g, o = blocks
    c_new = torch.mul(f, c, out=c_out).addcmul_(i, g)
    return torch.tanh(c_new, out=h_out).mul_(o), c_new


def lstm_backward(
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
