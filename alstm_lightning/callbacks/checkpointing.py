"""Checkpoints that are never lost or torn, named for what they are, and preemption that works under DDP.

* :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file in its own directory,
  flushes it to disk and renames it into place: a kill at any instant leaves the previous file
  loadable, and a full disk leaves no partial file (the error names the directory).
* :class:`RunCheckpoint` is Lightning's ``ModelCheckpoint`` with three rules added. ``last.ckpt``
  is rewritten at every checkpoint trigger (each epoch end by default), whether or not the
  monitored metric improved; only a validated best is named ``best-*``; a checkpoint written
  because a fit stopped early is named ``interrupted-*`` (Ctrl+C, SIGTERM) or ``crashed-*`` (an
  exception), holds the state as of the start of the step that did not finish, and is deleted
  once a later trigger has saved a newer ``last.ckpt``.
* :class:`Preemption` turns SIGTERM (a scheduler's preemption notice) into a stop that every
  process agrees on: the signal only sets a flag; before each training batch the processes take
  the maximum of their flags, so whichever rank was signalled, all stop at the same step, write
  one consistent checkpoint and exit with status 143.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import signal
import tempfile
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from ..tasks.checkpoints import random_state, read_checkpoint, set_random_state

log = logging.getLogger(__name__)

#: The suffix of the temporary file a checkpoint is written to before it is renamed into place.
PARTIAL_SUFFIX = ".partial"
#: The exit status of a process stopped by SIGTERM (128 + 15), so a scheduler never reads it as success.
SIGTERM_EXIT_STATUS = 128 + signal.SIGTERM


class Preempted(SIGTERMException):
    """Raised in every process of a fit that stopped on SIGTERM, after the interrupt checkpoint is written.

    A ``SystemExit`` (Lightning's ``SIGTERMException``) with status 143.
    """

    def __init__(self) -> None:
        super().__init__(SIGTERM_EXIT_STATUS)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file beside the target, ``fsync``, then an atomic rename.

    Lightning's own writer stages the bytes elsewhere and copies them over the target, which a kill
    mid-copy leaves truncated (and empty, when the target is on another filesystem). Here the
    target is replaced only by a complete, flushed file; a failed write (a full disk) removes its
    temporary file and says which directory is full. Remote paths (``s3://...``) are left to
    Lightning's writer. Loading refuses a truncated or corrupt file by its path.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=PARTIAL_SUFFIX)
        try:
            with os.fdopen(descriptor, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, target)
        except BaseException as error:
            Path(partial).unlink(missing_ok=True)
            if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OSError(
                    error.errno,
                    f"AtomicCheckpointIO: the checkpoint directory {str(target.parent)!r} must have room for "
                    f"{target.name}, got a full disk ({os.strerror(error.errno)}); no partial file was left and the "
                    "previous checkpoints are intact",
                ) from error
            raise
        _fsync_directory(target.parent)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        if "://" in str(path):
            return super().load_checkpoint(path, map_location, weights_only)
        return read_checkpoint("AtomicCheckpointIO", path, map_location=map_location)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (where the platform allows opening a directory)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename itself is atomic either way
    finally:
        os.close(descriptor)


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, with ``last.ckpt`` at every trigger and names that say what a file is.

    Arguments are ``ModelCheckpoint``'s. Compared with it:

    * ``last.ckpt`` (with ``save_last``) is written at every checkpoint trigger (epoch end,
      ``every_n_train_steps``, ``train_time_interval``), also when the monitored metric did not
      improve, so it always holds the newest state;
    * on an exception (with ``save_on_exception``) the file is ``interrupted-epoch=E-step=S.ckpt`` for
      Ctrl+C and SIGTERM, ``crashed-epoch=E-step=S.ckpt`` for any other exception, never the
      ``filename`` pattern of validated checkpoints, and ``last.ckpt`` is updated too. When the
      exception came inside a training step, before its optimizer step, the random generators are
      first put back to where that step started, so the file resumes exactly: the step runs again.
      In a run of several processes, only a coordinated stop (:class:`Preemption`) writes one: after a
      crash in one process the others are mid-step or gone, and no consistent state exists;
    * ``interrupted-*`` and ``crashed-*`` files are deleted once a later trigger has written a newer
      ``last.ckpt`` (a resumed fit has gone past them).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._step_start: tuple[int, dict[str, Any]] | None = None
        self._last_saved_step: int | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Lightning's setup, then remove the temporary files of writes a kill cut short (never a checkpoint)."""
        super().setup(trainer, pl_module, stage)
        if trainer.is_global_zero and self.dirpath is not None and os.path.isdir(self.dirpath):
            for partial in Path(self.dirpath).glob(f".*{self.FILE_EXTENSION}.*{PARTIAL_SUFFIX}"):
                log.warning("%s: removing %s, the remains of a checkpoint write that was cut short", type(self).__name__, partial)
                partial.unlink(missing_ok=True)

    # ------------------------------------------------------------------ last at every trigger
    def _save_topk_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, Any]) -> None:
        super()._save_topk_checkpoint(trainer, monitor_candidates)
        self._save_last_checkpoint(trainer, monitor_candidates)
        self._remove_early_stop_checkpoints(trainer)

    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, Any]) -> None:
        if self._last_saved_step == trainer.global_step and self.last_model_path:
            return  # Lightning asks again after the top-k save it made at this step: one write is enough
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_saved_step = trainer.global_step

    def _remove_early_stop_checkpoints(self, trainer: pl.Trainer) -> None:
        """Delete the ``interrupted-*`` / ``crashed-*`` files of earlier steps: ``last.ckpt`` is newer."""
        if not trainer.is_global_zero or self.dirpath is None or not os.path.isdir(self.dirpath):
            return
        for kind in ("interrupted", "crashed"):
            for path in Path(self.dirpath).glob(f"{kind}-*{self.FILE_EXTENSION}"):
                step = _step_of(path.name)
                if step is not None and step < trainer.global_step:
                    path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ interrupts and crashes
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        """Note where the step starts: the optimizer's step count and the random generators."""
        self._step_start = (trainer.global_step, random_state())

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Write ``interrupted-*`` or ``crashed-*`` (and ``last.ckpt``) as of the start of the unfinished step."""
        if not self._should_save_on_exception(trainer):
            return
        interrupted = isinstance(exception, (KeyboardInterrupt, SIGTERMException))
        if trainer.world_size > 1 and not isinstance(exception, Preempted):
            rank_zero_info(
                f"{type(self).__name__}: no checkpoint written after {type(exception).__name__} in a run of "
                f"{trainer.world_size} processes (their states need not agree); resume from {self.last_model_path or 'the last checkpoint'}"
            )
            return
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        if progress.started > progress.processed and self._step_start is not None:
            step, state = self._step_start
            if step == trainer.global_step:
                set_random_state(state)  # the step's dropout masks are drawn again when it reruns
            else:
                warnings.warn(
                    f"{type(self).__name__}: {type(exception).__name__} came after the optimizer step of a batch "
                    "that did not finish; the checkpoint resumes close to, not exactly at, where the fit stopped",
                    stacklevel=2,
                )
        kind = "interrupted" if interrupted else "crashed"
        filepath = os.path.join(
            self.dirpath, f"{kind}-epoch={trainer.current_epoch}-step={trainer.global_step}{self.FILE_EXTENSION}"
        )
        self._save_checkpoint(trainer, filepath)
        self._last_saved_step = None
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        rank_zero_info(f"{type(self).__name__}: {type(exception).__name__}: saved {filepath} and {self.last_model_path}")


def _step_of(name: str) -> int | None:
    """The ``step=`` number in a checkpoint's file name, or ``None``."""
    marker = "step="
    if marker not in name:
        return None
    digits = name.split(marker, 1)[1].split("-", 1)[0].split(".", 1)[0]
    return int(digits) if digits.isdigit() else None


class Preemption(pl.Callback):
    """Stop a fit on SIGTERM at the same step in every process, with one consistent checkpoint, exit status 143.

    Lightning's own SIGTERM handler runs a collective inside the signal handler, which deadlocks a
    DDP run whose other ranks are in a collective of their own, and it only reaches the signalled
    rank. This callback replaces it while training: the handler only sets a flag. Before each
    training batch (and each validation batch of a fit), the processes take the maximum of their
    flags in one small all-reduce; once it is set, every process stops there, before the batch
    (so every finished step is in the checkpoint and none is half done), :class:`RunCheckpoint`
    writes ``interrupted-*.ckpt`` and ``last.ckpt``, and every process raises :class:`Preempted`
    (the console script exits with 143).
    """

    #: After a distributed run failed because a process stopped answering: which one, in words (else ``None``).
    stalled: str | None = None

    def __init__(self, check_timeout: float = 5.0) -> None:
        self.requested = False
        self.check_timeout = check_timeout
        self._previous_handler: Any = None
        self._check_group: Any = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """In a distributed run, make the small gloo group that later finds a process that stopped answering."""
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            self._check_group = torch.distributed.new_group(backend="gloo")

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """After a collective failed in a distributed run, find which processes stop answering, and say so."""
        if self._check_group is None or isinstance(exception, (Preempted, KeyboardInterrupt)):
            return
        try:
            torch.distributed.monitored_barrier(
                self._check_group, timeout=timedelta(seconds=self.check_timeout), wait_all_ranks=True
            )
            return  # every process answers: the failure was something else
        except RuntimeError as error:
            failed = re.search(r"Ranks? ([\d, ]+) failed to pass", str(error))
            ranks = sorted(int(r) for r in re.findall(r"\d+", failed.group(1))) if failed else []
        rank, size = trainer.global_rank, trainer.world_size
        who = f"rank(s) {ranks}" if rank == 0 and ranks else ("rank 0" if rank != 0 else "another rank")
        type(self).stalled = (
            f"rank {rank} of {size}: {who} stopped answering (no reply within the distributed timeout, "
            "--distributed_timeout; a stopped, hung or killed process)"
        )
        log.error(type(self).stalled)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Install the flag-only handler (Lightning installed its own just before)."""
        self.requested = False
        self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._previous_handler = None

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        log.warning("Received SIGTERM: stopping before the next step and saving a checkpoint")
        self.requested = True

    def _stop_if_requested(self, trainer: pl.Trainer) -> None:
        requested = self.requested
        if trainer.world_size > 1:
            flag = torch.tensor([1.0 if requested else 0.0], device=trainer.strategy.root_device)
            requested = bool(trainer.strategy.reduce(flag, reduce_op="max").item())
        if requested:
            raise Preempted()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self._stop_if_requested(trainer)

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._stop_if_requested(trainer)
