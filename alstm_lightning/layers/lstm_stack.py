"""``LSTMStack``: plain ``nn.LSTM`` layers shaped as the aLSTM, the same-shape baseline of a tied language model."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..checks import check_bool, check_positive_int, check_probability, check_sequence_input

#: the state of an :class:`LSTMStack`: one ``(h_l, c_l)`` pair per layer, each ``(D, B, H_l)``
LSTMStackState = list[tuple[Tensor, Tensor]]


class LSTMStack(nn.Module):
    r"""L ``nn.LSTM`` layers shaped as the aLSTM: H units in layers 0..L-2, O units in the last.

    The same-shape LSTM baseline of an :class:`~alstm_lightning.aLSTM` whose last layer outputs
    ``output_size`` (e.g. the embedding size for a tied decoder): the hidden layers read and recur
    in ``hidden_size`` features, only the last layer is narrower. It is two ``nn.LSTM``\ s, so both
    keep torch's fast (oneDNN / cuDNN) path, unlike an ``nn.LSTM`` with ``proj_size``:

        y, _ = hidden_layers(x)              # nn.LSTM(I, H, num_layers=L-1): layers 0..L-2
        output, _ = output_layer(drop(y))    # nn.LSTM(D*H, O): layer L-1

    ``dropout`` keeps ``nn.LSTM(num_layers=L, dropout=p)``'s meaning: ordinary dropout, redrawn
    per element and step, on the output of every layer but the last; nothing on what recurs and
    nothing on the output. For ``output_size == hidden_size`` use ``nn.LSTM(num_layers=L)`` itself,
    which :func:`~alstm_lightning.tasks.encoders.make_encoder` does.

    Args:
        input_size: I, features of the input.
        hidden_size: H, units of every layer but the last.
        output_size: O, units of the last layer.
        num_layers: L, at least 2 (one layer of O units is ``nn.LSTM(I, O)``).
        dropout: ``nn.LSTM``'s between-layer dropout, as above.
        bidirectional: as in ``nn.LSTM``; outputs are ``D*O`` wide.

    Shape:
        input: ``(T, B, I)`` or a ``PackedSequence`` of ``I`` features.
        hx: ``None`` (zeros) or L pairs ``(h_l, c_l)``, each ``(D, B, H_l)``, ``H_l = H`` for
            ``l < L-1`` and ``O`` for the last layer.
        output: ``(T, B, D*O)``, or a ``PackedSequence`` for packed input.
        state: a list of L pairs ``(h_l, c_l)`` as ``hx``, the final step's (for packed input, each
            sequence's own last step, in the caller's batch order, as ``nn.LSTM`` returns it).

    Attributes:
        hidden_layers: ``nn.LSTM(I, H, num_layers=L-1, bidirectional=...)``; parameters
            ``hidden_layers.weight_ih_l{l}`` ``(4H, I or D*H)``, ``hidden_layers.weight_hh_l{l}``
            ``(4H, H)``, ``hidden_layers.bias_ih_l{l}`` and ``bias_hh_l{l}`` ``(4H,)``, for
            ``l = 0..L-2`` (``_reverse`` suffix for the reverse direction).
        output_layer: ``nn.LSTM(D*H, O, bidirectional=...)``; parameters ``output_layer.weight_ih_l0``
            ``(4O, D*H)``, ``output_layer.weight_hh_l0`` ``(4O, O)`` and the two biases ``(4O,)``.

    Example:
        >>> encoder = LSTMStack(8, 16, 4, num_layers=3)
        >>> output, state = encoder(torch.randn(7, 3, 8))
        >>> output.shape, [h.shape[-1] for h, c in state]
        (torch.Size([7, 3, 4]), [16, 16, 4])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        num_layers: int = 2,
        dropout: float = 0.0,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        for name, value in [
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("output_size", output_size),
            ("num_layers", num_layers),
        ]:
            check_positive_int("LSTMStack", name, value)
        if num_layers < 2:
            raise ValueError(f"LSTMStack: num_layers must be at least 2, got {num_layers} (one layer is nn.LSTM)")
        check_probability("LSTMStack", "dropout", dropout)
        check_bool("LSTMStack", "bidirectional", bidirectional)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = output_size
        self.num_layers = num_layers
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        D = 2 if bidirectional else 1
        # nn.LSTM warns about dropout with one layer; the layer_dropout below drops its output instead
        inner_dropout = self.dropout if num_layers > 2 else 0.0
        self.hidden_layers = nn.LSTM(
            input_size, hidden_size, num_layers=num_layers - 1, dropout=inner_dropout, bidirectional=bidirectional
        )
        self.layer_dropout = nn.Dropout(self.dropout)
        self.output_layer = nn.LSTM(D * hidden_size, output_size, bidirectional=bidirectional)

    @property
    def num_directions(self) -> int:
        """D: 2 when bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """``(H_0, ..., H_{L-1})``: units of each layer, ``hidden_size`` but ``output_size`` for the last."""
        return (self.hidden_size,) * (self.num_layers - 1) + (self.output_size,)

    def forward(
        self, input: Tensor | PackedSequence, hx: LSTMStackState | None = None
    ) -> tuple[Tensor | PackedSequence, LSTMStackState]:
        """Run the L layers over ``input``, continuing from ``hx``.

        Args:
            input: ``(T, B, I)`` or a ``PackedSequence``.
            hx: the state to start from, as the returned ``state``; zeros when ``None``.

        Returns:
            ``(output, state)`` as in the class's Shape section.

        Raises:
            TypeError: for an ``input`` or ``hx`` of the wrong kind.
            ValueError: for an ``input`` or ``hx`` of the wrong shape.
        """
        check_sequence_input("LSTMStack", input, self.input_size, batch_first=False)
        lower_hx = top_hx = None
        if hx is not None:
            self._check_state(hx, input)
            lower_hx = (torch.cat([h for h, _ in hx[:-1]]), torch.cat([c for _, c in hx[:-1]]))  # ((L-1)*D, B, H)
            top_hx = tuple(hx[-1])
        y, (h, c) = self.hidden_layers(input, lower_hx)
        if isinstance(y, PackedSequence):
            y = y._replace(data=self.layer_dropout(y.data))
        else:
            y = self.layer_dropout(y)  # (T, B, D*H)
        output, top = self.output_layer(y, top_hx)
        D = self.num_directions
        state = [(h[l * D : (l + 1) * D], c[l * D : (l + 1) * D]) for l in range(self.num_layers - 1)]
        state.append(top)
        return output, state

    def _check_state(self, hx: object, input: Tensor | PackedSequence) -> None:
        if not isinstance(hx, (list, tuple)):
            raise TypeError(f"LSTMStack: hx must be a list of (h, c) pairs, one per layer, got {type(hx).__name__}")
        if len(hx) != self.num_layers:
            raise ValueError(f"LSTMStack: hx must hold num_layers={self.num_layers} (h, c) pairs, got {len(hx)}")
        batch_size = int(input.batch_sizes[0]) if isinstance(input, PackedSequence) else input.size(1)
        for l, (pair, size) in enumerate(zip(hx, self.layer_sizes)):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(t, Tensor) for t in pair):
                raise TypeError(f"LSTMStack: hx[{l}] must be a pair of tensors (h, c), got {type(pair).__name__}")
            expected = (self.num_directions, batch_size, size)
            for name, tensor in zip("hc", pair):
                if tuple(tensor.shape) != expected:
                    raise ValueError(
                        f"LSTMStack: hx[{l}].{name} shape must be {expected} (batch size {batch_size} from the "
                        f"input), got {tuple(tensor.shape)}"
                    )

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}, {self.output_size}, num_layers={self.num_layers}"
        if self.dropout != 0.0:
            text += f", dropout={self.dropout}"
        if self.bidirectional:
            text += ", bidirectional=True"
        return text
