"""DataModules: language-modeling corpora (vocabulary, streams, checksummed downloads) and
sequence-classification data (synthetic long-range tasks, sequential digits, text files)."""

from .char_corpora import CharCorpusDataModule, CharLevelDataModule, TinyShakespeareDataModule
from .digits import DigitsDataModule
from .download import Resource, download, extract_members, file_digest
from .language_modeling import LanguageModelingDataModule, TokenizedCorpus
from .stdlib_corpus import PythonStdlibDataModule, stdlib_sources
from .streams import ResumableWindowLoader, StreamWindows, batchify, bptt_schedule, shard_streams
from .synthetic import AddingDataModule, CopyMemoryDataModule, SyntheticDataModule, TemporalOrderDataModule
from .text_classification import TextClassificationDataModule
from .vocab import UnknownTokenError, Vocabulary
from .word_corpora import (
    PennTreebankDataModule,
    WikiText2DataModule,
    WikiText103DataModule,
    WordCorpusDataModule,
    read_words,
)

__all__ = [
    "AddingDataModule",
    "CopyMemoryDataModule",
    "DigitsDataModule",
    "SyntheticDataModule",
    "TemporalOrderDataModule",
    "TextClassificationDataModule",
    "CharCorpusDataModule",
    "CharLevelDataModule",
    "LanguageModelingDataModule",
    "PennTreebankDataModule",
    "PythonStdlibDataModule",
    "Resource",
    "ResumableWindowLoader",
    "StreamWindows",
    "TinyShakespeareDataModule",
    "TokenizedCorpus",
    "UnknownTokenError",
    "Vocabulary",
    "WikiText103DataModule",
    "WikiText2DataModule",
    "WordCorpusDataModule",
    "batchify",
    "bptt_schedule",
    "download",
    "extract_members",
    "file_digest",
    "read_words",
    "shard_streams",
    "stdlib_sources",
]
