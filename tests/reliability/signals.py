"""Callbacks the reliability tests launch inside console-script runs (by class path in a config file)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import torch
from lightning import Callback


class SendSignal(Callback):
    """Send ``signal_name`` to this very process after training step ``at_step``, on the ranks listed.

    The time of the signal is written to ``signalled-rank<r>.json`` in the working directory, so a
    test can measure how long the process took to exit after it.

    Args:
        signal_name: ``"SIGTERM"``, ``"SIGINT"`` or ``"SIGSTOP"``.
        at_step: the global step after which the signal is sent.
        ranks: the global ranks that signal themselves.
    """

    def __init__(self, signal_name: str, at_step: int, ranks: list[int] = (0,)) -> None:
        self.signal_name = signal_name
        self.at_step = at_step
        self.ranks = list(ranks)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.at_step and trainer.global_rank in self.ranks:
            Path(f"signalled-rank{trainer.global_rank}.json").write_text(json.dumps({"time": time.time()}))
            os.kill(os.getpid(), getattr(signal, self.signal_name))


class RaiseAtStep(Callback):
    """Raise a ``RuntimeError`` inside training step ``at_step + 1`` (after its forward, before its optimizer step)."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        if trainer.global_step == self.at_step:
            raise RuntimeError(f"RaiseAtStep: failing inside the step after step {self.at_step}")


class KillDuringCheckpointWrite(Callback):
    """SIGKILL this process in the middle of writing its ``nth`` checkpoint file (counting from 1).

    torch.save writes through a file that, after ``after_bytes`` bytes of that checkpoint, kills the
    process: power lost while a checkpoint is written, at a chosen instant.
    """

    def __init__(self, nth: int = 2, after_bytes: int = 2000) -> None:
        self.nth = nth
        self.after_bytes = after_bytes

    def setup(self, trainer, pl_module, stage) -> None:
        original, calls = torch.save, [0]

        def save(obj, f, *args, **kwargs):
            if hasattr(f, "write"):
                calls[0] += 1
                if calls[0] == self.nth:
                    f = _KillingFile(f, self.after_bytes)
            return original(obj, f, *args, **kwargs)

        torch.save = save


class _KillingFile:
    def __init__(self, file, after_bytes: int) -> None:
        self._file = file
        self._left = after_bytes

    def write(self, data) -> int:
        written = self._file.write(data)
        self._left -= len(data)
        if self._left <= 0:
            self._file.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return written

    def __getattr__(self, name):
        return getattr(self._file, name)
