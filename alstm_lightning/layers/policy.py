"""The adaptation policy: its projection and its split into sub-policies ("paper" / "reference").

A layer's policy vector ``pi = tanh(P a)`` (Section 3 of the paper) is split, in order, into

* ``pi_x``  (I)            scales the layer input ``x``,
* ``pi_h``  (H)            scales the previous hidden state ``h``,
* ``pi_i``  (G*H)          scales the input pre-activations ``W_ih x'``,
* ``pi_hh`` (G*H)          scales the recurrent pre-activations ``W_hh h'``,
* ``pi_b``  (G*H, if bias) scales the bias ``b``,

with G the number of gate blocks (4 for the aLSTM, 1 for the aRNN).

Two layouts exist. ``"paper"`` takes contiguous, non-overlapping slices. ``"reference"`` reproduces
the original implementation, whose slicing helper started every chunk at the *size of the previous
chunk* instead of at the running sum of sizes. For the aLSTM that gives ``pi_x = pi[0:I]``,
``pi_h = pi[I:I+H]``, ``pi_i = pi[H:5H]``, ``pi_hh = pi[4H:8H]`` and ``pi_b = pi[4H:8H]``: ``pi_i``
overlaps ``pi_h`` and ``pi_hh``, ``pi_b`` equals ``pi_hh``, and the tail of the projection is never
used. The paper's published numbers were produced with the reference layout.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

PolicyLayout = Literal["paper", "reference"]
POLICY_LAYOUTS: tuple[str, ...] = ("paper", "reference")


class PolicySlice(NamedTuple):
    """Start and length of one sub-policy inside the policy vector."""

    start: int
    length: int


class SubPolicies(NamedTuple):
    """The five sub-policies of one step; ``pi_b`` is ``None`` without bias.

    Shapes: ``pi_x: (B, I)``, ``pi_h: (B, H)``, ``pi_i, pi_hh, pi_b: (B, G*H)``.
    """

    pi_x: Tensor
    pi_h: Tensor
    pi_i: Tensor
    pi_hh: Tensor
    pi_b: Tensor | None


def policy_size(input_size: int, hidden_size: int, num_gates: int, bias: bool) -> int:
    """Width of the policy vector: ``I + H + 2*G*H``, plus ``G*H`` with a bias."""
    return input_size + hidden_size + (3 if bias else 2) * num_gates * hidden_size


def policy_slices(
    input_size: int, hidden_size: int, num_gates: int, bias: bool, layout: PolicyLayout
) -> tuple[PolicySlice, ...]:
    """Where each sub-policy ``(pi_x, pi_h, pi_i, pi_hh[, pi_b])`` lies in the policy vector.

    ``"paper"`` places them back to back; ``"reference"`` starts each one at the previous one's
    length (the original implementation's offsets, see the module docstring).
    """
    gates = num_gates * hidden_size
    lengths = [input_size, hidden_size, gates, gates] + ([gates] if bias else [])
    if layout == "paper":
        starts = [sum(lengths[:k]) for k in range(len(lengths))]
    else:
        starts = [0] + lengths[:-1]
    return tuple(PolicySlice(s, n) for s, n in zip(starts, lengths))


def split_policy(policy: Tensor, slices: tuple[PolicySlice, ...]) -> SubPolicies:
    """Cut a policy ``(..., P)`` into its sub-policies (views, no copies)."""
    parts = [policy.narrow(-1, s.start, s.length) for s in slices]
    return SubPolicies(*parts, None) if len(parts) == 4 else SubPolicies(*parts)


def projection_size(input_size: int, hidden_size: int, num_gates: int, bias: bool, layout: PolicyLayout) -> int:
    """Rows of the policy projection ``P``: :func:`policy_size`, and for the ``"reference"`` aRNN one more
    block of ``hidden_size`` rows, never read, as in the original aRNN (whose ``state_dict`` then loads)."""
    extra = hidden_size if layout == "reference" and num_gates == 1 else 0
    return policy_size(input_size, hidden_size, num_gates, bias) + extra


def unused_policy_fraction(
    input_size: int, hidden_size: int, num_gates: int, bias: bool, layout: PolicyLayout
) -> float:
    """Share of the projection's output units that no sub-policy reads (0 for ``"paper"``)."""
    size = projection_size(input_size, hidden_size, num_gates, bias, layout)
    used = torch.zeros(size, dtype=torch.bool)
    for s in policy_slices(input_size, hidden_size, num_gates, bias, layout):
        used[s.start : s.start + s.length] = True
    return 1.0 - used.sum().item() / size


class Project(nn.Module):
    """Bias-free linear map from the adaptation state to the policy, ``pi = tanh(P a)``.

    Kept as a module holding ``linear`` so that its parameter is named ``linear.weight``, as in the
    original implementation.

    Args:
        adapt_size: A, width of the adaptation state.
        policy_size: P, width of the policy vector.

    Shape:
        input: ``(..., A)``; output: ``(..., P)``.
    """

    def __init__(
        self, adapt_size: int, policy_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(adapt_size, policy_size, bias=False, device=device, dtype=dtype)

    def forward(self, a: Tensor) -> Tensor:
        return torch.tanh(self.linear(a))
