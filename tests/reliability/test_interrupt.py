"""A CLI fit stopped by SIGTERM or Ctrl+C (SIGINT) leaves an interrupt checkpoint that loads and resumes."""

from __future__ import annotations

import torch
from lightning import Trainer

from alstm_lightning import LanguageModelingTask, WordCorpusDataModule
from alstm_lightning.data.streams import bptt_schedule

from .conftest import TINY_LM_ARGS, run_cli, write_word_corpus


def uninterrupted_steps(checkpoint: dict, epochs: int) -> int:
    """The training windows of ``epochs`` whole epochs of the checkpoint's data (variable BPTT: they vary by epoch)."""
    data = WordCorpusDataModule(**{k: v for k, v in checkpoint["datamodule_hyper_parameters"].items() if k[0] != "_"})
    rows = len(data.load_corpus().train) // data.batch_size
    return sum(len(bptt_schedule(rows, data.bptt, data.variable_bptt, data.seed, epoch)) for epoch in range(epochs))


def interrupted_fit(tmp_path, signal_name: str):
    """Run a 2-epoch CLI fit that sends itself ``signal_name`` after step 3; return its result, last.ckpt and args."""
    corpus = write_word_corpus(tmp_path / "corpus", num_words=400)
    config = tmp_path / "interrupt.yaml"
    config.write_text(
        "trainer:\n  callbacks:\n    - class_path: tests.reliability.signals.SendSignal\n"
        f"      init_args: {{signal_name: {signal_name}, at_step: 3}}\n"
    )
    args = ["fit", *TINY_LM_ARGS, "--data.data_dir", str(corpus), "--trainer.max_epochs", "2", "--experiment", "lm"]
    result = run_cli([*args, "--config", str(config)], tmp_path)
    directory = tmp_path / "runs" / "lm" / "version_0" / "checkpoints"
    checkpoints = sorted(path.name for path in directory.iterdir())
    # the state at the interrupt, named for it (never best-*, it was not validated), and as last.ckpt
    assert checkpoints == ["interrupted-epoch=0-step=3.ckpt", "last.ckpt"], result.stderr[-3000:]
    last = directory / "last.ckpt"
    state = torch.load(last, weights_only=False)
    assert (state["epoch"], state["global_step"]) == (0, 3)
    model = LanguageModelingTask.load_from_checkpoint(last)
    torch.testing.assert_close(model.state_dict(), state["state_dict"])
    return result, last, args


def test_sigterm_leaves_a_checkpoint_the_cli_resumes_from(tmp_path):
    interrupted, last, args = interrupted_fit(tmp_path, "SIGTERM")
    # the fit stops before the next step, the checkpoint is written, the CLI exits with 128 + SIGTERM
    assert interrupted.returncode == 143, interrupted.stderr[-3000:]
    assert "stopped by SIGTERM (rank 0); exit status 143" in interrupted.stderr

    resumed = run_cli([*args, "--ckpt_path", str(last)], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # the resumed fit goes on in the run's directory, with every window once, and the interrupt file is gone
    final = torch.load(last, weights_only=False)
    assert (final["epoch"], final["global_step"]) == (1, uninterrupted_steps(final, 2))
    assert not list(last.parent.glob("interrupted-*"))
    assert (last.parent.parent / "config.resume-1.yaml").is_file()


def test_ctrl_c_leaves_a_checkpoint_a_trainer_resumes_from(tmp_path):
    interrupted, last, _ = interrupted_fit(tmp_path, "SIGINT")
    assert interrupted.returncode == 1, interrupted.stderr[-3000:]  # Lightning's exit status after Ctrl+C
    assert "KeyboardInterrupt" in interrupted.stderr

    state = torch.load(last, weights_only=False)
    model = LanguageModelingTask.load_from_checkpoint(last)
    data = WordCorpusDataModule(**{k: v for k, v in state["datamodule_hyper_parameters"].items() if k[0] != "_"})
    trainer = Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        reload_dataloaders_every_n_epochs=1, default_root_dir=tmp_path / "resumed",
    )
    trainer.fit(model, data, ckpt_path=last)
    assert (trainer.current_epoch, trainer.global_step) == (2, uninterrupted_steps(state, 2))
