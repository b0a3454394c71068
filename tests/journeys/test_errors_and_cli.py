"""The CLI introduces itself, and a user's mistakes are reported on one screen, with no run left behind."""

from __future__ import annotations

import os

import pytest
import torch

from alstm_lightning import SequenceClassificationTask, __version__

from .conftest import REPO, cli

QUICK = ["--trainer.max_steps", "1", "--trainer.limit_val_batches", "1", "--trainer.logger", "false"]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("alstm-lightning: error:")]


def test_help_lists_the_recipes_and_version_prints_it(tmp_path):
    result = cli(["--help"], tmp_path)
    assert result.returncode == 0
    for recipe in sorted((REPO / "recipes").glob("*.yaml")):
        summary = recipe.read_text().splitlines()[0].lstrip("# ")[:40]
        assert f"  {recipe.stem} " in result.stdout and summary in result.stdout, recipe.stem
    for subcommand in ("fit", "validate", "test", "predict", "generate"):
        assert f"  {subcommand} " in result.stdout
    version = cli(["--version"], tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"alstm-lightning {__version__}"


def test_a_shipped_recipe_is_named_without_its_path(tmp_path):
    result = cli(["fit", "--config", "quickstart", "--print_config"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "class_path: alstm_lightning.PythonStdlibDataModule" in result.stdout
    assert "monitor: val/loss" in result.stdout and "save_last: true" in result.stdout


@pytest.mark.parametrize(
    ("arguments", "status", "message"),
    [
        (["--model.init_args.hiden_size", "64"], 2,
         "'hiden_size' is not an argument of LanguageModelingTask; did you mean hidden_size"),
        (["--trainer.max_epoch", "3"], 2, "--trainer.max_epoch is not an argument; did you mean --trainer.max_epochs"),
        (["--trainer.max_epochs", "many"], 2, "--trainer.max_epochs must be int or None, got 'many'"),
        (["--model.init_args.dropout", "1.5"], 1, "ValueError: LanguageModelingTask: dropout must be in [0, 1), got 1.5"),
    ],
    ids=["typo-in-a-model-key", "typo-in-a-trainer-key", "value-of-the-wrong-type", "value-out-of-range"],
)
def test_a_mistake_in_the_command_line_is_one_short_error(tmp_path, arguments, status, message):
    result = cli(["fit", "--config", "quickstart", *arguments, *QUICK], tmp_path)
    assert result.returncode == status, result.stderr[-3000:]
    (error,) = error_lines(result.stderr)
    assert message in error
    assert "Traceback" not in result.stderr and "usage:" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 4, result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("version_*")), "no run left behind"


def test_a_data_error_is_reported_as_raised_not_inside_a_link_message(tmp_path):
    result = cli(["fit", "--config", "shakespeare_char", "--data.init_args.download", "false", *QUICK], tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    (error,) = error_lines(result.stderr)
    assert "TinyShakespeareDataModule: data_dir must hold input.txt, got none in data/tinyshakespeare" in error
    assert "compute_fn" not in result.stderr and "Traceback" not in result.stderr


def test_the_recipe_for_your_own_texts_says_which_files_it_needs(tmp_path):
    result = cli(["fit", "--config", "text_classification", *QUICK], tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    (error,) = error_lines(result.stderr)
    assert "train_path must be an existing file or folder of your labelled texts, got 'data/train.csv'" in error
    assert "--data.init_args.train_path" in error


def test_a_failed_download_names_the_url_the_file_and_what_to_do_offline(tmp_path):
    url = (tmp_path / "nowhere" / "input.txt").as_uri()
    result = cli(["fit", "--config", "shakespeare_char", "--data.init_args.url", url, *QUICK], tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    (error,) = error_lines(result.stderr)
    target = os.path.join("data", "tinyshakespeare", "input.txt")
    assert f"could not fetch {url} to {target}" in error
    assert f"without network, fetch that file on another machine and put it at {target}" in error
    assert not (tmp_path / "data" / "tinyshakespeare" / "input.txt").exists()


def test_a_checkpoint_of_another_task_or_a_broken_one_is_refused_by_name(tmp_path):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"PK\x03\x04 not a whole checkpoint")
    result = cli(["validate", "--config", "quickstart", "--ckpt_path", str(broken)], tmp_path)
    assert result.returncode == 1
    (error,) = error_lines(result.stderr)
    assert f"{broken}" in error and "truncated or corrupt" in error

    # a classifier's checkpoint (as the CLI saves it, its class named) under a language model's config
    classifier = SequenceClassificationTask(num_classes=2, input_size=2, hidden_size=4, adapt_size=2)
    checkpoint = {"state_dict": classifier.state_dict(), "pytorch-lightning_version": "2.6.6",
                  "hyper_parameters": {"_class_path": "alstm_lightning.SequenceClassificationTask", **classifier.hparams}}
    torch.save(checkpoint, tmp_path / "classifier.ckpt")
    result = cli(["validate", "--config", "quickstart", "--ckpt_path", str(tmp_path / "classifier.ckpt")], tmp_path)
    assert result.returncode == 1
    (error,) = error_lines(result.stderr)
    assert "--ckpt_path must be a checkpoint of the config's model LanguageModelingTask, got a SequenceClassificationTask" in error
