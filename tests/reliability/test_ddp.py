"""2-process DDP language-model fits through the console script (CPU, gloo): layout, metrics, preemption.

The ranks' disjoint, contiguous streams are also unit-tested without processes in
``tests/data/test_word_corpora.py::test_ddp_ranks_get_disjoint_streams_and_equal_steps`` and
``tests/data/test_streams.py::test_shards_are_disjoint_contiguous_and_cover_the_global_layout``.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
import torch
from lightning import Callback, Trainer

from alstm_lightning import LanguageModelingTask, WordCorpusDataModule
from alstm_lightning.data.streams import batchify

from .conftest import TINY_LM_ARGS, run_cli, write_word_corpus

#: The fits here: 2 processes, 2 epochs of a tiny corpus, every rank's run directory under runs/ddp/.
DDP_ARGS = [
    "--trainer.max_epochs", "2", "--trainer.num_sanity_val_steps", "0",
    "--trainer.strategy", "ddp", "--trainer.devices", "2", "--experiment", "ddp",
]


class RecordStreams(Callback):
    """Save each rank's training and validation streams to ``streams-rank{r}.pt`` in the working directory."""

    def on_train_start(self, trainer, pl_module) -> None:
        streams = {
            "train": trainer.train_dataloader.dataset.streams,
            "val": trainer.val_dataloaders.dataset.streams,
            "world_size": trainer.world_size,
        }
        torch.save(streams, Path(f"streams-rank{trainer.global_rank}.pt"))


def callbacks_config(directory: Path, name: str, entries: list[str]) -> Path:
    """A config file adding the callbacks ``entries`` (YAML list items) to the Trainer."""
    path = directory / f"{name}.yaml"
    path.write_text("trainer:\n  callbacks:\n" + "".join(entries))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_word_corpus(tmp_path_factory.mktemp("ddp-corpus") / "corpus", num_words=400)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, corpus):
    """An uninterrupted 2-epoch DDP fit, its streams recorded by every rank."""
    cwd = tmp_path_factory.mktemp("ddp")
    config = callbacks_config(cwd, "record", ["    - class_path: tests.reliability.test_ddp.RecordStreams\n"])
    result = run_cli(["fit", *TINY_LM_ARGS, "--data.data_dir", str(corpus), *DDP_ARGS, "--config", str(config)], cwd)
    assert result.returncode == 0, result.stderr[-4000:]
    return cwd


def run_directory(cwd: Path) -> Path:
    return cwd / "runs" / "ddp" / "version_0"


def test_each_rank_trains_and_validates_on_its_own_block_of_streams(ddp_run, corpus):
    data = WordCorpusDataModule(data_dir=str(corpus))
    corpus_ids = data.load_corpus()
    ranks = [torch.load(ddp_run / f"streams-rank{rank}.pt") for rank in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    for split, ids in (("train", corpus_ids.train), ("val", corpus_ids.val)):
        # side by side, the ranks' streams are the 4 global streams: rank 0 the first two, rank 1 the last two
        global_streams = batchify(ids, 4)
        torch.testing.assert_close(torch.cat([r[split] for r in ranks], dim=1), global_streams)
        assert ranks[0][split].size(1) == ranks[1][split].size(1) == 2


def test_checkpoints_are_written_once(ddp_run):
    assert sorted(path.name for path in (ddp_run / "runs" / "ddp").iterdir()) == ["version_0"]
    names = sorted(path.name for path in (run_directory(ddp_run) / "checkpoints").iterdir())
    assert len(names) == 2 and names[0].startswith("best-epoch=") and names[1] == "last.ckpt", names


def test_logged_validation_equals_a_single_process_evaluation(ddp_run, corpus):
    with open(run_directory(ddp_run) / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row["val/ppl"]]
    assert len(rows) == 2, "one validation per epoch"
    last = run_directory(ddp_run) / "checkpoints" / "last.ckpt"
    model = LanguageModelingTask.load_from_checkpoint(last)
    # the same 4 global validation streams, all in one process
    data = WordCorpusDataModule(data_dir=str(corpus), eval_batch_size=4, bptt=10)
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(model, datamodule=data)
    assert float(rows[-1]["val/ppl"]) == pytest.approx(metrics["val/ppl"], rel=1e-5)
    assert float(rows[-1]["val/loss"]) == pytest.approx(metrics["val/loss"], rel=1e-5)


@pytest.mark.parametrize("ranks", [[1], [0, 1]], ids=["one-rank", "all-ranks"])
def test_sigterm_stops_every_rank_at_one_step_and_the_resumed_fit_continues_exactly(tmp_path, ddp_run, corpus, ranks):
    config = callbacks_config(tmp_path, "sigterm", [
        "    - class_path: tests.reliability.signals.SendSignal\n",
        f"      init_args: {{signal_name: SIGTERM, at_step: 3, ranks: {ranks}}}\n",
    ])
    args = ["fit", *TINY_LM_ARGS, "--data.data_dir", str(corpus), *DDP_ARGS]
    stopped = run_cli([*args, "--config", str(config)], tmp_path)
    exited = time.time()
    assert stopped.returncode == 143, stopped.stderr[-4000:]
    # every process exits with 143, soon after the signal, having saved one checkpoint
    for rank in (0, 1):
        assert f"stopped by SIGTERM (rank {rank}); exit status 143" in stopped.stderr, stopped.stderr[-2000:]
    signalled = min(json.loads((tmp_path / f"signalled-rank{r}.json").read_text())["time"] for r in ranks)
    assert exited - signalled < 60
    checkpoints = run_directory(tmp_path) / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["interrupted-epoch=0-step=3.ckpt", "last.ckpt"]

    resumed = run_cli([*args, "--ckpt_path", str(checkpoints / "last.ckpt")], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    whole = torch.load(run_directory(ddp_run) / "checkpoints" / "last.ckpt", weights_only=True)
    final = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert final["global_step"] == whole["global_step"]
    for name, value in whole["state_dict"].items():
        torch.testing.assert_close(final["state_dict"][name], value, rtol=0, atol=1e-6, msg=f"{name} differs")
    assert not list(checkpoints.glob("interrupted-*")), "removed once a later epoch end saved last.ckpt"


def test_a_rank_that_stops_answering_fails_the_others_within_the_timeout_naming_it(tmp_path, corpus):
    config = callbacks_config(tmp_path, "sigstop", [
        "    - class_path: tests.reliability.signals.SendSignal\n",
        "      init_args: {signal_name: SIGSTOP, at_step: 3, ranks: [1]}\n",
    ])
    args = ["fit", *TINY_LM_ARGS, "--data.data_dir", str(corpus), *DDP_ARGS, "--config", str(config),
            "--distributed_timeout", "30"]
    started = time.time()
    result = run_cli(args, tmp_path, timeout=240)
    assert result.returncode == 1, result.stderr[-4000:]
    assert time.time() - started < 200, "well within gloo's default 30 minutes"
    assert "alstm-lightning: error: rank 0 of 2: rank(s) [1] stopped answering" in result.stderr, result.stderr[-3000:]
    # no crash checkpoint: the processes' states need not agree; last.ckpt stays the last whole one
    assert not list(tmp_path.glob("runs/ddp/version_0/checkpoints/crashed-*"))
