"""The recurrent state of an adaptive stack and its one-line helpers (detach, move, reset rows)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class AdaptiveState(NamedTuple):
    """State of an :class:`~alstm_lightning.aLSTM` or :class:`~alstm_lightning.aRNN` stack.

    Each field is a tuple with one tensor per layer and direction, ordered layer by layer with the
    reverse direction right after the forward one: index ``k = l * D + d``.

    Fields:
        h: main hidden states, ``h[k]: (B, H_l)`` with ``H_l = H`` except the last layer's ``O``.
        c: main cell states, same shapes as ``h``; an empty tuple for the aRNN, which has none.
        a: adaptation-model hidden states, ``a[k]: (B, A)``.
        a_c: adaptation-model cell states, ``a_c[k]: (B, A)``.

    In training mode with dropout, ``h`` and ``a`` hold the *dropped* values, since those are what
    recur (as in the original implementation); in eval mode there is no difference.

    Example:
        >>> output, state = model(x)
        >>> state = state.detach()                    # truncated BPTT
        >>> state = state.reset(done)                  # zero the rows of finished sequences
        >>> state = state.to("cuda")
    """

    h: tuple[Tensor, ...]
    c: tuple[Tensor, ...]
    a: tuple[Tensor, ...]
    a_c: tuple[Tensor, ...]

    def map(self, fn) -> AdaptiveState:
        """Apply ``fn`` to every tensor and return the new state."""
        return AdaptiveState(*(tuple(fn(t) for t in field) for field in self))

    def detach(self) -> AdaptiveState:
        """The same values, cut from the autograd graph (for truncated back-propagation)."""
        return self.map(Tensor.detach)

    def to(self, *args, **kwargs) -> AdaptiveState:
        """Move or cast every tensor, with the arguments of :meth:`torch.Tensor.to`."""
        return self.map(lambda t: t.to(*args, **kwargs))

    def reset(self, rows: Tensor) -> AdaptiveState:
        """Zero the state of the selected batch rows, keeping the others.

        Args:
            rows: a ``(B,)`` bool mask or a 1-d tensor of row indices in ``[0, B)``.

        Raises:
            TypeError, ValueError: for a mask of another length or indices out of range.
        """
        owner, batch_size = "AdaptiveState.reset", self.batch_size
        if not isinstance(rows, Tensor) or rows.is_floating_point() or rows.dim() != 1:
            raise TypeError(f"{owner}: rows must be a 1-d bool mask or integer index tensor, got {_describe(rows)}")
        if rows.dtype == torch.bool:
            if rows.numel() != batch_size:
                raise ValueError(f"{owner}: rows, a bool mask, must have batch_size={batch_size} entries, got {rows.numel()}")
        else:
            if rows.numel() and not (0 <= int(rows.min()) and int(rows.max()) < batch_size):
                raise ValueError(
                    f"{owner}: rows must be indices in [0, batch_size={batch_size}), got range "
                    f"[{int(rows.min())}, {int(rows.max())}]"
                )
            rows = torch.zeros(batch_size, dtype=torch.bool, device=rows.device).index_fill_(0, rows, True)
        rows = rows.unsqueeze(-1)
        return self.map(lambda t: t.masked_fill(rows.to(t.device), 0.0))

    def index_select(self, index: Tensor) -> AdaptiveState:
        """Reorder or select batch rows, ``index: (B',)``."""
        return self.map(lambda t: t.index_select(0, index.to(t.device)))

    @property
    def batch_size(self) -> int:
        """B, the number of rows."""
        return self.h[0].size(0)

    @classmethod
    def from_original(cls, hidden: object) -> AdaptiveState:
        """The state of the original implementation's format, ``([(a, a_c)] * L, [(h, c)] * L)``.

        Any nesting of lists and tuples is accepted (the original's ``repackage_hidden`` returns
        lists). For an aRNN the original carries a ``c`` it never updates; it is dropped here.

        Raises:
            TypeError: for anything else, saying what was expected.
        """
        def pairs(layers: object) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
            if not isinstance(layers, (tuple, list)) or not layers or not all(
                isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(t, Tensor) for t in pair)
                for pair in layers
            ):
                raise ValueError("not a list of (tensor, tensor) pairs")
            first, second = zip(*layers)
            return first, second

        try:
            adapt, cells = hidden
            (a, a_c), (h, c) = pairs(adapt), pairs(cells)
        except (TypeError, ValueError):
            raise TypeError(
                "AdaptiveState.from_original: hidden must be the original format ([(a, a_c)] * L, [(h, c)] * L), "
                f"got {_describe(hidden)}"
            ) from None
        return cls(tuple(h), tuple(c), tuple(a), tuple(a_c))

    def to_original(self) -> tuple[list[tuple[Tensor, Tensor]], list[tuple[Tensor, Tensor]]]:
        """This state in the original implementation's format, ``([(a, a_c)] * L, [(h, c)] * L)``.

        An aRNN's state, which has no ``c``, gets zeros there, as the original's never-updated one.
        """
        c = self.c if self.c else tuple(torch.zeros_like(h) for h in self.h)
        return list(zip(self.a, self.a_c)), list(zip(self.h, c))


def zero_state(
    batch_size: int,
    hidden_sizes: list[int],
    adapt_size: int,
    num_directions: int,
    has_cell_state: bool,
    like: Tensor,
) -> AdaptiveState:
    """An all-zero state on ``like``'s device and dtype; ``hidden_sizes[l]`` is layer l's width."""
    h = tuple(like.new_zeros(batch_size, size) for size in hidden_sizes for _ in range(num_directions))
    a = tuple(like.new_zeros(batch_size, adapt_size) for _ in range(len(h)))
    c = tuple(torch.zeros_like(t) for t in h) if has_cell_state else ()
    return AdaptiveState(h, c, a, tuple(torch.zeros_like(t) for t in a))


def _describe(value: object) -> str:
    """A short description of ``value`` for error messages: a tensor's dtype and shape, else the type's name."""
    if isinstance(value, Tensor):
        return f"Tensor(dtype={value.dtype}, shape={tuple(value.shape)})"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__} of {len(value)}"
    return type(value).__name__
