"""A user's workspace for the journeys: a fresh-clone layout, tiny corpora where the recipes look, the console script.

The workspace is what a user who cloned the repository has: ``recipes/`` (a link to the
repository's), and the data the recipes would download (tiny files of the same names, so no test
needs the network). Commands run in it through the real ``alstm-lightning`` console script, with
no ``PYTHONPATH``: a user's module (``my_tasks.py``) is imported from the working directory.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ..console import run_console

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
CLI = shutil.which("alstm-lightning") or "alstm-lightning"
#: Test-time limits added to every documented command that trains or scores (the model stays as written).
SHORT = {
    "fit": ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2",
            "--trainer.num_sanity_val_steps", "0", "--trainer.accelerator", "cpu"],
    "validate": ["--trainer.limit_val_batches", "2", "--trainer.accelerator", "cpu"],
    "test": ["--trainer.limit_test_batches", "2", "--trainer.accelerator", "cpu"],
    "predict": ["--trainer.limit_predict_batches", "3", "--trainer.accelerator", "cpu"],
}


def cli_env(**extra: str) -> dict[str, str]:
    """A user's environment: offline W&B, one thread; no PYTHONPATH (imports come from the working directory)."""
    # WANDB_SERVICE points at a wandb service an earlier test may have started; a child must start its own
    env = {key: value for key, value in os.environ.items() if key not in ("WANDB_SERVICE", "PYTHONPATH")}
    env.update({"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", **extra})
    return env


def run(command: list[str], cwd: Path, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    """Run a command line in ``cwd`` (see :func:`tests.console.run_console`)."""
    return run_console(command, cwd, cli_env(**env), timeout)


def cli(args: list[str], cwd: Path, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    """``alstm-lightning *args`` in ``cwd``."""
    return run([CLI, *args], cwd, timeout, **env)


def readme_block(marker: str) -> str:
    """The fenced code block of README.md whose first line is ``marker`` (e.g. ``# my_tasks.py``)."""
    for block in re.findall(r"```(?:python|bash)\n(.*?)```", README.read_text(), flags=re.S):
        if block.startswith(marker):
            return block
    raise AssertionError(f"README.md has no code block starting with {marker!r}")


def write_word_files(directory: Path, names: dict[str, str], num_words: int = 3000) -> None:
    """Tiny word-level split files of a 37-word vocabulary, named as a corpus's published files."""
    directory.mkdir(parents=True, exist_ok=True)
    words = [f"w{i % 37}" for i in range(num_words)]
    text = "\n".join(" ".join(words[i : i + 15]) for i in range(0, num_words, 15)) + "\n"
    for name in names.values():
        (directory / name).write_text(text)


def write_texts(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    """A fresh clone's layout: ``recipes/``, the recipes' data where they look for it, a user's files."""
    root = tmp_path_factory.mktemp("workspace")
    (root / "recipes").symlink_to(REPO / "recipes")
    write_word_files(root / "data" / "ptb", {s: f"ptb.{s}.txt" for s in ("train", "valid", "test")})
    write_word_files(root / "data" / "wikitext-2", {s: f"wiki.{s}.tokens" for s in ("train", "valid", "test")})
    (root / "data" / "tinyshakespeare").mkdir(parents=True)
    (root / "data" / "tinyshakespeare" / "input.txt").write_text("To be, or not to be: that is the question.\n" * 400)
    labelled = [(f"a fine film number {i}" if i % 2 else f"a dull film number {i}", "good" if i % 2 else "bad") for i in range(64)]
    for name in ("train", "val"):
        write_texts(root / "my" / f"{name}.csv", labelled)
    write_texts(root / "my" / "new.csv", [("a fine film", ""), ("a dull film", "")])
    (root / "my_script.py").write_text("def add(a, b):\n    return a + b\n")
    (root / "my_tasks.py").write_text(readme_block("# my_tasks.py"))
    return root
