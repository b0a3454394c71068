"""The command lines README.md and the recipes' headers show, and how a journey test runs one as a user types it.

The commands are read from the documents themselves (README's ``bash`` blocks, the ``#   alstm-lightning``
lines of each recipe's header), so a command added to the docs is a command tested. Each runs in a
fresh-clone workspace (tests/journeys/conftest.py) with the recipe's model as written, shortened
by test-time limits only (:data:`SHORT`: a couple of batches). Commands that read a run's checkpoint
(``runs/<recipe>/version_0/...``) run after the fit that writes it. Two commands cannot run on one
CPU machine and are checked as far as they can be (their parsed config):
``--trainer.num_nodes 2`` needs a second machine.
"""

from __future__ import annotations

import glob
import json
import re
import shlex
from pathlib import Path

import torch

from .conftest import README, REPO, SHORT, cli

#: Commands of the documents that are not the console script's (README's test command runs this suite).
NOT_THE_CONSOLE_SCRIPT = {'pip install -e ".[test]" && python -m pytest -q'}
#: The benchmarks' commands: their short modes run in tests/test_benchmarks.py and tests/test_convergence_benchmark.py.
BENCHMARK_COMMANDS = ("python -m benchmarks.",)
#: Commands needing machines a test does not have: checked by parsing their config only.
PARSE_ONLY = ("--trainer.num_nodes 2",)


def documented_commands() -> list[tuple[str, str]]:
    """``(where, command)`` of every command line in README.md's ``bash`` blocks and in the recipes' headers."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        commands += [("README.md", line.strip()) for line in block.splitlines() if line.strip() and not line.startswith("#")]
    for recipe in sorted((REPO / "recipes").glob("*.yaml")):
        for line in recipe.read_text().splitlines():
            if not line.startswith("#"):
                break
            if line.lstrip("# ").startswith("alstm-lightning "):
                commands.append((f"recipes/{recipe.name}", line.lstrip("# ").strip()))
    return commands


def console_commands() -> list[tuple[str, str]]:
    """The documented commands of the console script, each once (the same words in two documents run once)."""
    seen, commands = set(), []
    for where, command in documented_commands():
        if command in NOT_THE_CONSOLE_SCRIPT or command.startswith(BENCHMARK_COMMANDS):
            continue
        words = " ".join(shlex.split(command.split("&&")[-1]))
        if words not in seen:
            seen.add(words)
            commands.append((where, command))
    return commands


COMMANDS = console_commands()
#: The commands around the quickstart (tests/journeys/test_documented_quickstart.py); the others run in
#: tests/journeys/test_documented_recipes.py, so that the two can run side by side.
QUICKSTART = [(where, command) for where, command in COMMANDS if "recipes/quickstart.yaml" in command or "runs/quickstart/" in command]


#: What each command printed, for the checks of the runs they left (the last tests here).
OUTPUTS: dict[str, object] = {}


def console_arguments(command: str, workspace: Path) -> list[str]:
    """The console script's arguments of a documented command: globs expanded as a shell would."""
    if "&&" in command:  # README's install-and-run line: the install has been done by the test setup
        command = command.split("&&")[-1].strip()
    words = shlex.split(command)
    assert words[0] == "alstm-lightning", command
    expanded = []
    for word in words[1:]:
        matches = sorted(glob.glob(word, root_dir=workspace)) if any(c in word for c in "*?[") and "/" in word else []
        expanded.append(matches[0] if matches else word)
    return expanded


def reads_of(arguments: list[str]) -> list[str]:
    """The runs a command reads (``runs/<name>/version_0/...`` in its arguments)."""
    return re.findall(r"runs/(\w+)/version_0/", " ".join(arguments))


def fitted(name: str, workspace: Path) -> Path:
    """``runs/<name>/version_0`` of the workspace, the first fit of recipe ``name``, fitted now if none ran yet."""
    run_directory = workspace / "runs" / name / "version_0"
    if not (run_directory / "checkpoints" / "last.ckpt").is_file():
        if name == "ptb_awd_lstm_finetune":  # its recipe starts from a ptb_awd_lstm run's weights
            fitted("ptb_awd_lstm", workspace)
        data = ["--data.init_args.train_path", "my/train.csv", "--data.init_args.val_path", "my/val.csv"]
        extra = data if name == "text_classification" else []
        result = cli(["fit", "--config", f"recipes/{name}.yaml", *extra, *SHORT["fit"]], workspace)
        assert result.returncode == 0, result.stderr[-4000:]
    assert (run_directory / "checkpoints" / "last.ckpt").is_file(), sorted(workspace.rglob("*.ckpt"))
    return run_directory


def run_documented(where: str, command: str, workspace: Path) -> None:
    """Run one documented command in the workspace, shortened, and check what the user sees."""
    arguments = console_arguments(command, workspace)
    subcommand = arguments[0]
    for name in reads_of(arguments):
        fitted(name, workspace)
    if any(marker in command for marker in PARSE_ONLY):
        result = cli([*arguments, "--print_config"], workspace)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "num_nodes: 2" in result.stdout and "devices: '8'" in result.stdout
        return
    before = set(workspace.glob("runs/*/version_*"))
    result = OUTPUTS[command] = cli([*arguments, *SHORT.get(subcommand, [])], workspace)
    assert result.returncode == 0, f"{where}: {command}\n{result.stderr[-4000:]}"
    assert "Traceback" not in result.stderr
    new_runs = sorted(set(workspace.glob("runs/*/version_*")) - before)
    if subcommand == "generate":
        prompt = arguments[arguments.index("--prompt") + 1]
        assert result.stdout.startswith(prompt) and len(result.stdout) > len(prompt) + 10
    elif subcommand == "predict":
        records = [json.loads(line) for run_dir in new_runs for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
        assert records, "predictions.jsonl holds the answers"
        expected = {"prompt", "continuation"} if "prompts" in command else ({"offset", "tokens", "log_probs"} if "predict_path my_script" in command else {"text", "label", "probabilities"})
        assert any(expected <= set(record) for record in records), records[:2]
    elif subcommand == "test":
        assert re.search(r"test/(ppl|bpc|loss|cache_ppl|dynamic_ppl)", result.stdout), result.stdout[-2000:]
    elif subcommand == "fit" and "--ckpt_path" in arguments:  # a resumed fit goes on in the run it resumes
        assert not new_runs and (fitted(reads_of(arguments)[0], workspace) / "config.resume-1.yaml").is_file()
    elif subcommand == "fit":
        (run_directory,) = new_runs
        assert (run_directory / "config.yaml").is_file()
        last = torch.load(run_directory / "checkpoints" / "last.ckpt", weights_only=True)
        assert last["state_dict"] and last["global_step"] > 0
