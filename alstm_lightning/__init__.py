"""alstm-lightning: the adaptive LSTM (Flennerhag et al. 2018) as PyTorch layers and Lightning tasks."""

from .layers import (
    POLICY_LAYOUTS,
    AdaptiveState,
    LockedDropout,
    Project,
    StackOutputs,
    aLSTM,
    aLSTMCell,
    aRNN,
    aRNNCell,
    alstm_cell,
    arnn_cell,
    embedding_dropout,
    policy_size,
    policy_slices,
    unused_policy_fraction,
    variational_mask,
)

__version__ = "0.1.0"

__all__ = [
    "POLICY_LAYOUTS",
    "AdaptiveState",
    "LockedDropout",
    "Project",
    "StackOutputs",
    "aLSTM",
    "aLSTMCell",
    "aRNN",
    "aRNNCell",
    "alstm_cell",
    "arnn_cell",
    "embedding_dropout",
    "policy_size",
    "policy_slices",
    "unused_policy_fraction",
    "variational_mask",
]
