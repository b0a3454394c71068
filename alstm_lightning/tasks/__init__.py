"""Lightning tasks: one LightningModule per problem, made to be subclassed."""

from .dynamic_evaluation import DynamicEvaluation
from .encoders import ENCODERS, make_encoder
from .language_modeling import LanguageModelingTask, LanguageModelOutput
from .neural_cache import NeuralCache
from .sequence_classification import SequenceClassificationTask
from .sizing import SizingResult, count_parameters, solve_hidden_size

__all__ = [
    "ENCODERS",
    "DynamicEvaluation",
    "LanguageModelOutput",
    "LanguageModelingTask",
    "NeuralCache",
    "SequenceClassificationTask",
    "SizingResult",
    "count_parameters",
    "make_encoder",
    "solve_hidden_size",
]
