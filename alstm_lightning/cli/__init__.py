"""The ``alstm-lightning`` console script: ``fit``/``validate``/``test``/``predict`` (LightningCLI) and ``generate``.

``alstm-lightning`` alone (or ``--help``) introduces itself and lists the shipped recipes;
``--config NAME`` takes a shipped recipe by name; errors are reported on one screen
(:mod:`.errors`); a fit stopped by SIGTERM exits with 143 after saving its checkpoint.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import warnings

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..callbacks.checkpointing import SIGTERM_EXIT_STATUS, Preemption, RunCheckpoint
from .app import DEFAULT_ROOT, AlstmCLI, LogConfigCallback
from .errors import TRACEBACK_VARIABLE, argument_error_message, show_tracebacks, user_error_message
from .generate import generate
from .recipes import recipe_summary, resolve_recipe_names, shipped_recipes
from .runs import remove_empty_runs

__all__ = ["AlstmCLI", "LogConfigCallback", "main"]

#: The subcommands and what each does, for the overview.
SUBCOMMANDS = {
    "fit": "train a model (validating as it goes) and checkpoint it",
    "validate": "score a checkpoint on the validation split",
    "test": "score a checkpoint on the test split",
    "predict": "write predictions of a checkpoint to the run's predictions.jsonl (prompts to continue or a "
    "file to score for a language model, texts to label for a classifier)",
    "generate": "sample text from a language-model checkpoint, needing nothing but the checkpoint",
}


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``alstm-lightning`` console script (``args`` default to ``sys.argv[1:]``).

    Exit status: 0 done, 1 an error in the settings or the data (reported in a few lines), 2 a
    command line the parser refuses, 143 stopped by SIGTERM after saving a checkpoint.
    """
    argv = sys.argv[1:] if args is None else list(args)
    # `--model my_module.MyTask` imports from the directory the user stands in, as `python -m` would
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if not argv or argv[0] in ("-h", "--help"):
        print(overview())
        return
    if argv[0] in ("--version", "-V"):
        from .. import __version__

        print(f"alstm-lightning {__version__}")
        return
    try:
        if argv[0] == "generate":
            print(generate(argv[1:]))
        else:
            _run_cli(resolve_recipe_names(argv))
    except argparse.ArgumentError as error:
        _fail(2, argument_error_message(str(error), _known_keys()))
    except SIGTERMException as stop:
        # Lightning stops on SIGTERM by raising SystemExit without a status, which exits with 0
        rank = os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))
        print(f"alstm-lightning: stopped by SIGTERM (rank {rank}); exit status {SIGTERM_EXIT_STATUS}", file=sys.stderr)
        raise SystemExit(SIGTERM_EXIT_STATUS) from stop
    except Exception as error:
        message = None if show_tracebacks() else (Preemption.stalled or user_error_message(error))
        if message is None:
            raise
        _fail(1, message)
    finally:
        _finish()


def _run_cli(argv: list[str]) -> None:
    # errors are raised to main(), which reports them; prefixes of options are not taken for them
    strict = {"exit_on_error": False, "allow_abbrev": False}
    with warnings.catch_warnings():
        # the arguments are given explicitly because main() resolved the recipe names in them
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        _alstm_cli(argv, strict)


def _alstm_cli(argv: list[str], strict: dict) -> None:
    AlstmCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=LogConfigCallback,
        seed_everything_default=0,
        parser_kwargs={**strict, **{name: dict(strict) for name in ("fit", "validate", "test", "predict")}},
        trainer_defaults={
            "logger": {
                "class_path": "alstm_lightning.loggers.AutoOfflineWandbLogger",
                "init_args": {"project": "alstm-lightning", "save_dir": DEFAULT_ROOT},
            },
            "default_root_dir": DEFAULT_ROOT,
            "gradient_clip_val": None,
        },
        args=argv,
    )


def _fail(status: int, message: str) -> None:
    hint = "" if show_tracebacks() else f"\n(set {TRACEBACK_VARIABLE}=1 to see the traceback)"
    print(f"alstm-lightning: error: {message}{hint if status == 1 else ''}", file=sys.stderr)
    raise SystemExit(status)


def _finish() -> None:
    """Close the W&B run (its files complete when we return) and remove a run directory nothing was written to."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()
    remove_empty_runs()


def _known_keys() -> list[str]:
    """The dotted keys a command line may set, for suggestions after a typo."""
    trainer = [f"trainer.{name}" for name in inspect.signature(Trainer.__init__).parameters if name != "self"]
    checkpoint = [f"checkpoint.{name}" for name in inspect.signature(RunCheckpoint.__mro__[1].__init__).parameters if name != "self"]
    return [*trainer, *checkpoint, "model", "data", "config", "experiment", "distributed_timeout", "seed_everything",
            "ckpt_path", "predictions.output", "print_config"]


def overview() -> str:
    """What ``alstm-lightning`` (or ``--help``) prints: the subcommands and the shipped recipes."""
    lines = [
        "usage: alstm-lightning {fit,validate,test,predict} --config RECIPE [--section.key VALUE ...]",
        "       alstm-lightning generate --ckpt_path CKPT --prompt TEXT [--max_new_tokens N] [--temperature T] "
        "[--top_k K] [--seed S]",
        "",
        "The adaptive LSTM (Flennerhag et al. 2018) as Lightning tasks: layers, language modeling, sequence",
        "classification. The first four subcommands are LightningCLI's: any setting of a config can be given on",
        "the command line, and `alstm-lightning fit --config RECIPE --help` lists them all.",
        "",
        "subcommands:",
        *(f"  {name:<9} {text}" for name, text in SUBCOMMANDS.items()),
        "",
        "shipped recipes (--config NAME, or the path of your own YAML):",
    ]
    recipes = shipped_recipes()
    width = max((len(name) for name in recipes), default=0)
    lines += [f"  {name:<{width}}  {recipe_summary(path)}" for name, path in recipes.items()] or ["  (none found)"]
    lines += [
        "",
        "options:",
        "  -h, --help     this overview",
        "  --version      the installed version",
        "",
        f"Runs are written to {DEFAULT_ROOT}/<experiment>/version_<n>/ (config.yaml, checkpoints/, logs);",
        "--experiment names them (default: the recipe). Resume a fit with --ckpt_path .../last.ckpt.",
        f"Errors are reported in a few lines; {TRACEBACK_VARIABLE}=1 shows the traceback.",
    ]
    return "\n".join(lines)
