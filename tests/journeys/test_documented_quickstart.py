"""README's commands around the quickstart, run as a user types them, and the runs they leave.

See tests/journeys/documented.py for how the commands are found and run.
"""

from __future__ import annotations

import glob
from pathlib import Path

import pytest

from .conftest import REPO
from .documented import COMMANDS, OUTPUTS, QUICKSTART, run_documented

@pytest.mark.slow
@pytest.mark.parametrize(("where", "command"), QUICKSTART, ids=[f"{w}:{c[:70]}" for w, c in QUICKSTART])
def test_documented_quickstart_command_runs(where, command, workspace):
    run_documented(where, command, workspace)


def test_every_documented_command_is_found():
    """The extraction sees the commands it must (a change of the docs' layout must not hide them)."""
    commands = [command for _, command in COMMANDS]
    assert any(c.startswith("pip install -e . && alstm-lightning fit --config recipes/quickstart.yaml") for c in commands)
    assert any("alstm-lightning generate" in c for c in commands)
    assert {Path(recipe).stem for recipe in glob.glob(str(REPO / "recipes" / "*.yaml"))} <= {
        Path(c.split("--config")[1].split()[0]).stem for c in commands if "--config" in c
    }, "every recipe is launched by at least one documented command"


def test_each_run_has_its_own_readable_directory_config_and_offline_wandb_run(workspace):
    """After the commands above: the quickstart's runs side by side, none overwriting another."""
    if not OUTPUTS:
        pytest.skip("runs after the documented commands (run the whole module)")
    runs = sorted((workspace / "runs" / "quickstart").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    assert len(runs) >= 5 and [r.name for r in runs] == [f"version_{k}" for k in range(len(runs))]
    assert all((run_dir / "config.yaml").is_file() for run_dir in runs)
    assert not (workspace / "runs" / "config.yaml").exists(), "no config shared by the runs"
    # version_0 holds the first fit's W&B run, and the run of the fit resumed from its checkpoint
    wandb_run = sorted((runs[0] / "wandb").glob("offline-run-*"))[0]
    records = b"".join(path.read_bytes() for path in wandb_run.glob("*.wandb"))
    for key in (b"PythonStdlibDataModule", b"LanguageModelingTask", b"model/num_parameters", b"val/bpc", b"train/loss", b"quickstart/version_0"):
        assert key in records, f"{key!r} missing from the W&B run"
    first = OUTPUTS['pip install -e . && alstm-lightning fit --config recipes/quickstart.yaml']
    printed = first.stdout + first.stderr
    assert "train/loss_step=" in printed and "train/bpc_step=" in printed, "the progress bar shows the loss and bpc"
    assert "Final validation: val/bpc = " in printed
    csv_runs = [r for r in runs if (r / "metrics.csv").is_file()]
    assert len(csv_runs) == 1 and "val/bpc" in (csv_runs[0] / "metrics.csv").read_text()
