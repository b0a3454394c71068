"""A 2-process DDP language-model fit through the console script (CPU, gloo).

The ranks' disjoint, contiguous streams are also unit-tested without processes in
``tests/data/test_word_corpora.py::test_ddp_ranks_get_disjoint_streams_and_equal_steps`` and
``tests/data/test_streams.py::test_shards_are_disjoint_contiguous_and_cover_the_global_layout``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from lightning import Callback, Trainer

from alstm_lightning import LanguageModelingTask, WordCorpusDataModule
from alstm_lightning.data.streams import batchify

from .conftest import TINY_LM_ARGS, run_cli, write_word_corpus


class RecordStreams(Callback):
    """Save each rank's training and validation streams to ``streams-rank{r}.pt`` in the working directory."""

    def on_train_start(self, trainer, pl_module) -> None:
        streams = {
            "train": trainer.train_dataloader.dataset.streams,
            "val": trainer.val_dataloaders.dataset.streams,
            "world_size": trainer.world_size,
        }
        torch.save(streams, Path(f"streams-rank{trainer.global_rank}.pt"))


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One epoch of a 2-process DDP fit on a tiny corpus, its streams recorded by every rank."""
    cwd = tmp_path_factory.mktemp("ddp")
    corpus = write_word_corpus(cwd / "corpus", num_words=400)
    config = cwd / "record.yaml"
    config.write_text("trainer:\n  callbacks:\n    - class_path: tests.reliability.test_ddp.RecordStreams\n")
    args = [
        "fit", *TINY_LM_ARGS, "--data.data_dir", str(corpus), "--config", str(config),
        "--trainer.max_epochs", "1", "--trainer.num_sanity_val_steps", "0",
        "--trainer.strategy", "ddp", "--trainer.devices", "2",
    ]
    result = run_cli(args, cwd)
    assert result.returncode == 0, result.stderr[-4000:]
    return cwd, corpus


def test_each_rank_trains_and_validates_on_its_own_block_of_streams(ddp_run):
    cwd, corpus = ddp_run
    data = WordCorpusDataModule(data_dir=str(corpus))
    corpus_ids = data.load_corpus()
    ranks = [torch.load(cwd / f"streams-rank{rank}.pt") for rank in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    for split, ids in (("train", corpus_ids.train), ("val", corpus_ids.val)):
        # side by side, the ranks' streams are the 4 global streams: rank 0 the first two, rank 1 the last two
        global_streams = batchify(ids, 4)
        torch.testing.assert_close(torch.cat([r[split] for r in ranks], dim=1), global_streams)
        assert ranks[0][split].size(1) == ranks[1][split].size(1) == 2


def test_checkpoints_are_written_once(ddp_run):
    cwd, _ = ddp_run
    assert sorted(path.name for path in (cwd / "runs").iterdir()) == ["version_0"]
    names = sorted(path.name for path in (cwd / "runs" / "version_0" / "checkpoints").iterdir())
    assert len(names) == 2 and names[0].startswith("best-epoch=0-") and names[1] == "last.ckpt"


def test_logged_validation_equals_a_single_process_evaluation(ddp_run):
    cwd, corpus = ddp_run
    with open(cwd / "runs" / "version_0" / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row["val/ppl"]]
    assert len(rows) == 1
    last = cwd / "runs" / "version_0" / "checkpoints" / "last.ckpt"
    model = LanguageModelingTask.load_from_checkpoint(last)
    # the same 4 global validation streams, all in one process
    data = WordCorpusDataModule(data_dir=str(corpus), eval_batch_size=4, bptt=10)
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(model, datamodule=data)
    assert float(rows[0]["val/ppl"]) == pytest.approx(metrics["val/ppl"], rel=1e-5)
    assert float(rows[0]["val/loss"]) == pytest.approx(metrics["val/loss"], rel=1e-5)
    score = next(
        value["best_model_score"]
        for key, value in torch.load(last, weights_only=False)["callbacks"].items()
        if key.startswith("ModelCheckpoint")
    )
    assert float(score) == pytest.approx(metrics["val/loss"], rel=1e-5)
