"""Helpers of the reliability tests: a tiny word corpus, tiny models and the console script in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ..console import run_console

REPO = Path(__file__).resolve().parents[2]
CLI = shutil.which("alstm-lightning") or "alstm-lightning"


def write_word_corpus(directory: Path, num_words: int = 1200) -> Path:
    """``train.txt``, ``valid.txt`` and ``test.txt`` of ``num_words`` words from a 23-word vocabulary."""
    directory.mkdir(parents=True, exist_ok=True)
    for offset, split in enumerate(("train", "valid", "test")):
        words = [f"w{(i * 7 + offset) % 23}" for i in range(num_words)]
        lines = "\n".join(" ".join(words[i : i + 12]) for i in range(0, num_words, 12))
        (directory / f"{split}.txt").write_text(lines + "\n")
    return directory


@pytest.fixture
def word_corpus(tmp_path) -> Path:
    return write_word_corpus(tmp_path / "corpus")


def cli_env() -> dict[str, str]:
    """The environment of a console-script run: offline W&B, one thread, this checkout importable."""
    # WANDB_SERVICE points at a wandb service an earlier test may have started; a child must start its own
    env = {key: value for key, value in os.environ.items() if key != "WANDB_SERVICE"}
    env.update({"WANDB_MODE": "offline", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    return env


def run_cli(args: list[str], cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    """Run ``alstm-lightning *args`` in ``cwd`` and return its result, whatever its exit status."""
    return run_console([CLI, *args], cwd, cli_env(), timeout)


#: CLI arguments of a tiny word-level LM fit on :func:`write_word_corpus` files (data_dir appended by callers).
TINY_LM_ARGS = [
    "--model", "alstm_lightning.LanguageModelingTask",
    "--model.embedding_size", "8", "--model.hidden_size", "8", "--model.adapt_size", "4",
    "--model.num_layers", "1",
    "--data", "alstm_lightning.WordCorpusDataModule",
    "--data.batch_size", "4", "--data.eval_batch_size", "4", "--data.bptt", "10",
    "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--trainer.reload_dataloaders_every_n_epochs", "1",
    "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", "runs",
]
