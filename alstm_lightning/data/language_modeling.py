"""The shared base of the language-modeling DataModules: lazy vocabulary, disk cache, stream loaders."""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import NamedTuple

import torch
from lightning import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader

from ..checks import check_bool, check_int, check_path, check_positive_int, check_sampling
from .loading import SPLITS, trainer_batches_done
from .streams import ResumableWindowLoader, StreamWindows, batchify, bptt_schedule, shard_streams
from .vocab import UnknownTokenError, Vocabulary

log = logging.getLogger(__name__)

#: Bumped when the tokenisation changes, so stale caches are never read.
CACHE_VERSION = 1


class TokenizedCorpus(NamedTuple):
    """A corpus as ids: its vocabulary and one ``(N_split,)`` long tensor per split."""

    vocab: Vocabulary
    train: Tensor
    val: Tensor
    test: Tensor


class LanguageModelingDataModule(LightningDataModule):
    """Base of the language-modeling DataModules: token streams cut into BPTT windows.

    A subclass says where its text is (:meth:`source_files`), how to fetch it
    (:meth:`prepare_data`, for downloads) and how to turn it into ids (:meth:`tokenize`); this base
    caches the ids, lays them out as streams and serves the windows.

    **Layout.** Each split is cut into B contiguous streams (:func:`~.streams.batchify`, B =
    ``batch_size``, ``eval_batch_size`` or ``test_batch_size``). Under DDP with W processes, rank r
    takes streams ``[r * B / W, (r + 1) * B / W)`` (rounded down, :func:`~.streams.shard_streams`),
    and the ranks together see what one process with the same global B sees. Training needs B
    divisible by W (DDP averages the ranks' gradients with equal weights); evaluation only needs
    B >= W (its metrics are total NLL over total tokens: the paper's 10 validation streams run on 4
    processes as 3, 3, 2 and 2). Batches are ``(input, target)``, both ``(T, B_r)`` long, ``target``
    one step ahead; each
    window continues the previous one, so a model carries its state across windows.

    **Windows.** Validation and test use fixed ``bptt`` windows over the whole split. Training uses
    the variable BPTT of the paper (Sec. 5.1, after Merity et al. 2018): mostly ``bptt``, sometimes
    ``bptt / 2``, never under 5, drawn from ``(seed, epoch)`` so every rank takes the same number of
    steps. Lightning reads a loader's length once, so to get a fresh schedule (and its exact
    length) every epoch, run the Trainer with ``reload_dataloaders_every_n_epochs=1``; otherwise
    every epoch reuses the schedule of the epoch the loader was last reloaded at (epoch 0 without
    reloading; a warning says so), also in a fit resumed from a checkpoint.

    **Resuming.** The windows depend on ``(seed, epoch)`` alone, so a fit resumed from an
    end-of-epoch checkpoint (``ckpt_path``) trains on exactly the windows of the uninterrupted fit.
    Under a Trainer the training loader also records how many of the epoch's windows are done
    (:class:`~alstm_lightning.data.streams.ResumableWindowLoader`), so a fit resumed from a
    mid-epoch checkpoint (e.g. one saved on an interrupt) continues with the next window.

    **Lazy vocabulary.** :attr:`vocab` and :attr:`vocab_size` work right after construction (the
    CLI links ``vocab_size`` to the task on instantiation): the first use fetches the files when
    ``download`` is set, tokenises them or reads them from the cache.

    **Predict.** ``predict`` serves the continuations of ``prompts`` first (``max_new_tokens``
    each, sampled at ``temperature`` among the ``top_k`` most likely tokens, seeded by ``seed``),
    then the per-token log-probabilities of the text in ``predict_path``, read as one stream in
    ``bptt`` windows with the state carried across them (:class:`PromptRequest` and
    :class:`ScoreWindow` items, which :meth:`~alstm_lightning.LanguageModelingTask.predict_step`
    answers). Prompt and file are encoded with :attr:`vocab` (words unknown to it read as
    ``<unk>`` where it has one, else are refused by name).

    **Cache.** With ``cache_dir`` set, the ids and vocabulary are saved with ``torch.save`` under a
    name keyed by the source files' paths, sizes and modification times and by the options that
    change tokenisation, so a second run skips tokenising. The file is written atomically, so DDP
    ranks may share it.

    Args:
        batch_size: B, the global number of training streams (split across DDP ranks).
        eval_batch_size: global number of validation streams.
        test_batch_size: global number of test streams.
        bptt: training window length (the mean of the variable schedule) and the fixed
            validation / test window length.
        variable_bptt: draw training window lengths by the paper's rule; ``False`` uses fixed
            ``bptt`` windows.
        seed: seed of the training window schedule (with the epoch number), and of ``predict``'s sampling.
        cache_dir: directory of the tokenised-corpus cache; ``None`` tokenises on every run.
        predict_path: predict only: a text file whose per-token log-probabilities to compute.
        prompts: predict only: texts to continue by sampling.
        max_new_tokens: predict only: tokens sampled per prompt.
        temperature: predict only: divides the logits before sampling (below 1 sharpens).
        top_k: predict only: sample among the k most likely tokens (all when ``None``; 1 is greedy).

    Attributes:
        level: ``"word"`` or ``"char"``; set by each subclass.
    """

    level: str

    def __init__(
        self,
        batch_size: int = 20,
        eval_batch_size: int = 10,
        test_batch_size: int = 1,
        bptt: int = 70,
        variable_bptt: bool = True,
        seed: int = 0,
        cache_dir: str | None = None,
        predict_path: str | None = None,
        prompts: list[str] | None = None,
        max_new_tokens: int = 200,
        temperature: float = 1.0,
        top_k: int | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        if prompts is not None and (
            isinstance(prompts, str) or not all(isinstance(prompt, str) and prompt for prompt in prompts)
        ):
            raise TypeError(f"{owner}: prompts must be a list of non-empty strings, got {prompts!r}")
        check_sampling(owner, max_new_tokens, temperature, top_k)
        check_positive_int(owner, "batch_size", batch_size)
        check_positive_int(owner, "eval_batch_size", eval_batch_size)
        check_positive_int(owner, "test_batch_size", test_batch_size)
        check_positive_int(owner, "bptt", bptt)
        check_bool(owner, "variable_bptt", variable_bptt)
        check_int(owner, "seed", seed)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.test_batch_size = test_batch_size
        self.bptt = bptt
        self.variable_bptt = variable_bptt
        self.seed = seed
        self.cache_dir = cache_dir
        self.predict_path = None if predict_path is None else check_path(owner, "predict_path", predict_path)
        self.prompts = prompts
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_k = top_k
        self.save_hyperparameters()
        self.streams: dict[str, Tensor] = {}
        self._corpus: TokenizedCorpus | None = None

    # ------------------------------------------------------------------ what a subclass provides
    def source_files(self) -> list[Path]:
        """The files the corpus is read from, in reading order; raise if one is missing.

        Called after :meth:`fetch`; its answer keys the cache.
        """
        raise NotImplementedError

    def tokenize(self, files: list[Path]) -> TokenizedCorpus:
        """Read ``files`` (from :meth:`source_files`) into a vocabulary and ids per split."""
        raise NotImplementedError

    def cache_options(self) -> dict[str, object]:
        """The arguments that change :meth:`tokenize`'s result; part of the cache key.

        Override to add a subclass's own (call ``super()`` and extend the dict).
        """
        return {"class": type(self).__name__, "level": self.level, "version": CACHE_VERSION}

    def fetch(self) -> None:
        """Download the corpus files when asked to (nothing here); called before :meth:`source_files`.

        Must be cheap when the files are already there: it runs on every :meth:`load_corpus`.
        """

    # ------------------------------------------------------------------ corpus and vocabulary
    def prepare_data(self) -> None:
        """Fetch the files (in subclasses that download) and tokenise them into the cache.

        Lightning runs this on one process per node before :meth:`setup`.
        """
        self.load_corpus()

    def load_corpus(self) -> TokenizedCorpus:
        """The tokenised corpus: from memory, else from the cache, else by tokenising (and caching).

        A cache file that cannot be read (truncated, or written by another version) is removed with
        a warning and the corpus is tokenised again: the cache only ever holds derived data.

        Raises:
            ValueError: if a source file is empty or is not UTF-8 text (e.g. cut in the middle of
                a character), naming the file.
        """
        if self._corpus is None:
            owner = type(self).__name__
            self.fetch()
            files = self.source_files()
            for path in files:
                if path.stat().st_size == 0:
                    raise ValueError(f"{owner}: every data file must hold text, got an empty file {str(path)!r}")
            cache = self.cache_path(files)
            if cache is not None and cache.is_file():
                log.info("%s: reading the tokenised corpus from %s", owner, cache)
                try:
                    self._corpus = _load_cache(cache)
                except Exception as error:  # any unreadable cache is rebuilt from the source files
                    warnings.warn(
                        f"{owner}: the corpus cache {cache} cannot be read ({type(error).__name__}: {error}); "
                        f"removing it and tokenising the source files again",
                        stacklevel=2,
                    )
                    cache.unlink()
            if self._corpus is None:
                try:
                    self._corpus = self.tokenize(files)
                except UnicodeDecodeError as error:
                    raise ValueError(
                        f"{owner}: every data file must be UTF-8 text, got {_undecodable(files)} "
                        f"(a truncated download or a binary file?)"
                    ) from error
                if cache is not None:
                    _save_cache(self._corpus, cache)
            if len(self._corpus.vocab) < 2:
                raise ValueError(
                    f"{owner}: the corpus must hold at least 2 distinct tokens to model, got "
                    f"{len(self._corpus.vocab)} ({self._corpus.vocab.itos!r}) in {[str(path) for path in files]}"
                )
        return self._corpus

    def cache_path(self, files: list[Path]) -> Path | None:
        """Where the tokenised ``files`` are cached; ``None`` when ``cache_dir`` is ``None``."""
        if self.cache_dir is None:
            return None
        key = {
            "options": self.cache_options(),
            "files": [[str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns] for path in files],
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return Path(self.cache_dir) / f"{type(self).__name__}-{digest}.pt"

    @property
    def vocab(self) -> Vocabulary:
        """The corpus vocabulary (built on first use, see the class docstring)."""
        return self.load_corpus().vocab

    @property
    def vocab_size(self) -> int:
        """V, the number of tokens in :attr:`vocab`."""
        return len(self.vocab)

    # ------------------------------------------------------------------ streams and loaders
    def setup(self, stage: str | None = None) -> None:
        """Lay out the streams of the splits ``stage`` needs (all of them for ``None``)."""
        corpus = self.load_corpus()
        needed = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": (),  # the prompts and predict_path are read by predict_dataloader
            None: SPLITS,
        }[stage]
        sizes = {"train": self.batch_size, "val": self.eval_batch_size, "test": self.test_batch_size}
        arguments = {"train": "batch_size", "val": "eval_batch_size", "test": "test_batch_size"}
        for split in needed:
            ids = getattr(corpus, split)
            if ids.numel() < 2 * sizes[split]:
                raise ValueError(
                    f"{type(self).__name__}: the {split} split must hold at least 2 * {arguments[split]} = "
                    f"{2 * sizes[split]} tokens, got {ids.numel()}"
                )
            self.streams[split] = batchify(ids, sizes[split])  # (N // B, B)

    def _rank_streams(self, split: str, argument: str) -> Tensor:
        """This rank's block of the ``split`` streams; ``argument`` names the batch size in errors."""
        if split not in self.streams:
            raise RuntimeError(f"{type(self).__name__}: setup() must run before the {split} dataloader, got no streams")
        rank, world_size = (0, 1) if self.trainer is None else (self.trainer.global_rank, self.trainer.world_size)
        streams = self.streams[split]
        even = split == "train"  # the ranks' gradients are averaged with equal weights; evaluation sums tokens
        if even and streams.size(1) % world_size:
            raise ValueError(
                f"{type(self).__name__}: {argument} must be divisible by the world size {world_size}, "
                f"got {streams.size(1)}"
            )
        if streams.size(1) < world_size:
            raise ValueError(
                f"{type(self).__name__}: {argument} must be at least the world size {world_size} (a stream per "
                f"process), got {streams.size(1)}; test on one device (--trainer.devices 1) or with more streams"
            )
        return shard_streams(streams, rank, world_size, even)  # (S, B_r)

    def train_dataloader(self) -> DataLoader:
        """Variable-length windows over this rank's training streams, schedule of the current epoch.

        Under a Trainer the loader is a :class:`~alstm_lightning.data.streams.ResumableWindowLoader`:
        a fit resumed from a mid-epoch checkpoint continues with the next window, not the epoch's first.
        """
        world_size = 1 if self.trainer is None else self.trainer.world_size
        dataset = StreamWindows(
            self._rank_streams("train", "batch_size"), self.bptt, self.variable_bptt, self.seed, world_size
        )
        if self.trainer is not None:
            # The epoch whose schedule an uninterrupted fit would be using: the one at which the loader was
            # last reloaded. A fit resumed from a checkpoint thus takes the windows it would have taken.
            epoch, every = self.trainer.current_epoch, self.trainer.reload_dataloaders_every_n_epochs
            dataset.set_epoch(epoch - epoch % every if every else 0)
            if self.variable_bptt and every != 1:
                warnings.warn(
                    f"{type(self).__name__}: variable_bptt=True draws a new window schedule each epoch only when "
                    f"the Trainer reloads the train loader every epoch (reload_dataloaders_every_n_epochs=1), got "
                    f"reload_dataloaders_every_n_epochs={self.trainer.reload_dataloaders_every_n_epochs}; "
                    f"epochs will repeat one schedule",
                    stacklevel=2,
                )
            return ResumableWindowLoader(dataset, trainer_batches_done(self.trainer))
        return DataLoader(dataset, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        """Fixed ``bptt`` windows over this rank's validation streams."""
        return DataLoader(StreamWindows(self._rank_streams("val", "eval_batch_size"), self.bptt), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        """Fixed ``bptt`` windows over this rank's test streams."""
        return DataLoader(StreamWindows(self._rank_streams("test", "test_batch_size"), self.bptt), batch_size=None)

    def encode_text(self, text: str, name: str) -> Tensor:
        """The ids of a raw text at :attr:`vocab`'s level; ``name`` says where the text came from in errors.

        Raises:
            ValueError: for tokens the vocabulary does not know (when it has no ``<unk>``).
        """
        vocab = self.vocab
        try:
            return vocab.encode(vocab.tokens(text), unknown="unk" if vocab.unk_token else "error")
        except UnknownTokenError as error:
            examples = ", ".join(repr(token) for token, _ in error.unknown.most_common(5))
            raise ValueError(
                f"{type(self).__name__}: {name} must use only the vocabulary's tokens, got {error.unknown.total()} "
                f"unknown ({examples})"
            ) from None

    def predict_dataloader(self) -> DataLoader:
        """The :class:`PromptRequest` of each prompt, then the :class:`ScoreWindow` s of ``predict_path``.

        Raises:
            ValueError: when neither ``prompts`` nor ``predict_path`` is given.
        """
        owner = type(self).__name__
        if not self.prompts and self.predict_path is None:
            raise ValueError(f"{owner}: prompts or predict_path must be given to predict, got neither")
        items: list[PromptRequest | ScoreWindow] = [
            PromptRequest(prompt, self.encode_text(prompt, "every prompt"), self.max_new_tokens, self.temperature,
                          self.top_k, self.seed + k)
            for k, prompt in enumerate(self.prompts or ())
        ]
        if self.predict_path is not None:
            path = Path(self.predict_path)
            if not path.is_file():
                raise FileNotFoundError(f"{owner}: predict_path must be an existing text file, got {str(path)!r}")
            ids = self.encode_text(path.read_text(encoding="utf-8"), f"predict_path={str(path)!r}")
            if ids.numel() < 2:
                raise ValueError(f"{owner}: predict_path must hold at least 2 tokens to score, got {ids.numel()}")
            stream = ids.unsqueeze(1)  # (N, 1): one stream
            start = 0
            for length in bptt_schedule(stream.size(0), self.bptt, variable=False):
                items.append(ScoreWindow(stream[start : start + length], stream[start + 1 : start + 1 + length], start))
                start += length
        return DataLoader(items, batch_size=None, collate_fn=None)


class PromptRequest(NamedTuple):
    """A predict item: continue ``text`` (ids ``(T,)``) by ``max_new_tokens`` sampled tokens, seeded by ``seed``."""

    text: str
    ids: Tensor
    max_new_tokens: int
    temperature: float
    top_k: int | None
    seed: int


class ScoreWindow(NamedTuple):
    """A predict item: score ``target`` given ``input`` (both ``(T, 1)``), the window at token ``offset`` of the file."""

    input: Tensor
    target: Tensor
    offset: int


def _undecodable(files: list[Path]) -> str:
    """Where the first byte that is not UTF-8 lies in ``files``, for an error message."""
    for path in files:
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset = 0
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as error:
                    return f"a byte that is not UTF-8 near byte {offset + error.start} of {str(path)!r}"
                offset += len(chunk)
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                return f"a character cut off at the end of {str(path)!r}"
    return f"bytes that are not UTF-8 in one of {[str(path) for path in files]}"


def _save_cache(corpus: TokenizedCorpus, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    payload = {"vocab": corpus.vocab.to_dict(), **{split: getattr(corpus, split) for split in SPLITS}}
    torch.save(payload, partial)
    os.replace(partial, path)  # atomic: another rank reads either nothing or the whole file


def _load_cache(path: Path) -> TokenizedCorpus:
    payload = torch.load(path, weights_only=True)
    return TokenizedCorpus(Vocabulary.from_dict(payload["vocab"]), *(payload[split] for split in SPLITS))
