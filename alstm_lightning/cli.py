"""The ``alstm-lightning`` console script: LightningCLI with our defaults and argument links."""

from __future__ import annotations

import inspect
import json
import signal
import tempfile
from pathlib import Path
from typing import Any

import wandb
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback, _InstantiatorFn
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import SIGTERMException

#: DataModule attributes passed to the task's ``__init__`` argument of the same name, when both exist.
LINKED_DATA_ATTRIBUTES = ("vocab_size", "level", "bptt", "input_size", "pad_index", "num_classes", "task")


class LogConfigCallback(SaveConfigCallback):
    """Save the resolved config to the log dir, and send it and the model size to the logger."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if isinstance(trainer.logger, Logger):
            config = self.parser.dump(self.config, skip_none=False, format="json")
            trainer.logger.log_hyperparams(
                {
                    "config": json.loads(config),
                    "model/num_parameters": sum(p.numel() for p in pl_module.parameters()),
                }
            )


class _LinkedArgumentsInstantiator(_InstantiatorFn):
    """Lightning's instantiator, recording only the linked values the class accepts.

    Every task receives the links of :data:`LINKED_DATA_ATTRIBUTES` that its ``__init__`` names;
    without this filter the others (e.g. ``level`` for a classification task) would land in its
    saved hyperparameters and break ``load_from_checkpoint``.
    """

    def __call__(self, class_type: type, *args: Any, applied_instantiation_links: dict, **kwargs: Any) -> Any:
        accepted = inspect.signature(class_type).parameters
        links = {k: v for k, v in applied_instantiation_links.items() if k.rsplit(".", 1)[-1] in accepted}
        return super().__call__(class_type, *args, applied_instantiation_links=links, **kwargs)


class AlstmCLI(LightningCLI):
    """LightningCLI with checkpointing on ``val/loss`` (best and last, and on any exception), a
    learning-rate monitor, W&B logging (offline when no account is reachable) and data-to-task
    argument links.

    An interrupted fit leaves a checkpoint to resume from (``--ckpt_path .../last.ckpt``): on
    Ctrl+C (KeyboardInterrupt) and on SIGTERM (Lightning finishes the current batch, then stops)
    the checkpoint callback's ``save_on_exception`` writes the current state and updates
    ``last.ckpt``. A fit whose log or checkpoint directory cannot be written fails before training.
    """

    def _add_instantiators(self) -> None:
        self.parser.add_instantiator(_LinkedArgumentsInstantiator(cli=self, key="model"), LightningModule, subclasses=True)
        self.parser.add_instantiator(_LinkedArgumentsInstantiator(cli=self, key="data"), LightningDataModule, subclasses=True)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/loss",
                "checkpoint.mode": "min",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{epoch}-{step}",
                "checkpoint.save_on_exception": True,
            }
        )
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        for name in LINKED_DATA_ATTRIBUTES:
            parser.link_arguments(
                "data",
                f"model.init_args.{name}",
                compute_fn=lambda datamodule, name=name: getattr(datamodule, name, None),
                apply_on="instantiate",
            )

    def before_fit(self) -> None:
        """Fail before training, not at the first save an epoch later, when an output directory is not writable."""
        trainer = self.trainer
        directories = {"trainer.default_root_dir": trainer.default_root_dir}
        for logger in trainer.loggers:
            if logger.save_dir is not None:
                directories[f"the save_dir of {type(logger).__name__}"] = logger.save_dir
        for callback in trainer.checkpoint_callbacks:
            if getattr(callback, "dirpath", None) is not None:
                directories["checkpoint.dirpath"] = callback.dirpath
        for name, directory in directories.items():
            _check_writable(name, directory)


def _check_writable(name: str, directory: str | Path) -> None:
    """Raise unless ``directory``, or the nearest of its parents that exists, is a directory we can write a file to.

    Remote paths (``s3://...``) are left to their filesystem.
    """
    if "://" in str(directory):
        return
    path = Path(directory).absolute()
    existing = next(parent for parent in (path, *path.parents) if parent.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is a file")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise ValueError(
            f"{AlstmCLI.__name__}: {name} must be a writable directory, got {str(directory)!r} "
            f"({type(error).__name__}: {error})"
        ) from error


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``alstm-lightning`` console script (``args`` default to ``sys.argv``).

    A fit stopped by SIGTERM exits with status 143 (128 + SIGTERM) after saving its checkpoint, so a
    job scheduler never takes it for a finished run.
    """
    try:
        _run_cli(args)
    except SIGTERMException as stop:
        # Lightning stops on SIGTERM by raising SystemExit without a status, which exits with 0
        raise SystemExit(128 + signal.SIGTERM) from stop


def _run_cli(args: list[str] | None) -> None:
    AlstmCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=LogConfigCallback,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,
        trainer_defaults={
            "logger": {
                "class_path": "alstm_lightning.loggers.AutoOfflineWandbLogger",
                "init_args": {"project": "alstm-lightning", "save_dir": "runs"},
            },
            "default_root_dir": "runs",
            "gradient_clip_val": None,
        },
        args=args,
    )
    # Close the W&B run here rather than in an exit hook, so its files are complete when we return.
    if wandb.run is not None:
        wandb.finish()


if __name__ == "__main__":
    main()
