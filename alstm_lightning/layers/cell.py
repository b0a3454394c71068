r"""One step of the adaptive cells: ``alstm_cell`` / ``arnn_cell`` and ``aLSTMCell`` / ``aRNNCell``.

The adaptive LSTM step (Flennerhag et al. 2018, Section 3, Eq. 9-10), given the policy
sub-vectors of :mod:`alstm_lightning.layers.policy`::

    x'    = x ⊙ pi_x
    h'    = h ⊙ pi_h
    gates = (W_ih x') ⊙ pi_i + (W_hh h') ⊙ pi_hh + b ⊙ pi_b
    i, f, g, o = split(gates, 4)                 # input, forget, cell, output blocks
    c_new = sigmoid(f) ⊙ c + sigmoid(i) ⊙ tanh(g)
    h_new = sigmoid(o) ⊙ tanh(c_new)

The adaptive vanilla RNN uses the same adaptive pre-activation with one gate block:
``h_new = tanh((W_ih x') ⊙ pi_i + (W_hh h') ⊙ pi_hh + b ⊙ pi_b)``.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_bool, check_choice, check_floating_tensor, check_like, check_positive_int, check_size
from .policy import POLICY_LAYOUTS, PolicyLayout, SubPolicies, policy_size, policy_slices, projection_size, split_policy


def adaptive_preactivation(
    x: Tensor, h: Tensor, pi: SubPolicies, weight_ih: Tensor, weight_hh: Tensor, bias: Tensor | None
) -> Tensor:
    """``(W_ih (x ⊙ pi_x)) ⊙ pi_i + (W_hh (h ⊙ pi_h)) ⊙ pi_hh + b ⊙ pi_b``, shape ``(B, G*H)``."""
    gates = F.linear(x * pi.pi_x, weight_ih) * pi.pi_i + F.linear(h * pi.pi_h, weight_hh) * pi.pi_hh
    if bias is not None:
        gates = gates + bias * pi.pi_b
    return gates


def lstm_update(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """The LSTM state update from pre-activations ``(B, 4H)`` (blocks i, f, g, o) and ``c: (B, H)``."""
    i, f, g, o = gates.chunk(4, -1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


def alstm_step(
    x: Tensor, h: Tensor, c: Tensor, pi: SubPolicies, weight_ih: Tensor, weight_hh: Tensor, bias: Tensor | None
) -> tuple[Tensor, Tensor]:
    """One aLSTM step from already split sub-policies; no checks. Returns ``(h, c)``."""
    return lstm_update(adaptive_preactivation(x, h, pi, weight_ih, weight_hh, bias), c)


def arnn_step(
    x: Tensor, h: Tensor, c: None, pi: SubPolicies, weight_ih: Tensor, weight_hh: Tensor, bias: Tensor | None
) -> tuple[Tensor, None]:
    """One aRNN step from already split sub-policies; no checks. Returns ``(h, None)``."""
    return torch.tanh(adaptive_preactivation(x, h, pi, weight_ih, weight_hh, bias)), None


def _check_step_arguments(
    owner: str,
    num_gates: int,
    input: Tensor,
    h: Tensor,
    c: Tensor | None,
    policy: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias: Tensor | None,
    policy_layout: str,
) -> SubPolicies:
    """Validate the arguments of a functional cell and return the split policy."""
    check_choice(owner, "policy_layout", policy_layout, POLICY_LAYOUTS)
    check_floating_tensor(owner, "input", input, 2)
    check_floating_tensor(owner, "weight_ih", weight_ih, 2)
    batch, input_size = input.shape
    hidden_size = weight_ih.size(0) // num_gates
    check_size(owner, "weight_ih", weight_ih, (num_gates * hidden_size, input_size))
    check_size(owner, "weight_hh", weight_hh, (num_gates * hidden_size, hidden_size))
    if bias is not None:
        check_size(owner, "bias", bias, (num_gates * hidden_size,))
    states = {"hidden[0] (h)": h} if c is None else {"hidden[0] (h)": h, "hidden[1] (c)": c}
    for name, tensor in states.items():
        check_floating_tensor(owner, name, tensor, 2)
        check_size(owner, name, tensor, (batch, hidden_size))
        check_like(owner, name, tensor, input)
    check_floating_tensor(owner, "policy", policy, 2)
    check_size(owner, "policy", policy, (batch, policy_size(input_size, hidden_size, num_gates, bias is not None)))
    check_like(owner, "policy", policy, input)
    slices = policy_slices(input_size, hidden_size, num_gates, bias is not None, policy_layout)  # type: ignore[arg-type]
    return split_policy(policy, slices)


def alstm_cell(
    input: Tensor,
    hidden: tuple[Tensor, Tensor],
    policy: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias: Tensor | None = None,
    policy_layout: PolicyLayout = "paper",
) -> tuple[Tensor, Tensor]:
    """One step of the adaptive LSTM (functional form).

    Args:
        input: ``x``, shape ``(B, I)``.
        hidden: ``(h, c)``, each ``(B, H)``.
        policy: ``pi = tanh(P a)``, shape ``(B, I + H + 8H)``, plus ``4H`` with a bias.
        weight_ih: ``(4H, I)``.
        weight_hh: ``(4H, H)``.
        bias: ``(4H,)`` or ``None``.
        policy_layout: how ``policy`` is split, ``"paper"`` or ``"reference"``
            (see :mod:`alstm_lightning.layers.policy`).

    Returns:
        ``(h, c)``, each ``(B, H)``.

    Raises:
        TypeError, ValueError: on a wrong type, dtype, shape or layout, naming the argument.
    """
    if not isinstance(hidden, (tuple, list)) or len(hidden) != 2:
        raise TypeError(f"alstm_cell: hidden must be a pair (h, c) of tensors, got {type(hidden).__name__}")
    h, c = hidden
    pi = _check_step_arguments("alstm_cell", 4, input, h, c, policy, weight_ih, weight_hh, bias, policy_layout)
    return alstm_step(input, h, c, pi, weight_ih, weight_hh, bias)


def arnn_cell(
    input: Tensor,
    hidden: Tensor,
    policy: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias: Tensor | None = None,
    policy_layout: PolicyLayout = "paper",
) -> Tensor:
    """One step of the adaptive vanilla RNN (functional form).

    Args:
        input: ``x``, shape ``(B, I)``.
        hidden: ``h``, shape ``(B, H)``.
        policy: ``pi = tanh(P a)``, shape ``(B, I + H + 2H)``, plus ``H`` with a bias.
        weight_ih: ``(H, I)``.
        weight_hh: ``(H, H)``.
        bias: ``(H,)`` or ``None``.
        policy_layout: ``"paper"`` or ``"reference"``.

    Returns:
        ``h``, shape ``(B, H)``.
    """
    pi = _check_step_arguments("arnn_cell", 1, input, hidden, None, policy, weight_ih, weight_hh, bias, policy_layout)
    return arnn_step(input, hidden, None, pi, weight_ih, weight_hh, bias)[0]


class AdaptiveCell(nn.Module):
    """Parameters and initialisation shared by the adaptive cells; subclasses set the step math.

    Subclass it for another adaptive cell: set :attr:`num_gates` (G), :attr:`has_cell_state` and
    ``step`` (``step(x, h, c, pi, weight_ih, weight_hh, bias) -> (h, c)``), and stack it with an
    :class:`~alstm_lightning.layers.stack.AdaptiveStack` subclass.
    """

    num_gates: int
    has_cell_state: bool

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        policy_layout: PolicyLayout = "paper",
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        check_positive_int(owner, "input_size", input_size)
        check_positive_int(owner, "hidden_size", hidden_size)
        check_bool(owner, "bias", bias)
        check_choice(owner, "policy_layout", policy_layout, POLICY_LAYOUTS)
        factory = {"device": device, "dtype": dtype}
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.policy_layout = policy_layout
        gates = self.num_gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gates, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(gates, hidden_size, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(gates, **factory))
        else:
            self.register_parameter("bias", None)
        self.policy_slices = policy_slices(input_size, hidden_size, self.num_gates, bias, policy_layout)
        self.reset_parameters()

    @property
    def policy_size(self) -> int:
        """P, the width of the policy vector this cell reads."""
        return policy_size(self.input_size, self.hidden_size, self.num_gates, self.bias is not None)

    @property
    def projection_size(self) -> int:
        """The rows of the policy projection feeding this cell (:func:`~.policy.projection_size`)."""
        return projection_size(self.input_size, self.hidden_size, self.num_gates, self.bias is not None, self.policy_layout)

    def reset_parameters(self) -> None:
        """Orthogonal ``weight_ih`` and ``weight_hh``; zero bias (subclasses may add to it)."""
        nn.init.orthogonal_(self.weight_ih)
        nn.init.orthogonal_(self.weight_hh)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.bias is None:
            text += ", bias=False"
        if self.policy_layout != "paper":
            text += f", policy_layout={self.policy_layout!r}"
        return text


class aLSTMCell(AdaptiveCell):
    """The adaptive LSTM cell: one step, with the policy given by the caller.

    See the module docstring for the equations.

    Args:
        input_size: I.
        hidden_size: H.
        bias: whether the cell has the adaptive bias ``b ⊙ pi_b``.
        policy_layout: ``"paper"`` (contiguous sub-policies) or ``"reference"`` (the original
            implementation's overlapping slices; see :mod:`alstm_lightning.layers.policy`).

    Parameters:
        weight_ih: ``(4H, I)``, orthogonal at initialisation.
        weight_hh: ``(4H, H)``, orthogonal at initialisation.
        bias: ``(4H,)``, zero with +1 on the forget-gate block ``[H:2H]``.

    Shape:
        input: ``(B, I)``; hx: ``(h, c)`` each ``(B, H)`` (zeros when ``None``);
        policy: ``(B, P)`` with ``P = self.policy_size``; output: ``(h, c)`` each ``(B, H)``.

    Example:
        >>> cell = aLSTMCell(8, 6)
        >>> policy = torch.tanh(torch.randn(3, cell.policy_size))
        >>> h, c = cell(torch.randn(3, 8), None, policy)
    """

    num_gates = 4
    has_cell_state = True
    step = staticmethod(alstm_step)

    def reset_parameters(self) -> None:
        """Orthogonal weights; bias zero with +1 on the forget-gate block."""
        super().reset_parameters()
        if self.bias is not None:
            with torch.no_grad():
                self.bias[self.hidden_size : 2 * self.hidden_size] += 1.0

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None, policy: Tensor) -> tuple[Tensor, Tensor]:
        if hx is None:
            check_floating_tensor("aLSTMCell", "input", input, 2)
            zeros = input.new_zeros(input.size(0), self.hidden_size)
            hx = (zeros, zeros)
        if isinstance(input, Tensor) and input.dim() == 2 and input.size(-1) != self.input_size:
            raise ValueError(
                f"aLSTMCell: input.size(-1) must equal input_size={self.input_size}, got {input.size(-1)}"
            )
        return alstm_cell(input, hx, policy, self.weight_ih, self.weight_hh, self.bias, self.policy_layout)


class aRNNCell(AdaptiveCell):
    """The adaptive vanilla RNN cell: ``h = tanh((W_ih x') ⊙ pi_i + (W_hh h') ⊙ pi_hh + b ⊙ pi_b)``.

    Args:
        input_size: I.
        hidden_size: H.
        bias: whether the cell has the adaptive bias.
        policy_layout: ``"paper"`` or ``"reference"``.

    Parameters:
        weight_ih: ``(H, I)`` and weight_hh: ``(H, H)``, orthogonal; bias: ``(H,)``, zero.

    Shape:
        input: ``(B, I)``; hx: ``(B, H)`` (zeros when ``None``); policy: ``(B, P)``;
        output: ``(B, H)``.
    """

    num_gates = 1
    has_cell_state = False
    step = staticmethod(arnn_step)

    def forward(self, input: Tensor, hx: Tensor | None, policy: Tensor) -> Tensor:
        if hx is None:
            check_floating_tensor("aRNNCell", "input", input, 2)
            hx = input.new_zeros(input.size(0), self.hidden_size)
        if isinstance(input, Tensor) and input.dim() == 2 and input.size(-1) != self.input_size:
            raise ValueError(f"aRNNCell: input.size(-1) must equal input_size={self.input_size}, got {input.size(-1)}")
        return arnn_cell(input, hx, policy, self.weight_ih, self.weight_hh, self.bias, self.policy_layout)
