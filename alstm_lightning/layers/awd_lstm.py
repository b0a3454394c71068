r"""``AWDLSTM``: AWD-LSTM's encoder (Merity et al. 2018), a stack of single-layer weight-dropped LSTMs."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..checks import check_bool, check_positive_int, check_probability, check_sequence_input
from .dropout import LockedDropout
from .weight_drop import WeightDropLSTM

#: the state of an :class:`AWDLSTM`: one ``(h, c)`` pair per layer, each ``(1, B, H_l)``
AWDState = list[tuple[Tensor, Tensor]]


class AWDLSTM(nn.Module):
    r"""AWD-LSTM's recurrent stack: L one-layer :class:`WeightDropLSTM`\ s with locked dropout between them.

    The encoder of "Regularizing and Optimizing LSTM Language Models" (Merity et al., ICLR 2018,
    Sections 2 and 4; the salesforce/awd-lstm-lm ``RNNModel``). Layer ``l`` reads layer ``l-1``'s
    output, dropped by one mask per sequence:

        y_0 = x
        y_l, (h_l, c_l) = LSTM_l(d_{l-1}, (h_l, c_l))    W_hh of LSTM_l dropped with p = weight_dropout
        d_l = locked_dropout(y_l, p = dropout)            for l < L; d_0 = x

    and the output is ``y_L``, undropped (a language model drops it with its own output dropout).
    Every layer has ``hidden_size`` units but the last, which has ``output_size`` (the embedding
    size when the decoder is tied to the embedding).

    Unlike ``nn.LSTM(num_layers=L)``, the layers are separate modules because their sizes differ
    and because AWD-LSTM drops between them with a locked mask, not torch's per-step dropout.
    Parameters keep ``nn.LSTM``'s initialisation, uniform in ``±1/sqrt(H_l)``, as in AWD-LSTM.

    Args:
        input_size: I, features of the input.
        hidden_size: H, units of every layer but the last.
        output_size: O, units of the last layer (default ``hidden_size``).
        num_layers: L.
        dropout: locked (variational) dropout on the output of every layer but the last, one mask
            per sequence (AWD-LSTM's ``dropouth``); unlike ``nn.LSTM``'s, it is not redrawn per step.
        weight_dropout: weight drop (DropConnect) on every layer's ``W_hh``, one mask per matrix and
            forward call (AWD-LSTM's ``wdrop``).
        bias: as in ``nn.LSTM``.
        device: as in ``nn.LSTM``.
        dtype: as in ``nn.LSTM``.

    Shape:
        input: ``(T, B, I)``.
        hx: ``None`` (zeros) or L pairs ``(h_l, c_l)``, each ``(1, B, H_l)`` with ``H_l = hidden_size``
            for ``l < L`` and ``O`` for the last layer.
        output: ``(T, B, O)``.
        state: a list of L pairs ``(h_l, c_l)`` as ``hx``, the final step's.

    Attributes:
        layers: the L :class:`WeightDropLSTM`\ s; parameters ``layers.{l}.weight_ih_l0`` ``(4 H_l, H_{l-1})``,
            ``layers.{l}.weight_hh_l0`` ``(4 H_l, H_l)`` and the two biases ``(4 H_l,)``, with ``H_0 = I``.

    Pitfalls:
        The weight-drop mask is drawn per forward call, so truncated BPTT draws one per window, as
        AWD-LSTM does. Input must be time-major and a tensor (no ``batch_first``, no ``PackedSequence``).

    Example:
        >>> encoder = AWDLSTM(8, 16, output_size=8, num_layers=3, dropout=0.25, weight_dropout=0.5)
        >>> output, state = encoder(torch.randn(7, 3, 8))
        >>> output.shape, [h.shape[-1] for h, c in state]
        (torch.Size([7, 3, 8]), [16, 16, 8])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int | None = None,
        num_layers: int = 1,
        dropout: float = 0.0,
        weight_dropout: float = 0.0,
        bias: bool = True,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        output_size = hidden_size if output_size is None else output_size
        for name, value in [
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("output_size", output_size),
            ("num_layers", num_layers),
        ]:
            check_positive_int("AWDLSTM", name, value)
        check_probability("AWDLSTM", "dropout", dropout)
        check_probability("AWDLSTM", "weight_dropout", weight_dropout)
        check_bool("AWDLSTM", "bias", bias)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = output_size
        self.num_layers = num_layers
        self.dropout = float(dropout)
        self.weight_dropout = float(weight_dropout)
        self.bias = bias
        sizes = [input_size] + [hidden_size] * (num_layers - 1) + [output_size]
        self.layers = nn.ModuleList(
            WeightDropLSTM(sizes[l], sizes[l + 1], bias=bias, weight_dropout=weight_dropout, device=device, dtype=dtype)
            for l in range(num_layers)
        )
        self.hidden_dropout = LockedDropout(dropout)

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """``(H_1, ..., H_L)``: units of each layer, ``hidden_size`` but ``output_size`` for the last."""
        return tuple(layer.hidden_size for layer in self.layers)

    def forward(self, input: Tensor, hx: AWDState | None = None) -> tuple[Tensor, AWDState]:
        """Run the stack over ``input``, continuing from ``hx``.

        Args:
            input: ``(T, B, I)``.
            hx: the state to start from, as the returned ``state``; zeros when ``None``.

        Returns:
            ``(output, state)``: ``output: (T, B, O)``, the last layer's before any dropout, and the
            list of L final ``(h_l, c_l)`` pairs.

        Raises:
            TypeError: for a non-tensor or non-float ``input``, or an ``hx`` of the wrong kind.
            ValueError: for an ``input`` or ``hx`` of the wrong shape.
        """
        if isinstance(input, PackedSequence):
            raise TypeError("AWDLSTM: input must be a (T, B, I) tensor, got a PackedSequence")
        check_sequence_input("AWDLSTM", input, self.input_size, batch_first=False)
        if hx is not None:
            self._check_state(hx, input)
        state: AWDState = []
        y = input
        for l, layer in enumerate(self.layers):
            if l > 0:
                y = self.hidden_dropout(y)  # (T, B, H)
            y, (h, c) = layer(y, None if hx is None else tuple(hx[l]))
            state.append((h, c))
        return y, state

    def _check_state(self, hx: object, input: Tensor) -> None:
        if not isinstance(hx, (list, tuple)):
            raise TypeError(f"AWDLSTM: hx must be a list of (h, c) pairs, one per layer, got {type(hx).__name__}")
        if len(hx) != self.num_layers:
            raise ValueError(f"AWDLSTM: hx must hold num_layers={self.num_layers} (h, c) pairs, got {len(hx)}")
        batch_size = input.size(1)
        for l, (pair, size) in enumerate(zip(hx, self.layer_sizes)):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(t, Tensor) for t in pair):
                raise TypeError(f"AWDLSTM: hx[{l}] must be a pair of tensors (h, c), got {type(pair).__name__}")
            for name, tensor in zip("hc", pair):
                if tuple(tensor.shape) != (1, batch_size, size):
                    raise ValueError(
                        f"AWDLSTM: hx[{l}].{name} shape must be {(1, batch_size, size)} (batch size {batch_size} "
                        f"from the input), got {tuple(tensor.shape)}"
                    )

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.output_size != self.hidden_size:
            text += f", output_size={self.output_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if self.dropout != 0.0:
            text += f", dropout={self.dropout}"
        if self.weight_dropout != 0.0:
            text += f", weight_dropout={self.weight_dropout}"
        if not self.bias:
            text += ", bias=False"
        return text
