"""Lightning callbacks: NT-ASGD weight averaging, adaptation-policy monitoring, text samples, checkpoints and
preemption, prediction files."""

from .checkpointing import AtomicCheckpointIO, Preempted, Preemption, RunCheckpoint
from .nt_asgd import NTASGD, nonmonotone_trigger
from .policy_insight import PolicyMonitor, default_encoder_input
from .predictions import PredictionWriter
from .text_sample import TextSample

__all__ = [
    "NTASGD",
    "AtomicCheckpointIO",
    "PolicyMonitor",
    "Preempted",
    "Preemption",
    "PredictionWriter",
    "RunCheckpoint",
    "TextSample",
    "default_encoder_input",
    "nonmonotone_trigger",
]
