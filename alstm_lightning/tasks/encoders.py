"""Build a recurrent encoder by name: our ``aLSTM`` or ``aRNN``, or the ``torch.nn.LSTM`` and AWD-LSTM baselines."""

from __future__ import annotations

from typing import Literal

from torch import nn

from ..layers import AWDLSTM, aLSTM, aRNN
from ..layers.checks import check_choice, check_probability
from ..layers.policy import PolicyLayout

EncoderName = Literal["alstm", "arnn", "lstm", "awd_lstm"]
ENCODERS: tuple[str, ...] = ("alstm", "arnn", "lstm", "awd_lstm")


def make_encoder(
    name: EncoderName,
    input_size: int,
    hidden_size: int,
    adapt_size: int,
    output_size: int | None = None,
    num_layers: int = 1,
    dropout: float = 0.0,
    adapt_dropout: float = 0.0,
    bidirectional: bool = False,
    policy_layout: PolicyLayout = "paper",
    weight_dropout: float = 0.0,
) -> nn.Module:
    """A time-major recurrent encoder, ``forward(x, hx=None) -> (output, state)``, chosen by name.

    ``"alstm"`` and ``"arnn"`` build :class:`~alstm_lightning.aLSTM` / :class:`~alstm_lightning.aRNN`
    with every argument as documented there. ``"lstm"`` builds ``torch.nn.LSTM`` as a baseline:

    * an ``output_size`` below ``hidden_size`` becomes ``proj_size`` (an LSTM with projection,
      Sak et al. 2014): *every* layer's ``h`` is projected to ``output_size``, so the layers above
      the first read, and every layer recurs, ``output_size`` features, unlike the aLSTM, whose
      hidden layers keep ``hidden_size`` and only the last outputs ``output_size``. Match
      parameter counts through ``hidden_size``;
    * ``dropout`` keeps torch's meaning (ordinary dropout between layers, none on the last layer
      and none on what recurs), not the aLSTM's variational dropout on every layer's ``h``;
    * ``adapt_size``, ``adapt_dropout`` and ``policy_layout`` do not apply and are ignored.

    ``"awd_lstm"`` builds AWD-LSTM's encoder (Merity et al. 2018), :class:`~alstm_lightning.layers.AWDLSTM`:
    L one-layer LSTMs, ``hidden_size`` units each but the last, which has ``output_size``, with
    ``weight_dropout`` on every ``W_hh`` and ``dropout`` as locked dropout between layers (AWD-LSTM's
    ``dropouth``); it is unidirectional, and the adaptive arguments are ignored as for ``"lstm"``.

    The state is an :class:`~alstm_lightning.AdaptiveState` for the adaptive encoders, torch's
    ``(h, c)`` pair, each ``(L*D, B, O)`` / ``(L*D, B, H)``, for ``"lstm"``, and a list of L
    ``(h_l, c_l)`` pairs, each ``(1, B, H_l)``, for ``"awd_lstm"``.

    Args:
        name: ``"alstm"``, ``"arnn"``, ``"lstm"`` or ``"awd_lstm"``.
        input_size: I, features of the input.
        hidden_size: H, units of every layer (but the last for the adaptive encoders).
        adapt_size: A, units of each layer's adaptation LSTM (adaptive encoders only).
        output_size: O, features each direction outputs (default ``hidden_size``).
        num_layers: L.
        dropout: the encoder's own hidden dropout (meaning per encoder as above).
        adapt_dropout: variational dropout on the adaptation states (adaptive encoders only).
        bidirectional: add a reverse direction; outputs are ``D*O`` wide.
        policy_layout: ``"paper"`` or ``"reference"`` (adaptive encoders only).
        weight_dropout: weight drop (DropConnect) on every ``W_hh`` (``"awd_lstm"`` only).

    Returns:
        The encoder, input ``(T, B, I)``, output ``(T, B, D*O)``.

    Raises:
        ValueError: for an unknown ``name``, ``output_size > hidden_size`` with ``"lstm"`` (torch's
            projection only narrows), ``bidirectional`` or a nonzero ``weight_dropout`` where the
            encoder has none; the encoders validate the other arguments.
    """
    check_choice("make_encoder", "name", name, ENCODERS)
    check_probability("make_encoder", "weight_dropout", weight_dropout)
    if weight_dropout != 0.0 and name != "awd_lstm":
        raise ValueError(
            f"make_encoder: weight_dropout must be 0 unless name='awd_lstm', got {weight_dropout} with name={name!r}"
        )
    output_size = hidden_size if output_size is None else output_size
    if name == "awd_lstm":
        if bidirectional:
            raise ValueError("make_encoder: bidirectional must be False for name='awd_lstm', got True")
        return AWDLSTM(
            input_size,
            hidden_size,
            output_size=output_size,
            num_layers=num_layers,
            dropout=dropout,
            weight_dropout=weight_dropout,
        )
    if name == "lstm":
        if output_size > hidden_size:
            raise ValueError(
                f"make_encoder: output_size must be at most hidden_size={hidden_size} for name='lstm' "
                f"(nn.LSTM's proj_size only narrows), got {output_size}"
            )
        return nn.LSTM(
            input_size,
            hidden_size,
            num_layers=num_layers,
            dropout=dropout,
            bidirectional=bidirectional,
            proj_size=0 if output_size == hidden_size else output_size,
        )
    stack = aLSTM if name == "alstm" else aRNN
    return stack(
        input_size,
        hidden_size,
        adapt_size,
        output_size=output_size,
        num_layers=num_layers,
        dropout=dropout,
        adapt_dropout=adapt_dropout,
        bidirectional=bidirectional,
        policy_layout=policy_layout,
    )
