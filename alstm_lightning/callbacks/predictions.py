"""``PredictionWriter``: ``predict``'s answers as JSON lines in a file a user can open."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import Tensor


def _records(prediction: Any) -> list[Any]:
    """One JSON-ready record per answer: a dict as is, each item of a list, a tensor's rows as lists."""
    if isinstance(prediction, dict):
        return [prediction]
    if isinstance(prediction, Tensor):
        return prediction.tolist() if prediction.dim() > 0 else [prediction.item()]
    if isinstance(prediction, (list, tuple)):
        return [record for item in prediction for record in _records(item)]
    return [prediction]


class PredictionWriter(BasePredictionWriter):
    """Write each predict batch's answers to ``output``, one JSON record per line, as they come.

    A language model's answers are ``{"prompt", "continuation"}`` records and ``{"offset", "tokens",
    "log_probs"}`` windows; a classifier's are ``{"text", "label", "probabilities"}`` records (see
    the tasks' ``predict_step``). Under DDP each process writes ``<stem>.rank<r><suffix>``.

    Args:
        output: the file to write; ``None`` writes nothing (the CLI sets it to the run's
            ``predictions.jsonl``).
    """

    def __init__(self, output: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output = output
        self._path: Path | None = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.output is None:
            return
        path = Path(self.output)
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        self._path = path

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if self._path is None:
            return
        with self._path.open("a", encoding="utf-8") as file:
            for record in _records(prediction):
                file.write(json.dumps(record, ensure_ascii=False) + "\n")

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._path is not None:
            rank_zero_info(f"Predictions written to {self._path}")
