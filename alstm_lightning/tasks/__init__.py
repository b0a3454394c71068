"""Lightning tasks: one LightningModule per problem, made to be subclassed."""

from .encoders import ENCODERS, make_encoder
from .language_modeling import LanguageModelingTask, LanguageModelOutput
from .sequence_classification import SequenceClassificationTask

__all__ = ["ENCODERS", "LanguageModelOutput", "LanguageModelingTask", "SequenceClassificationTask", "make_encoder"]
