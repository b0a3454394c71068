"""Build a recurrent encoder by name: our ``aLSTM`` or ``aRNN``, or the LSTM and AWD-LSTM baselines."""

from __future__ import annotations

from typing import Literal

import inspect
import warnings
from collections.abc import Callable, Mapping

from torch import nn

from ..checks import check_choice, check_probability
from ..layers import AWDLSTM, LSTMStack, aLSTM, aRNN
from ..layers.policy import PolicyLayout

EncoderName = Literal["alstm", "arnn", "lstm", "lstm_proj", "awd_lstm"]
ENCODERS: tuple[str, ...] = ("alstm", "arnn", "lstm", "lstm_proj", "awd_lstm")

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
    with every argument as documented there: layers 0..L-2 have ``hidden_size`` units, the last
    ``output_size``.

    ``"lstm"`` is the same-shape LSTM baseline: L plain LSTM layers with the aLSTM's widths,
    ``hidden_size`` units in layers 0..L-2 and ``output_size`` in the last. It is
    ``torch.nn.LSTM(num_layers=L)`` when ``output_size == hidden_size``, ``nn.LSTM(I, O)`` for one
    layer, and otherwise an :class:`LSTMStack` (an ``nn.LSTM`` of L-1 layers and a one-layer
    ``nn.LSTM`` of O units); all three stay on torch's fast LSTM path. Its ``dropout`` keeps
    ``nn.LSTM``'s meaning: ordinary dropout, redrawn per element and step, on the output of every
    layer but the last, none on what recurs and none on the output (the aLSTM's ``dropout`` is a
    variational mask per sequence on every layer's ``h``, recurrent connections included).
    ``adapt_size``, ``adapt_dropout`` and ``policy_layout`` do not apply and are ignored.

    ``"lstm_proj"`` is ``torch.nn.LSTM`` with ``proj_size = output_size`` when ``output_size <
    hidden_size`` (an LSTM with projection, Sak et al. 2014): *every* layer's ``h`` is projected to
    ``output_size``, so every layer above the first reads, and every layer recurs in, ``output_size``
    features, a different shape from the aLSTM's (and torch then leaves oneDNN for a slower path).
    Dropout and ignored arguments as for ``"lstm"``.

    ``"awd_lstm"`` builds AWD-LSTM's encoder (Merity et al. 2018), :class:`~alstm_lightning.layers.AWDLSTM`:
    L one-layer LSTMs, ``hidden_size`` units each but the last, which has ``output_size``, with
    ``weight_dropout`` on every ``W_hh`` and ``dropout`` as locked dropout between layers (AWD-LSTM's
    ``dropouth``); it is unidirectional, and the adaptive arguments are ignored as for ``"lstm"``.

    The state is an :class:`~alstm_lightning.AdaptiveState` for the adaptive encoders; torch's
    ``(h, c)`` pair, each ``(L*D, B, H)`` (``(L*D, B, O)`` for ``h`` of ``"lstm_proj"``), for an
    ``nn.LSTM``; and a list of L ``(h_l, c_l)`` pairs, each ``(D, B, H_l)``, for an
    :class:`LSTMStack` and for ``"awd_lstm"`` (D = 1).

    Args:
        name: ``"alstm"``, ``"arnn"``, ``"lstm"``, ``"lstm_proj"`` or ``"awd_lstm"``.
        input_size: I, features of the input.
        hidden_size: H, units of every layer but the last (all layers of ``"lstm_proj"``).
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
        ValueError: for an unknown ``name``, ``output_size > hidden_size`` with ``"lstm_proj"``
            (torch's projection only narrows), ``bidirectional`` or a nonzero ``weight_dropout``
            where the encoder has none; the encoders validate the other arguments.
    """
    check_choice("make_encoder", "name", name, ENCODERS)
    check_probability("make_encoder", "weight_dropout", weight_dropout)
    if weight_dropout != 0.0 and name != "awd_lstm":
        raise ValueError(
            f"make_encoder: weight_dropout must be 0 unless the encoder is 'awd_lstm', got {weight_dropout} "
            f"with encoder {name!r}"
        )
    output_size = hidden_size if output_size is None else output_size
    if name == "awd_lstm":
        if bidirectional:
            raise ValueError("make_encoder: bidirectional must be False for the encoder 'awd_lstm', got True")
        return AWDLSTM(
            input_size,
            hidden_size,
            output_size=output_size,
            num_layers=num_layers,
            dropout=dropout,
            weight_dropout=weight_dropout,
        )
    if name == "lstm":
        if output_size != hidden_size and num_layers > 1:
            return LSTMStack(
                input_size,
                hidden_size,
                output_size,
                num_layers=num_layers,
                dropout=dropout,
                bidirectional=bidirectional,
            )
        units = output_size if num_layers == 1 else hidden_size
        # between-layer dropout has nothing to drop in one layer (torch warns about it): 0 there
        between = dropout if num_layers > 1 else 0.0
        return nn.LSTM(input_size, units, num_layers=num_layers, dropout=between, bidirectional=bidirectional)
    if name == "lstm_proj":
        if output_size > hidden_size:
            raise ValueError(
                f"make_encoder: output_size must be at most hidden_size={hidden_size} for name='lstm_proj' "
                f"(nn.LSTM's proj_size only narrows), got {output_size}"
            )
        return nn.LSTM(
            input_size,
            hidden_size,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
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


#: The settings only the adaptive encoders read; the LSTM baselines ignore them.
ADAPTIVE_SETTINGS: tuple[str, ...] = ("adapt_size", "adapt_dropout", "policy_layout")
#: The encoders that have an adaptation model.
ADAPTIVE_ENCODERS: tuple[str, ...] = ("alstm", "arnn")


def warn_ignored_settings(owner: str, encoder: str, settings: Mapping[str, object], init: Callable) -> None:
    """Warn, naming them, about adaptive settings given to an encoder that ignores them.

    A setting counts as given when it differs from its default in ``init``'s signature (a task's
    ``__init__``), so a task's defaults never warn.

    Args:
        owner: the class name the message starts with.
        encoder: the chosen encoder's name.
        settings: the values of (some of) :data:`ADAPTIVE_SETTINGS`.
        init: the function whose defaults say which values were given.
    """
    if encoder in ADAPTIVE_ENCODERS:
        return
    defaults = inspect.signature(init).parameters
    given = {
        name: value
        for name, value in settings.items()
        if name in ADAPTIVE_SETTINGS and name in defaults and value != defaults[name].default
    }
    if given:
        warnings.warn(
            f"{owner}: encoder={encoder!r} has no adaptation model and ignores {given}; they apply to "
            f"{ADAPTIVE_ENCODERS} only",
            stacklevel=3,
        )
