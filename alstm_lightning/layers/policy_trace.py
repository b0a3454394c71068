r"""``trace_policies``: the adaptation policy ``pi = tanh(P a)`` of every token, layer and direction.

The fused path computes the policies inside one kernel and never calls the ``Project`` modules,
so tracing runs the stack once with ``impl="naive"``, whose every step calls
``project_layers[l](a)``, and records those calls with forward hooks. The result is the policy
the stack used, step by step, for plotting or statistics.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from .policy import SubPolicies, split_policy
from .stack import AdaptiveStack, reverse_steps
from .state import AdaptiveState


def trace_policies(
    model: AdaptiveStack,
    input: Tensor | PackedSequence,
    hx: AdaptiveState | None = None,
    split: bool = False,
) -> list[Tensor] | list[SubPolicies]:
    """Run ``model`` on ``input`` and return the policy of every step, per layer and direction.

    The model runs in its current mode (call ``model.eval()`` first for the policies without
    dropout on ``a``), without gradients, through the naive path; its ``impl`` is restored after.

    Args:
        model: an :class:`~alstm_lightning.aLSTM` or :class:`~alstm_lightning.aRNN`.
        input: what ``model.forward`` takes: ``(T, B, I)``, ``(B, T, I)`` with ``batch_first``,
            or a ``PackedSequence``.
        hx: the initial state, as for ``model.forward``.
        split: return each entry cut into its named sub-policies instead of the whole vector.

    Returns:
        One entry per layer and direction, in the state's order (index ``l * D + d``). Each is the
        policy ``(T, B, P_l)``, time-major whatever ``batch_first``, with ``P_l`` the layer's
        ``policy_size`` and step ``t`` the policy that read input step ``t`` (the reverse
        direction's too); for packed input, steps past a sequence's length hold NaN. With
        ``split``, each entry is a :class:`~alstm_lightning.layers.policy.SubPolicies` of
        ``(T, B, ·)`` views ``pi_x, pi_h, pi_i, pi_hh, pi_b`` (``pi_b`` is ``None`` without bias),
        overlapping in the ``"reference"`` layout.

    Raises:
        TypeError: if ``model`` is not an aLSTM or aRNN, or ``split`` is not a bool; the model
            validates ``input`` and ``hx``.

    Example:
        >>> model = aLSTM(8, 16, 4, num_layers=2).eval()
        >>> policies = trace_policies(model, torch.randn(7, 3, 8))
        >>> [p.shape for p in policies]
        [torch.Size([7, 3, 216]), torch.Size([7, 3, 224])]
    """
    if not isinstance(model, AdaptiveStack):
        raise TypeError(f"trace_policies: model must be an aLSTM or aRNN, got {type(model).__name__}")
    if not isinstance(split, bool):
        raise TypeError(f"trace_policies: split must be a bool, got {type(split).__name__} ({split!r})")
    directions = model.directions()
    projects = [direction.project_layers[l] for l in range(model.num_layers) for direction in directions]
    steps: list[list[Tensor]] = [[] for _ in projects]
    handles = [
        project.register_forward_hook(lambda module, args, pi, k=k: steps[k].append(pi))
        for k, project in enumerate(projects)
    ]
    impl = model.impl
    model.impl = "naive"
    try:
        with torch.no_grad():
            model(input, hx)
    finally:
        model.impl = impl
        for handle in handles:
            handle.remove()

    lengths = pad_packed_sequence(input)[1] if isinstance(input, PackedSequence) else None
    cells = [direction.cell_layers[l] for l in range(model.num_layers) for direction in directions]
    policies = []
    for k, (recorded, cell) in enumerate(zip(steps, cells)):
        # (T, B, P_l), in the order the direction ran; the reference aRNN's unread rows left out
        policy = torch.stack(recorded)[..., : cell.policy_size]
        if k % len(directions) == 1:  # the reverse direction ran from the last step to the first
            policy = reverse_steps(policy, lengths)
        if lengths is not None:
            past_end = torch.arange(policy.size(0)).unsqueeze(1) >= lengths.unsqueeze(0)  # (T, B)
            policy = policy.masked_fill(past_end.to(policy.device).unsqueeze(-1), float("nan"))
        policies.append(policy)
    if not split:
        return policies
    return [split_policy(policy, cell.policy_slices) for policy, cell in zip(policies, cells)]
