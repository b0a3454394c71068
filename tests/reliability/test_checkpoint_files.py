"""Checkpoint files are never lost or torn, say what they are, and an unreadable one is refused by its path."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest
import torch
from lightning import Trainer, seed_everything

from alstm_lightning import AddingDataModule, LanguageModelingTask, SequenceClassificationTask
from alstm_lightning.callbacks import AtomicCheckpointIO, RunCheckpoint
from alstm_lightning.tasks.checkpoints import read_checkpoint

from .conftest import TINY_LM_ARGS, run_cli, write_word_corpus
from .signals import RaiseAtStep


def regression_task(**overrides) -> SequenceClassificationTask:
    arguments = dict(num_classes=1, input_size=2, objective="regression", hidden_size=8, adapt_size=4, dropout=0.3, lr=1e-2)
    return SequenceClassificationTask(**(arguments | overrides))


def adding_data() -> AddingDataModule:
    return AddingDataModule(seq_len=6, num_train=16, num_val=8, num_test=8, batch_size=4, seed=1)


def trainer(directory: Path, callbacks=(), **kwargs) -> Trainer:
    checkpoint = RunCheckpoint(
        dirpath=directory, monitor="val/loss", save_last=True, filename="best-{epoch}-{step}", save_on_exception=True
    )
    options = dict(max_epochs=4, accelerator="cpu", deterministic=True, logger=False, enable_progress_bar=False,
                   enable_model_summary=False, plugins=[AtomicCheckpointIO()], default_root_dir=directory)
    return Trainer(callbacks=[checkpoint, *callbacks], **(options | kwargs))


class WorseEveryEpoch(SequenceClassificationTask):
    """A task whose validation loss rises every epoch: its first epoch stays the best."""

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", torch.tensor(float(self.current_epoch)), on_epoch=True, batch_size=batch[0].size(0))


def test_last_checkpoint_is_the_last_epoch_when_validation_never_improves(tmp_path):
    seed_everything(0)
    task = WorseEveryEpoch(num_classes=1, input_size=2, objective="regression", hidden_size=4, adapt_size=2)
    fit = trainer(tmp_path)
    fit.fit(task, adding_data())
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (3, fit.global_step) == (3, 16)
    assert sorted(p.name for p in tmp_path.glob("best-*.ckpt")) == ["best-epoch=0-step=4.ckpt"]


def test_a_crash_inside_a_step_leaves_a_crashed_checkpoint_that_resumes_exactly(tmp_path):
    seed_everything(0)
    whole = trainer(tmp_path / "whole")
    whole_task = regression_task()
    whole.fit(whole_task, adding_data())

    seed_everything(0)
    crashing = trainer(tmp_path / "run", callbacks=[RaiseAtStep(at_step=6)])
    with pytest.raises(RuntimeError, match="RaiseAtStep"):
        crashing.fit(regression_task(), adding_data())
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["best-epoch=0-step=4.ckpt", "crashed-epoch=1-step=6.ckpt", "last.ckpt"]
    crashed = torch.load(tmp_path / "run" / "crashed-epoch=1-step=6.ckpt", weights_only=True)
    assert crashed["global_step"] == 6, "the failed step is not in it"

    seed_everything(0)
    resumed = trainer(tmp_path / "run")
    resumed_task = regression_task()
    resumed.fit(resumed_task, adding_data(), ckpt_path=tmp_path / "run" / "last.ckpt")
    assert resumed.global_step == whole.global_step
    for (name, value), other in zip(whole_task.state_dict().items(), resumed_task.state_dict().values()):
        assert torch.equal(value, other), f"{name} differs after resuming from the crash"
    # the crashed file is gone once a later epoch end wrote a newer last.ckpt
    assert not list((tmp_path / "run").glob("crashed-*"))


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda data: b"", "empty file: it is truncated"),
        (lambda data: data[: len(data) // 2], "truncated or corrupt"),
        (lambda data: os.urandom(len(data)), "truncated or corrupt"),
    ],
    ids=["empty", "truncated", "random-bytes"],
)
def test_an_unreadable_checkpoint_is_refused_with_its_path(tmp_path, damage, words):
    seed_everything(0)
    fit = trainer(tmp_path / "run", max_epochs=1)
    fit.fit(regression_task(), adding_data())
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(damage((tmp_path / "run" / "last.ckpt").read_bytes()))
    for load in (
        lambda: read_checkpoint("Owner", bad),
        lambda: SequenceClassificationTask.load_from_checkpoint(bad),
        lambda: trainer(tmp_path / "again").fit(regression_task(), adding_data(), ckpt_path=bad),
    ):
        with pytest.raises(ValueError, match=rf"{bad}.*{words}"):
            load()


@contextlib.contextmanager
def tmpfs(directory: Path, size: str):
    """Mount a tmpfs of ``size`` at ``directory`` (another filesystem than the temp dir), or skip the test."""
    directory.mkdir(parents=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount): {result.stderr.decode().strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True)


def test_a_full_disk_leaves_no_partial_file_and_names_the_directory(tmp_path):
    seed_everything(0)
    fit = trainer(tmp_path / "unused", max_epochs=1)
    task = regression_task(hidden_size=64)
    fit.fit(task, adding_data())
    checkpoint = torch.load(tmp_path / "unused" / "last.ckpt", weights_only=True)
    with tmpfs(tmp_path / "small", "16k") as small:
        (small / "earlier.ckpt").write_bytes(b"x" * 4096)
        with pytest.raises(OSError, match=rf"checkpoint directory '{small}' must have room for last.ckpt, got a full disk"):
            AtomicCheckpointIO().save_checkpoint(checkpoint, small / "last.ckpt")
        assert sorted(p.name for p in small.iterdir()) == ["earlier.ckpt"], "no partial file, the earlier one intact"


def test_kill_9_while_a_checkpoint_is_written_leaves_the_previous_one_loadable(tmp_path):
    corpus = write_word_corpus(tmp_path / "corpus", num_words=400)
    config = tmp_path / "kill.yaml"
    # the first write is the epoch-0 best, the second its last.ckpt, the fourth epoch 1's last.ckpt
    config.write_text(
        "trainer:\n  callbacks:\n    - class_path: tests.reliability.signals.KillDuringCheckpointWrite\n"
        "      init_args: {nth: 4, after_bytes: 3000}\n"
    )
    with tmpfs(tmp_path / "checkpoints", "64m") as directory:
        common = ["fit", *TINY_LM_ARGS, "--data.data_dir", str(corpus), "--checkpoint.dirpath", str(directory)]
        result = run_cli([*common, "--trainer.max_epochs", "3", "--config", str(config)], tmp_path)
        assert result.returncode == -9, result.stderr[-3000:]
        last = torch.load(directory / "last.ckpt", weights_only=True)
        assert last["epoch"] == 0, "the last whole checkpoint, from before the killed write"
        assert LanguageModelingTask.load_from_checkpoint(directory / "last.ckpt").vocab is not None
        partial = [p.name for p in directory.iterdir() if p.name.endswith(".partial")]
        assert len(partial) == 1, "the killed write's temporary file, never a torn last.ckpt"
        # resuming in that directory removes the remains and goes on from the last whole checkpoint
        resumed = run_cli([*common, "--trainer.max_epochs", "2", "--ckpt_path", str(directory / "last.ckpt")], tmp_path)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert not [p for p in directory.iterdir() if p.name.endswith(".partial")]
        assert torch.load(directory / "last.ckpt", weights_only=True)["epoch"] == 1
