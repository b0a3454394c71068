"""Every recipe parses and runs end to end through the real ``alstm-lightning`` console script."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alstm_lightning import LanguageModelingTask

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
CLI = shutil.which("alstm-lightning") or "alstm-lightning"


class LoudLanguageModelingTask(LanguageModelingTask):
    """A user subclass, launched by import path in a test below: it doubles the loss."""

    def loss(self, logits, targets):
        return 2 * super().loss(logits, targets)


def run_cli(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    # WANDB_SERVICE points at a wandb service started by an earlier test in this process; a
    # subprocess attached to it would write its run elsewhere, so each CLI run starts its own
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update({"WANDB_MODE": "offline", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    result = subprocess.run([CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"alstm-lightning {' '.join(args)} failed:\n{result.stderr[-4000:]}"
    return result


def tiny_data_overrides(recipe: str, root: Path) -> list[str]:
    """Point a recipe that needs user data at tiny files written here.

    A fine-tuning recipe also needs a checkpoint to start from: a one-step fit of the recipe it
    fine-tunes writes one, on the same tiny data and with the same (small) model sizes.
    """
    words = [f"w{i % 37}" for i in range(3000)]
    lines = "\n".join(" ".join(words[i : i + 15]) for i in range(0, len(words), 15)) + "\n"
    if recipe in ("ptb_alstm", "ptb_lstm", "wt2_alstm", "ptb_awd_lstm", "ptb_awd_lstm_finetune"):
        for split in ("train", "valid", "test"):
            (root / f"{split}.txt").write_text(lines)
        overrides = ["--data.init_args.data_dir", str(root), "--data.init_args.download", "false"]
        if recipe.endswith("_finetune"):
            # the checkpoint plumbing is under test, not the size: both runs use a small model
            overrides += ["--model.init_args.embedding_size", "16", "--model.init_args.hidden_size", "32"]
            return [*overrides, "--model.init_args.init_checkpoint", str(one_step_checkpoint(recipe, root, overrides))]
        return overrides
    if recipe == "shakespeare_char":
        (root / "input.txt").write_text("To be, or not to be: that is the question.\n" * 400)
        return ["--data.init_args.data_dir", str(root)]
    if recipe == "text_classification":
        for split in ("train", "val"):
            with open(root / f"{split}.csv", "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["text", "label"])
                for i in range(64):
                    writer.writerow([f"a fine film number {i}" if i % 2 else f"a dull film number {i}", f"l{i % 2}"])
        return ["--data.init_args.train_path", str(root / "train.csv"), "--data.init_args.val_path", str(root / "val.csv")]
    return []


def one_step_checkpoint(finetune_recipe: str, root: Path, overrides: list[str]) -> Path:
    """The ``last.ckpt`` of a one-step fit of the recipe that ``finetune_recipe`` fine-tunes."""
    base = REPO / "recipes" / f"{finetune_recipe.removesuffix('_finetune')}.yaml"
    run_cli(
        ["fit", "--config", str(base), *overrides, "--trainer.max_steps", "1", "--trainer.limit_val_batches", "1",
         "--trainer.num_sanity_val_steps", "0",
         "--checkpoint.dirpath", str(root / "base"), "--checkpoint.save_top_k", "0"],
        root,
    )
    return root / "base" / "last.ckpt"


def test_quickstart_prints_its_config(tmp_path):
    """The CLI's own defaults show in the printed config (every recipe's config is parsed, and run,
    by test_recipe_runs_with_fast_dev_run; one subprocess per recipe here cost 8 s each)."""
    out = run_cli(["fit", "--config", str(REPO / "recipes" / "quickstart.yaml"), "--print_config"], tmp_path).stdout
    assert "class_path: alstm_lightning." in out
    assert "checkpoint:" in out and "monitor: val/loss" in out


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_recipe_runs_with_fast_dev_run(recipe, tmp_path):
    overrides = tiny_data_overrides(recipe.stem, tmp_path)
    result = run_cli(["fit", "--config", str(recipe), "--trainer.fast_dev_run", "1", *overrides], tmp_path)
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    """A short quickstart fit: one epoch of 4 steps, validation on 2 windows, offline W&B."""
    cwd = tmp_path_factory.mktemp("quickstart")
    args = [
        "fit",
        "--config",
        str(REPO / "recipes" / "quickstart.yaml"),
        "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "4",
        "--trainer.limit_val_batches", "2",
    ]
    result = run_cli(args, cwd)
    return cwd, result


def test_offline_wandb_run_records_config_and_metrics(quickstart_run):
    cwd, result = quickstart_run
    runs = list((cwd / "runs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "one offline W&B run directory"
    record_files = list(runs[0].glob("*.wandb"))
    records = b"".join(path.read_bytes() for path in record_files)
    assert records, f"empty W&B record files: {[(p.name, p.stat().st_size) for p in record_files]}"
    for key in (b"PythonStdlibDataModule", b"LanguageModelingTask", b"model/num_parameters", b"val/bpc", b"train/loss"):
        assert key in records, f"{key!r} missing from the W&B run"
    assert "Final validation: " in result.stderr + result.stdout


def test_checkpoint_reloads_with_identical_validation(quickstart_run):
    cwd, _ = quickstart_run
    last = next((cwd / "runs").rglob("last.ckpt"))
    checkpoint = torch.load(last, weights_only=False)
    best_score = next(
        state["best_model_score"] for key, state in checkpoint["callbacks"].items() if key.startswith("ModelCheckpoint")
    )
    model = LanguageModelingTask.load_from_checkpoint(last)
    from alstm_lightning import PythonStdlibDataModule
    from lightning import Trainer

    datamodule = PythonStdlibDataModule(batch_size=32, eval_batch_size=32, bptt=64, cache_dir=str(cwd / "runs" / "cache"))
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, limit_val_batches=2)
    (metrics,) = trainer.validate(model, datamodule=datamodule)
    assert metrics["val/loss"] == pytest.approx(float(best_score), rel=1e-6)
    tested = run_cli(
        ["test", "--config", str(REPO / "recipes" / "quickstart.yaml"), "--ckpt_path", str(last),
         "--trainer.limit_test_batches", "20", "--trainer.logger", "false"],
        cwd,
    )
    assert "test/bpc" in tested.stdout


def test_user_subclass_launched_by_import_path(tmp_path):
    result = run_cli(
        ["fit", "--config", str(REPO / "recipes" / "quickstart.yaml"),
         "--model", "tests.test_recipes.LoudLanguageModelingTask", "--model.init_args.hidden_size", "16",
         "--model.init_args.embedding_size", "16", "--trainer.fast_dev_run", "1", "--print_config"],
        tmp_path,
    )
    assert "class_path: tests.test_recipes.LoudLanguageModelingTask" in result.stdout
    run_cli(
        ["fit", "--config", str(REPO / "recipes" / "quickstart.yaml"),
         "--model", "tests.test_recipes.LoudLanguageModelingTask", "--model.init_args.hidden_size", "16",
         "--model.init_args.embedding_size", "16", "--trainer.fast_dev_run", "1"],
        tmp_path,
    )


def test_console_script_is_installed():
    assert shutil.which("alstm-lightning"), f"console script missing for {sys.executable}"
