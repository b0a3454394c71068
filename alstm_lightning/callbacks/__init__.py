"""Lightning callbacks: NT-ASGD weight averaging, adaptation-policy monitoring, text samples."""

from .nt_asgd import NTASGD, nonmonotone_trigger
from .policy_insight import PolicyMonitor, default_encoder_input
from .text_sample import TextSample

__all__ = ["NTASGD", "PolicyMonitor", "TextSample", "default_encoder_input", "nonmonotone_trigger"]
