"""DataModules: language-modeling corpora (vocabulary, streams, checksummed downloads) and
sequence-classification data (synthetic long-range tasks, sequential digits, text files)."""

from .batching import BucketBatchSampler, EncodedTexts, TextBatch, pad_collate, pad_texts
from .char_corpora import CharCorpusDataModule, CharLevelDataModule, TinyShakespeareDataModule
from .digits import DigitsDataModule
from .download import DownloadError, Resource, download, extract_members, file_digest
from .language_modeling import LanguageModelingDataModule, PromptRequest, ScoreWindow, TokenizedCorpus
from .loading import IGNORE_INDEX, SPLITS, EpochRandomSampler, derived_seed, seeded_generator, split_loader
from .stdlib_corpus import PythonStdlibDataModule, stdlib_sources
from .streams import ResumableWindowLoader, StreamWindows, batchify, bptt_schedule, shard_streams
from .synthetic import AddingDataModule, CopyMemoryDataModule, SyntheticDataModule, TemporalOrderDataModule
from .text_classification import TextClassificationDataModule
from .text_files import Example, read_examples
from .tokenizers import TextEncoder, build_tokenizer
from .vocab import UnknownTokenError, Vocabulary
from .word_corpora import (
    PennTreebankDataModule,
    WikiText2DataModule,
    WikiText103DataModule,
    WordCorpusDataModule,
    read_words,
)

__all__ = [
    "IGNORE_INDEX",
    "SPLITS",
    "AddingDataModule",
    "BucketBatchSampler",
    "CharCorpusDataModule",
    "CharLevelDataModule",
    "CopyMemoryDataModule",
    "DigitsDataModule",
    "DownloadError",
    "EncodedTexts",
    "EpochRandomSampler",
    "Example",
    "LanguageModelingDataModule",
    "PennTreebankDataModule",
    "PromptRequest",
    "PythonStdlibDataModule",
    "Resource",
    "ResumableWindowLoader",
    "ScoreWindow",
    "StreamWindows",
    "SyntheticDataModule",
    "TemporalOrderDataModule",
    "TextBatch",
    "TextClassificationDataModule",
    "TextEncoder",
    "TinyShakespeareDataModule",
    "TokenizedCorpus",
    "UnknownTokenError",
    "Vocabulary",
    "WikiText103DataModule",
    "WikiText2DataModule",
    "WordCorpusDataModule",
    "batchify",
    "bptt_schedule",
    "build_tokenizer",
    "derived_seed",
    "download",
    "extract_members",
    "file_digest",
    "pad_collate",
    "pad_texts",
    "read_examples",
    "read_words",
    "seeded_generator",
    "shard_streams",
    "split_loader",
    "stdlib_sources",
]
