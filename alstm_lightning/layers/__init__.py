"""Pure-torch recurrent layers: adaptive cells and stacks, policy, state, dropout, and the AWD-LSTM baseline."""

from .awd_lstm import AWDLSTM
from .cell import AdaptiveCell, aLSTMCell, alstm_cell, aRNNCell, arnn_cell
from .dropout import LockedDropout, embedding_dropout, variational_mask
from .initialization import chrono_init_
from .lstm_stack import LSTMStack
from .policy import POLICY_LAYOUTS, Project, policy_size, policy_slices, projection_size, unused_policy_fraction
from .policy_trace import trace_policies
from .stack import AdaptiveStack, StackDirection, StackOutputs, aLSTM, aRNN
from .state import AdaptiveState
from .weight_drop import WeightDropLSTM

__all__ = [
    "AWDLSTM",
    "POLICY_LAYOUTS",
    "AdaptiveCell",
    "AdaptiveStack",
    "AdaptiveState",
    "LSTMStack",
    "LockedDropout",
    "Project",
    "StackDirection",
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
    "projection_size",
    "trace_policies",
    "unused_policy_fraction",
    "variational_mask",
]
