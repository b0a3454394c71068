r"""``aLSTM`` / ``aRNN``: multi-layer adaptive stacks with directions, packing, dropout and state.

Per layer l and step t (Flennerhag et al. 2018, Section 3 and Appendix), with L = num_layers:

* the layer input ``x`` is the sequence input for l = 0, else the dropped output of layer l-1;
* the adaptation model (an ``nn.LSTMCell`` of A units) reads ``[x, h_{l,t-1}]`` when L = 1 and
  ``[x, h_{l,t-1}, a_{l-1,t}]`` when L > 1, where layer 0 reads the *top* layer's adaptation state
  from the previous step, ``a_{L-1,t-1}`` (the hybrid RHN-LSTM adaptation);
* the policy is ``pi = tanh(P_l a_{l,t})``, split into ``pi_x, pi_h, pi_i, pi_hh, pi_b``;
* the cell is the adaptive LSTM (or RNN) step of :mod:`alstm_lightning.layers.cell`.

The time loop runs the reference path of :mod:`~alstm_lightning.layers.recurrence` (``impl="naive"``,
which calls the cell's step) or the fast path of :mod:`~alstm_lightning.layers.fused` (the default),
which computes the same equations in fused form; tests hold the two equal.

Variational dropout samples one mask per sequence and forward call on each layer's ``h``
(``dropout``) and ``a`` (``adapt_dropout``), every layer's ``h`` mask first, then every layer's ``a``
mask, as the original implementation draws them; the dropped values recur and feed the layer above.
The last layer's output is returned before dropout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .cell import AdaptiveCell, aLSTMCell, aRNNCell
from ..checks import (
    check_bool,
    check_choice,
    check_positive_int,
    check_probability,
    check_sequence_input,
    check_state_tensors,
)
from .dropout import variational_mask
from .fused import run_chain_fused
from .policy import POLICY_LAYOUTS, PolicyLayout, Project
from .recurrence import ChainLayer, ChainResult, LayerState, run_chain_naive
from .state import AdaptiveState, zero_state

#: What the parameter names of each direction end with, forward first.
DIRECTION_SUFFIXES: tuple[str, ...] = ("", "_reverse")
Impl = Literal["fused", "naive"]
ChainRunner = Callable[..., ChainResult]
CHAIN_RUNNERS: dict[str, ChainRunner] = {"fused": run_chain_fused, "naive": run_chain_naive}


#: A dropout setting: one probability for every layer, one per layer, or ``None`` (the original's "off").
DropoutSetting = float | Sequence[float] | None


class StackDirection(NamedTuple):
    """One direction's modules of a stack, one entry per layer; see :meth:`AdaptiveStack.directions`.

    Fields:
        adapt_layers: the adaptation ``nn.LSTMCell`` s.
        project_layers: the policy projections (:class:`~alstm_lightning.layers.policy.Project`).
        cell_layers: the adaptive cells (``alstm_layers`` / ``arnn_layers``).
        suffix: what the direction's parameter names end with: ``""`` forward, ``"_reverse"`` reverse.
    """

    adapt_layers: nn.ModuleList
    project_layers: nn.ModuleList
    cell_layers: nn.ModuleList
    suffix: str


class StackOutputs(NamedTuple):
    """What ``forward(..., return_all=True)`` returns.

    Fields:
        output: as without ``return_all``.
        state: as without ``return_all``.
        outputs: per layer, its output after dropout, ``(T, B, D*H_l)`` (packed for packed input).
        raw_outputs: per layer, its output before dropout, same shapes.
    """

    output: Tensor | PackedSequence
    state: AdaptiveState
    outputs: list[Tensor | PackedSequence]
    raw_outputs: list[Tensor | PackedSequence]


def reverse_steps(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of ``x: (T, B, F)`` within its own length; padding stays in place."""
    if lengths is None:
        return x.flip(0)
    steps = torch.arange(x.size(0), device=x.device).unsqueeze(1)
    lengths = lengths.to(x.device).unsqueeze(0)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)
    return x.gather(0, index.unsqueeze(-1).expand_as(x))


def _resolve_alias(owner: str, name: str, value, alias: str, alias_value, default):
    """Take the original implementation's keyword ``alias`` for ``name``."""
    if alias_value is None:
        return value
    if value != default:
        raise TypeError(f"{owner}: got both {name}={value!r} and its alias {alias}={alias_value!r}; pass only {name}")
    return alias_value


def layer_probabilities(owner: str, name: str, value: DropoutSetting, num_layers: int) -> tuple[float, ...]:
    """Per layer, the drop probability a dropout setting gives: ``None`` is 0 (as in the original), a number
    applies to every layer, a sequence gives one per layer.

    Raises:
        TypeError, ValueError: for a sequence of another length or a probability outside ``[0, 1)``.
    """
    if value is None:
        return (0.0,) * num_layers
    if isinstance(value, (list, tuple)):
        if len(value) != num_layers:
            raise ValueError(
                f"{owner}: {name} must be one probability or one per layer (num_layers={num_layers}), got {list(value)!r}"
            )
        for p in value:
            check_probability(owner, name, p)
        return tuple(float(p) for p in value)
    check_probability(owner, name, value)
    return (float(value),) * num_layers


class AdaptiveStack(nn.Module):
    """The machinery :class:`aLSTM` and :class:`aRNN` share: layers, directions, packing, dropout and state.

    Subclass it to stack another adaptive cell: set :attr:`cell_class` (an
    :class:`~alstm_lightning.layers.cell.AdaptiveCell`), :attr:`cell_layers_name` (the parameter
    prefix of the cells) and :attr:`original_dropout_alias` (the original code's keyword for ``dropout``).
    """

    cell_class: type[AdaptiveCell]
    cell_layers_name: str
    original_dropout_alias: str

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        adapt_size: int,
        output_size: int | None = None,
        num_layers: int = 1,
        dropout: DropoutSetting = 0.0,
        adapt_dropout: DropoutSetting = 0.0,
        batch_first: bool = False,
        bias: bool = True,
        bidirectional: bool = False,
        policy_layout: PolicyLayout = "paper",
        impl: Impl = "fused",
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        **aliases,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        known = {"nlayers", "dropout_adapt", self.original_dropout_alias}
        unknown = sorted(set(aliases) - known)
        if unknown:
            raise TypeError(f"{owner}: unexpected keyword argument(s) {unknown}")
        num_layers = _resolve_alias(owner, "num_layers", num_layers, "nlayers", aliases.get("nlayers"), 1)
        dropout = _resolve_alias(
            owner, "dropout", dropout, self.original_dropout_alias, aliases.get(self.original_dropout_alias), 0.0
        )
        adapt_dropout = _resolve_alias(
            owner, "adapt_dropout", adapt_dropout, "dropout_adapt", aliases.get("dropout_adapt"), 0.0
        )
        output_size = hidden_size if output_size is None else output_size
        for name, value in [
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("adapt_size", adapt_size),
            ("output_size", output_size),
            ("num_layers", num_layers),
        ]:
            check_positive_int(owner, name, value)
        self._layer_dropout = layer_probabilities(owner, "dropout", dropout, num_layers)
        self._layer_adapt_dropout = layer_probabilities(owner, "adapt_dropout", adapt_dropout, num_layers)
        for name, value in [("batch_first", batch_first), ("bias", bias), ("bidirectional", bidirectional)]:
            check_bool(owner, name, value)
        check_choice(owner, "policy_layout", policy_layout, POLICY_LAYOUTS)
        check_choice(owner, "impl", impl, tuple(CHAIN_RUNNERS))

        self.input_size = input_size
        self.hidden_size = hidden_size
        self.adapt_size = adapt_size
        self.output_size = output_size
        self.num_layers = num_layers
        # as given: one number, or one per layer; a sequence draws a mask for every layer (even at
        # probability 0), as the original does, so that seeded masks are the original's
        self.dropout = list(self._layer_dropout) if isinstance(dropout, (list, tuple)) else float(dropout or 0.0)
        self.adapt_dropout = (
            list(self._layer_adapt_dropout) if isinstance(adapt_dropout, (list, tuple)) else float(adapt_dropout or 0.0)
        )
        self.batch_first = batch_first
        self.bias = bias
        self.bidirectional = bidirectional
        self.policy_layout = policy_layout
        self.impl = impl

        factory = {"device": device, "dtype": dtype}
        for suffix in DIRECTION_SUFFIXES[: self.num_directions]:
            adapt, project, cells = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
            for layer in range(num_layers):
                layer_in, layer_hidden = self.layer_sizes(layer)
                adapt_in = layer_in + layer_hidden + (adapt_size if num_layers > 1 else 0)
                cell = self.cell_class(layer_in, layer_hidden, bias=bias, policy_layout=policy_layout, **factory)
                adapt.append(nn.LSTMCell(adapt_in, adapt_size, **factory))
                project.append(Project(adapt_size, cell.projection_size, **factory))
                cells.append(cell)
            setattr(self, "adapt_layers" + suffix, adapt)
            setattr(self, "project_layers" + suffix, project)
            setattr(self, self.cell_layers_name + suffix, cells)

    @property
    def num_directions(self) -> int:
        """D: 2 when bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    def directions(self) -> list[StackDirection]:
        """Each direction's modules (forward, then reverse when bidirectional): the one way to reach them.

        Example:
            >>> for direction in model.directions():
            ...     for adapt, project, cell in zip(*direction[:3]):
            ...         ...
        """
        return [
            StackDirection(
                getattr(self, "adapt_layers" + suffix),
                getattr(self, "project_layers" + suffix),
                getattr(self, self.cell_layers_name + suffix),
                suffix,
            )
            for suffix in DIRECTION_SUFFIXES[: self.num_directions]
        ]

    def layer_sizes(self, layer: int) -> tuple[int, int]:
        """``(input width, hidden width)`` of ``layer``, per direction."""
        layer_in = self.input_size if layer == 0 else self.num_directions * self.hidden_size
        layer_hidden = self.output_size if layer == self.num_layers - 1 else self.hidden_size
        return layer_in, layer_hidden

    def reset_parameters(self) -> None:
        """Re-initialise: cells as in their ``reset_parameters`` (orthogonal weights, forget bias +1
        for the aLSTM); adaptation LSTMs and projections with torch's default uniform
        ``U(-1/sqrt(A), 1/sqrt(A))``, as in the original implementation."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def init_hidden(self, batch_size: int) -> AdaptiveState:
        """An all-zero state for ``batch_size`` rows on the parameters' device and dtype."""
        check_positive_int(type(self).__name__, "batch_size", batch_size)
        like = next(self.parameters())
        return self._zero_state(batch_size, like)

    def _zero_state(self, batch_size: int, like: Tensor) -> AdaptiveState:
        hidden_sizes = [self.layer_sizes(layer)[1] for layer in range(self.num_layers)]
        return zero_state(
            batch_size, hidden_sizes, self.adapt_size, self.num_directions, self.cell_class.has_cell_state, like
        )

    def _check_state(self, hx: object, batch_size: int, like: Tensor) -> AdaptiveState:
        owner = type(self).__name__
        expected = (
            f"{owner}: hx must be an AdaptiveState (h, c, a, a_c), the original format "
            f"([(a, a_c)] * L, [(h, c)] * L) or None, got"
        )
        if isinstance(hx, (tuple, list)) and len(hx) == 2:  # the original implementation's format
            try:
                hx = AdaptiveState.from_original(hx)
            except TypeError:
                raise TypeError(f"{expected} a {type(hx).__name__} of 2 that is neither") from None
        if not isinstance(hx, (tuple, list)) or len(hx) != 4:
            raise TypeError(f"{expected} {type(hx).__name__}")
        hx = AdaptiveState(*(tuple(field) for field in hx))  # nested lists (a repackaged state) become tuples
        if not self.cell_class.has_cell_state:
            hx = hx._replace(c=())
        reference = self._zero_state(batch_size, like)
        for field in AdaptiveState._fields:
            shapes = [tuple(t.shape) for t in getattr(reference, field)]
            check_state_tensors(owner, field, getattr(hx, field), shapes, like)
        return hx

    def _chain_layers(self, direction: int, layers: range, batch_size: int, like: Tensor) -> list[ChainLayer]:
        adapt, project, cells, _ = self.directions()[direction]
        # every layer's h mask, then every layer's a mask: the original's order, so a seed gives its masks
        h_masks = self._masks(self.dropout, self._layer_dropout, [cells[l].hidden_size for l in layers], layers, batch_size, like)
        a_masks = self._masks(self.adapt_dropout, self._layer_adapt_dropout, [self.adapt_size] * len(layers), layers, batch_size, like)
        return [
            ChainLayer(adapt[layer], project[layer], cells[layer], h_mask, a_mask)
            for layer, h_mask, a_mask in zip(layers, h_masks, a_masks)
        ]

    def _masks(
        self, setting: float | list[float], probabilities: tuple[float, ...], sizes: list[int], layers: range,
        batch_size: int, like: Tensor,
    ) -> list[Tensor | None]:
        """The variational masks of ``layers`` (``None`` where none is drawn), in layer order."""
        if not self.training:
            return [None] * len(sizes)
        draw_all = isinstance(setting, list)  # the original draws every layer's mask when given a list
        return [
            variational_mask(batch_size, size, probabilities[l], like) if draw_all or probabilities[l] > 0 else None
            for l, size in zip(layers, sizes)
        ]

    def forward(
        self, input: Tensor | PackedSequence, hx: AdaptiveState | None = None, return_all: bool = False
    ) -> tuple[Tensor | PackedSequence, AdaptiveState] | StackOutputs:
        """Run the stack over a batch of sequences.

        Args:
            input: ``(T, B, I)``, ``(B, T, I)`` with ``batch_first``, or a ``PackedSequence``
                (sorted or not) whose padded form is ``(T, B, I)``.
            hx: the initial :class:`AdaptiveState` (zeros when ``None``), in the caller's batch order.
            return_all: also return every layer's outputs before and after dropout.

        Returns:
            ``(output, state)``; ``output`` is ``(T, B, D*O)`` (``(B, T, D*O)`` with
            ``batch_first``) or a ``PackedSequence`` like ``input``. ``state`` holds, for packed
            input, each sequence's state at its own last step. With ``return_all``, a
            :class:`StackOutputs`.

        Raises:
            TypeError, ValueError: for a wrong input type, dtype, shape, or state.
        """
        owner = type(self).__name__
        check_sequence_input(owner, input, self.input_size, self.batch_first)
        check_bool(owner, "return_all", return_all)
        data = input.data if isinstance(input, PackedSequence) else input
        parameter_dtype = next(self.parameters()).dtype
        if data.dtype != parameter_dtype and not torch.is_autocast_enabled(data.device.type):
            raise TypeError(
                f"{owner}: input dtype must be the parameters' dtype {parameter_dtype} outside autocast, got "
                f"{data.dtype} (cast the input, or the model with .to({data.dtype}), or run under torch.autocast)"
            )
        packed = input if isinstance(input, PackedSequence) else None
        if packed is not None:
            x, lengths = pad_packed_sequence(packed)
            step_mask = torch.arange(x.size(0)).unsqueeze(1) < lengths.unsqueeze(0)
            step_mask = step_mask.to(x.device)
        else:
            x = input.transpose(0, 1) if self.batch_first else input
            lengths = step_mask = None
        batch_size = x.size(1)
        if hx is None:
            state = self._zero_state(batch_size, x)
        else:
            if torch.is_autocast_enabled(x.device.type):
                hx = AdaptiveState(*hx).to(x.dtype) if isinstance(hx, tuple) and len(hx) == 4 else hx
            state = self._check_state(hx, batch_size, x)

        if self.bidirectional:
            raw, dropped, final = self._run_bidirectional(x, state, lengths, step_mask)
        else:
            result = CHAIN_RUNNERS[self.impl](
                x,
                self._chain_layers(0, range(self.num_layers), batch_size, x),
                self._layer_states(state, 0, range(self.num_layers)),
                wrap=self.num_layers > 1,
                step_mask=step_mask,
            )
            raw, dropped, final = result.raw, result.dropped, result.states
        new_state = AdaptiveState(
            tuple(s.h for s in final),
            tuple(s.c for s in final) if self.cell_class.has_cell_state else (),
            tuple(s.a for s in final),
            tuple(s.a_c for s in final),
        )

        def as_input_kind(sequence: Tensor) -> Tensor | PackedSequence:
            if packed is not None:
                return _pack_like(sequence, lengths, packed)
            return sequence.transpose(0, 1) if self.batch_first else sequence

        output = as_input_kind(raw[-1])
        if not return_all:
            return output, new_state
        return StackOutputs(
            output, new_state, [as_input_kind(d) for d in dropped], [as_input_kind(r) for r in raw]
        )

    def _layer_states(self, state: AdaptiveState, direction: int, layers: range) -> list[LayerState]:
        D = self.num_directions
        has_c = self.cell_class.has_cell_state
        return [
            LayerState(
                state.h[l * D + direction],
                state.c[l * D + direction] if has_c else None,
                state.a[l * D + direction],
                state.a_c[l * D + direction],
            )
            for l in layers
        ]

    def _run_bidirectional(
        self, x: Tensor, state: AdaptiveState, lengths: Tensor | None, step_mask: Tensor | None
    ) -> tuple[list[Tensor], list[Tensor], list[LayerState]]:
        """Layer by layer, each direction with its own adaptation chain.

        A layer's input concatenates both directions of the layer below, so the top layer at
        step t-1 depends on the whole sequence: the wrap-around edge of the hybrid adaptation
        cannot exist here. Layer 0 therefore reads zeros in place of the top layer's adaptation
        state; layers above read the layer below's adaptation states of the same direction.
        """
        runner = CHAIN_RUNNERS[self.impl]
        batch_size = x.size(1)
        raw: list[Tensor] = []
        dropped: list[Tensor] = []
        final: list[LayerState] = []
        below: list[Tensor | None] = [None, None]
        if self.num_layers > 1:
            below = [x.new_zeros(x.size(0), batch_size, self.adapt_size)] * 2
        inp = x
        for layer in range(self.num_layers):
            raw_dirs, dropped_dirs = [], []
            for direction in (0, 1):
                reverse = direction == 1
                result = runner(
                    reverse_steps(inp, lengths) if reverse else inp,
                    self._chain_layers(direction, range(layer, layer + 1), batch_size, x),
                    self._layer_states(state, direction, range(layer, layer + 1)),
                    wrap=False,
                    a_below=below[direction],
                    step_mask=step_mask,
                    return_adapt_seq=layer < self.num_layers - 1,
                )
                # the adaptation sequence stays in this direction's own step order for the layer above
                below[direction] = result.adapt_seq
                raw_dirs.append(reverse_steps(result.raw[0], lengths) if reverse else result.raw[0])
                dropped_dirs.append(reverse_steps(result.dropped[0], lengths) if reverse else result.dropped[0])
                final.append(result.states[0])
            raw.append(torch.cat(raw_dirs, -1))
            dropped.append(torch.cat(dropped_dirs, -1))
            inp = dropped[-1]
        return raw, dropped, final

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}, {self.adapt_size}"
        defaults = {
            "output_size": self.hidden_size,
            "num_layers": 1,
            "dropout": 0.0,
            "adapt_dropout": 0.0,
            "batch_first": False,
            "bias": True,
            "bidirectional": False,
            "policy_layout": "paper",
            "impl": "fused",
        }
        for name, default in defaults.items():
            value = getattr(self, name)
            if value != default:
                text += f", {name}={value!r}"
        return text


def _pack_like(sequence: Tensor, lengths: Tensor, like: PackedSequence) -> PackedSequence:
    """Pack ``sequence: (T, B, F)`` (caller's batch order) with ``like``'s batch sizes and order."""
    if like.sorted_indices is not None:
        sequence = sequence.index_select(1, like.sorted_indices)
        lengths = lengths.index_select(0, like.sorted_indices.cpu())
    data = pack_padded_sequence(sequence, lengths, enforce_sorted=True).data
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


_SHARED_DOC = """

    Args:
        input_size: I, features of the input.
        hidden_size: H, units of every layer but the last.
        adapt_size: A, units of each layer's adaptation LSTM.
        output_size: O, units of the last layer (default ``hidden_size``). With one layer the
            stack maps I -> O.
        num_layers: L (alias ``nlayers``).
        dropout: unlike ``torch.nn.LSTM``, one variational mask per sequence on every layer's
            ``h``, the last layer's included, applied to what recurs and feeds the next layer;
            the returned output is the last layer's ``h`` before dropout. One probability, one per
            layer (a list), or ``None`` (off), as in the original (alias ``{alias}``).
        adapt_dropout: likewise on every layer's adaptation state ``a`` (alias ``dropout_adapt``).
        batch_first: input and output are ``(B, T, *)``; the state's layout does not change.
        bias: whether the cells have the adaptive bias.
        bidirectional: run a reverse direction with its own adaptation chain per layer; outputs
            are concatenated, so layers above the first read ``2*H`` features. The wrap-around of
            the hybrid adaptation is then cut (see ``_run_bidirectional``). The final state of the
            reverse direction is at step 0: ``output[-1]`` is not the bidirectional summary.
            :meth:`directions` gives each direction's modules.
        policy_layout: ``"paper"`` (contiguous sub-policies) or ``"reference"`` (the original
            implementation's overlapping slices, which produced the published numbers; see
            :mod:`alstm_lightning.layers.policy`).
        impl: the time loop, ``"fused"`` (fast, default) or ``"naive"`` (per-step reference); same result.

    Parameters (``_reverse`` is appended to the list names for the reverse direction):
        adapt_layers.{{l}}: ``nn.LSTMCell`` with ``weight_ih (4A, I_l + H_l [+ A])``,
            ``weight_hh (4A, A)``, ``bias_ih``, ``bias_hh (4A,)``; ``+A`` when L > 1.
        project_layers.{{l}}.linear.weight: ``(P_l, A)``, ``P_l`` the cell's ``projection_size``.
        {cells}.{{l}}: ``weight_ih (G*H_l, I_l)``, ``weight_hh (G*H_l, H_l)``, ``bias (G*H_l,)``.

    Shape:
        input: ``(T, B, I)``, ``(B, T, I)`` with ``batch_first``, or ``PackedSequence``;
        output: ``(T, B, D*O)`` likewise; state: see :class:`AdaptiveState`.
"""


class aLSTM(AdaptiveStack):
    __doc__ = (
        """Multi-layer adaptive LSTM (Flennerhag et al. 2018), a drop-in for the original ``aLSTM``.

    The original's keyword names ``nlayers``, ``dropout_alstm`` and ``dropout_adapt`` are accepted,
    as are its positional order and ``state_dict`` keys (G = 4 gate blocks, ``P_l = I_l + 13 H_l``
    with bias, ``I_l + 9 H_l`` without).

    Example:
        >>> model = aLSTM(8, 16, 4, num_layers=2, dropout=0.1)
        >>> output, state = model(torch.randn(7, 3, 8))
        >>> output.shape
        torch.Size([7, 3, 16])
    """
        + _SHARED_DOC.format(alias="dropout_alstm", cells="alstm_layers")
    )
    cell_class = aLSTMCell
    cell_layers_name = "alstm_layers"
    original_dropout_alias = "dropout_alstm"


class aRNN(AdaptiveStack):
    __doc__ = (
        """Multi-layer adaptive vanilla RNN: the aLSTM's adaptation model over a ``tanh`` RNN cell.

    G = 1 gate block, ``P_l = I_l + 4 H_l`` with bias, ``I_l + 3 H_l`` without (one more block of
    ``H_l`` rows, never read, with ``policy_layout="reference"``, so that the original aRNN's
    ``state_dict`` loads); the state's ``c`` field is empty.
    """
        + _SHARED_DOC.format(alias="dropout_arnn", cells="arnn_layers")
    )
    cell_class = aRNNCell
    cell_layers_name = "arnn_layers"
    original_dropout_alias = "dropout_arnn"
