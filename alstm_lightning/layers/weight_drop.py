r"""``WeightDropLSTM``: ``torch.nn.LSTM`` with DropConnect on its recurrent weights (AWD-LSTM).

Weight drop (Wan et al. 2013, DropConnect; Merity et al. 2017, Section 2) zeroes each entry of the
hidden-to-hidden matrices ``W_hh`` with probability ``p`` and scales the rest by ``1/(1-p)``, one
mask per matrix and forward call, shared by every step and sequence of the batch. The mask acts
on what recurs, so it regularises the recurrence without touching the fused kernel.

How it is done, and why so: the raw ``weight_hh_l{k}`` stay the registered parameters under their
``nn.LSTM`` names (the ``state_dict`` is ``nn.LSTM``'s; DDP sees and reduces them); nothing is
deleted or re-registered. For one training forward, the list of weights ``nn.LSTM`` hands to its
fused kernel (``_VF.lstm``: cuDNN, MKL-DNN or the native loop) holds the dropped copies in
place of the raw matrices, so gradients flow through the dropout into the raw parameters. A
``torch.nn.utils.parametrize`` parametrization also reaches the kernel in torch 2.x, but ``nn.LSTM``
then evaluates it four times per forward (torch 2.13: ``hasattr`` and ``getattr`` while checking
for changed weights, again while rebuilding its weight list), drawing four masks and rebuilding
the list on every call.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..checks import check_probability

# cuDNN copies weights that are not views of one flat buffer into one before each call and warns
# about it; the dropped matrices are fresh tensors every training step, so the copy is inherent.
_NOT_CONTIGUOUS_WARNING = "RNN module weights are not part of single contiguous chunk of memory"


class WeightDropLSTM(nn.LSTM):
    """``torch.nn.LSTM`` with weight drop (DropConnect) on every ``weight_hh_l{k}[_reverse]``.

    All arguments but ``weight_dropout`` mean what they mean for ``torch.nn.LSTM`` (its ``dropout``
    drops the outputs between layers); so do the parameters, the ``state_dict`` keys, the input,
    the output and the state. In training, each forward draws one Bernoulli mask per recurrent
    matrix and runs the fused kernel with ``W_hh ⊙ mask / (1 - weight_dropout)``; in evaluation
    the raw weights are used, so no rescaling is needed.

    Args:
        input_size: I.
        hidden_size: H.
        num_layers: L.
        bias: as in ``nn.LSTM``.
        batch_first: as in ``nn.LSTM``.
        dropout: as in ``nn.LSTM``: dropout on the outputs of every layer but the last.
        bidirectional: as in ``nn.LSTM``.
        proj_size: as in ``nn.LSTM``; the projection ``weight_hr_l{k}`` is not dropped.
        weight_dropout: probability, in ``[0, 1)``, of zeroing an entry of each ``W_hh``.

    Pitfalls:
        A mask is shared by the whole batch and every step of one forward call: truncated BPTT
        over a long stream draws a new mask per window, like the AWD-LSTM code. On CUDA, cuDNN
        copies the weights into one buffer on every training call (its "not part of single
        contiguous chunk of memory" warning is silenced here), the price of fresh dropped matrices.

    Example:
        >>> lstm = WeightDropLSTM(8, 16, num_layers=2, weight_dropout=0.5)
        >>> output, (h, c) = lstm(torch.randn(7, 3, 8))
        >>> output.shape
        torch.Size([7, 3, 16])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        weight_dropout: float = 0.0,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        check_probability("WeightDropLSTM", "weight_dropout", weight_dropout)
        super().__init__(
            input_size,
            hidden_size,
            num_layers=num_layers,
            bias=bias,
            batch_first=batch_first,
            dropout=dropout,
            bidirectional=bidirectional,
            proj_size=proj_size,
            device=device,
            dtype=dtype,
        )
        self.weight_dropout = float(weight_dropout)

    @property
    def dropped_weight_names(self) -> tuple[str, ...]:
        """The names of the parameters weight drop applies to: every ``weight_hh_l{k}[_reverse]``."""
        return tuple(name for name in self._flat_weights_names if name.startswith("weight_hh_l"))

    def forward(
        self, input: Tensor | PackedSequence, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor | PackedSequence, tuple[Tensor, Tensor]]:
        """Run ``nn.LSTM.forward`` with freshly dropped recurrent weights in training.

        Args:
            input: as for ``nn.LSTM``: ``(T, B, I)``, ``(B, T, I)`` with ``batch_first``, ``(T, I)``,
                or a ``PackedSequence``.
            hx: ``(h_0, c_0)`` or ``None``, as for ``nn.LSTM``.

        Returns:
            ``(output, (h_n, c_n))`` as ``nn.LSTM`` returns them.
        """
        if not self.training or self.weight_dropout == 0.0:
            return super().forward(input, hx)
        # Bring nn.LSTM's weight list up to date first, so that its own check inside forward finds
        # nothing changed and keeps the dropped list installed below.
        self._update_flat_weights()
        raw = self._flat_weights
        dropped = set(self.dropped_weight_names)
        self._flat_weights = [
            F.dropout(weight, self.weight_dropout, training=True) if name in dropped else weight
            for name, weight in zip(self._flat_weights_names, raw)
        ]
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_NOT_CONTIGUOUS_WARNING)
                return super().forward(input, hx)
        finally:
            self._flat_weights = raw

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if self.weight_dropout != 0.0:
            text += f", weight_dropout={self.weight_dropout}"
        return text
