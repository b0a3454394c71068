"""Pure-torch recurrent layers: adaptive cells and stacks, policy, state, dropout, and the AWD-LSTM baseline."""

from .awd_lstm import AWDLSTM
from .cell import aLSTMCell, alstm_cell, aRNNCell, arnn_cell
from .init import chrono_init_
from .inspect import trace_policies
from .dropout import LockedDropout, embedding_dropout, variational_mask
from .policy import POLICY_LAYOUTS, Project, policy_size, policy_slices, unused_policy_fraction
from .stack import StackOutputs, aLSTM, aRNN
from .state import AdaptiveState
from .weight_drop import WeightDropLSTM

__all__ = [
    "AWDLSTM",
    "POLICY_LAYOUTS",
    "AdaptiveState",
    "LockedDropout",
    "Project",
    "StackOutputs",
    "WeightDropLSTM",
    "aLSTM",
    "aLSTMCell",
    "aRNN",
    "aRNNCell",
    "alstm_cell",
    "arnn_cell",
    "chrono_init_",
    "embedding_dropout",
    "policy_size",
    "policy_slices",
    "trace_policies",
    "unused_policy_fraction",
    "variational_mask",
]
