r"""Chrono initialisation for long dependencies (Tallec & Ollivier 2018), for the aLSTM and ``nn.LSTM``.

An LSTM whose forget gates start near ``sigmoid(0) = 1/2`` forgets half its cell state at every
step, so a signal from ``T`` steps back reaches the loss scaled by about ``2^-T``: on long-range
tasks training sits on a plateau until the gates drift open. *Chrono initialisation* sets the
forget biases to ``log(u)``, ``u ~ U(1, T_max - 1)``, and the input biases to their negatives, so
that the cells start with memory timescales spread over ``[1, T_max]``.

In the aLSTM every bias is scaled by its policy, ``b ⊙ pi_b`` (Eq. 9), and the policies start near
zero (``tanh(P a)`` with a small adaptation state), so biases alone change nothing. The aLSTM
variant therefore also starts the policies near one, within the paper's equations: unit 0 of each
adaptation LSTM gets zero incoming weights and large gate biases, which makes it a constant close to
1, and column 0 of the policy projection ``P`` is set to ``policy_offset``. Every policy then starts
near ``tanh(policy_offset)`` (0.96 by default), so the aLSTM starts close to a plain LSTM with chrono
biases, and training is free to move both the offset and the unit. With ``adapt_dropout`` the
constant unit is dropped like any other.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..checks import check_float
from .stack import aLSTM

#: Gate bias that saturates the constant adaptation unit: ``sigmoid(5) = 0.993``, ``tanh(5) = 0.9999``.
CONSTANT_UNIT_BIAS = 5.0


def chrono_forget_bias(
    hidden_size: int, max_timescale: float, generator: torch.Generator | None = None
) -> Tensor:
    """Forget-gate biases ``log(u)``, ``u ~ U(1, max_timescale - 1)``, shape ``(hidden_size,)``.

    Args:
        hidden_size: H, units to draw for.
        max_timescale: T_max, the longest dependency expected, at least 2 (steps).
        generator: the random source (the global one when ``None``).
    """
    check_max_timescale("chrono_forget_bias", "max_timescale", max_timescale)
    u = torch.empty(hidden_size, dtype=torch.float64).uniform_(1.0, max_timescale - 1.0, generator=generator)
    return u.log()


def check_max_timescale(owner: str, name: str, value: object) -> None:
    """Raise unless ``value`` is a usable ``T_max``: a finite number of steps, at least 2."""
    check_float(owner, name, value)
    if not 2 <= value < math.inf:
        raise ValueError(f"{owner}: {name} must be a finite number of steps, at least 2, got {value}")


def _set_chrono_biases(bias: Tensor, hidden_size: int, max_timescale: float, generator: torch.Generator | None) -> None:
    """Write ``b_f = log(u)`` into ``bias[H:2H]`` and ``b_i = -b_f`` into ``bias[:H]`` (gate blocks i, f, g, o)."""
    b_f = chrono_forget_bias(hidden_size, max_timescale, generator)
    bias[hidden_size : 2 * hidden_size] = b_f
    bias[:hidden_size] = -b_f


@torch.no_grad()
def chrono_init_(
    module: nn.Module,
    max_timescale: float,
    policy_offset: float = 2.0,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Chrono-initialise the gate biases of an :class:`~alstm_lightning.layers.aLSTM` or ``nn.LSTM``, in place.

    ``nn.LSTM``: in every layer and direction, ``bias_ih`` gets ``b_f = log(u)``,
    ``u ~ U(1, max_timescale - 1)``, in the forget block and ``-b_f`` in the input block, and
    ``bias_hh`` zeros there. aLSTM: the same for each cell's ``bias``, and every policy is started
    near ``tanh(policy_offset)`` through a constant adaptation unit (see the module docstring).
    Other parameters are left as they are.

    Args:
        module: an ``aLSTM`` (with ``bias=True``) or an ``nn.LSTM`` (with ``bias=True``).
        max_timescale: T_max, the longest dependency expected, at least 2 (steps).
        policy_offset: aLSTM only, the weight of the constant unit in every policy's projection.
        generator: the random source of the forget biases (the global one when ``None``).

    Returns:
        ``module``.

    Raises:
        TypeError: for another kind of module (the aRNN and vanilla RNNs have no forget gate).
        ValueError: for a module without biases, or a bad ``max_timescale`` / ``policy_offset``.
    """
    owner = "chrono_init_"
    if not isinstance(module, (aLSTM, nn.LSTM)):
        raise TypeError(
            f"{owner}: module must be an aLSTM or a torch.nn.LSTM (a gated recurrence with a forget gate), "
            f"got {type(module).__name__}"
        )
    if not module.bias:
        raise ValueError(f"{owner}: the module has no biases to initialise (it was built with bias=False)")
    check_float(owner, "policy_offset", policy_offset)
    if not math.isfinite(policy_offset):
        raise ValueError(f"{owner}: policy_offset must be finite, got {policy_offset}")
    check_max_timescale(owner, "max_timescale", max_timescale)
    if isinstance(module, nn.LSTM):
        H = module.hidden_size
        for layer in range(module.num_layers):
            for suffix in ("", "_reverse")[: 2 if module.bidirectional else 1]:
                bias_ih = getattr(module, f"bias_ih_l{layer}{suffix}")
                bias_hh = getattr(module, f"bias_hh_l{layer}{suffix}")
                bias_hh[: 2 * H] = 0.0
                _set_chrono_biases(bias_ih, H, max_timescale, generator)
        return module
    A = module.adapt_size
    constant_rows = torch.arange(4) * A  # unit 0 of each gate block i, f, g, o of the adaptation LSTM
    for direction in module.directions():
        for adapt, project, cell in zip(direction.adapt_layers, direction.project_layers, direction.cell_layers):
            adapt.weight_ih[constant_rows] = 0.0
            adapt.weight_hh[constant_rows] = 0.0
            adapt.bias_ih[constant_rows] = CONSTANT_UNIT_BIAS
            adapt.bias_hh[constant_rows] = 0.0
            project.linear.weight[:, 0] = policy_offset
            _set_chrono_biases(cell.bias, cell.hidden_size, max_timescale, generator)
    return module
