"""``AlstmCLI``: LightningCLI with our defaults, the data-to-task links, run directories and checkpoint rules."""

from __future__ import annotations

import json
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.strategies import DDPStrategy

from ..callbacks.checkpointing import AtomicCheckpointIO, Preemption, RunCheckpoint
from ..callbacks.predictions import PredictionWriter
from ..tasks.checkpoints import read_checkpoint
from .links import LINKED_DATA_ATTRIBUTES, LinkedArgumentsInstantiator, accepted_arguments, import_class, linked_value
from .runs import new_run_directory, run_directory_of

#: The root of the run directories unless ``--trainer.default_root_dir`` says otherwise.
DEFAULT_ROOT = "runs"
#: Seconds a process waits for the others in a collective before it fails (``--distributed_timeout``).
DEFAULT_DISTRIBUTED_TIMEOUT = 600.0


class LogConfigCallback(SaveConfigCallback):
    """Save the resolved config in the run's directory, and send it and the model size to the logger.

    A fit resumed in the directory of an earlier run keeps that run's ``config.yaml`` and writes
    its own as ``config.resume-<k>.yaml``.

    Args:
        run_directory: where the config goes (the CLI's run directory); ``None``: the Trainer's root.
        *args, **kwargs: those of ``SaveConfigCallback``.
    """

    def __init__(self, *args: Any, run_directory: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.run_directory = run_directory

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        directory = Path(trainer.strategy.broadcast(self.run_directory or trainer.default_root_dir))
        if trainer.is_global_zero:
            directory.mkdir(parents=True, exist_ok=True)
            path, k = directory / self.config_filename, 1
            while path.exists():
                path, k = directory / f"config.resume-{k}.yaml", k + 1
            self.parser.save(self.config, path, skip_none=False, overwrite=True, multifile=self.multifile)
        self.already_saved = True
        self.save_config(trainer, pl_module, stage)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if isinstance(trainer.logger, Logger):
            config = self.parser.dump(self.config, skip_none=False, format="json")
            trainer.logger.log_hyperparams(
                {
                    "config": json.loads(config),
                    "model/num_parameters": sum(p.numel() for p in pl_module.parameters()),
                }
            )


class AlstmCLI(LightningCLI):
    """LightningCLI with checkpoints you can trust, a learning-rate monitor, W&B logging (offline when no
    account is reachable), run directories with readable names, and data-to-task argument links.

    * **Runs** go to ``<default_root_dir>/<experiment>/version_<n>/`` (``--experiment``, default the
      recipe's file name), with the resolved ``config.yaml``, ``checkpoints/`` and the logger's files;
      a fit resumed from a run's checkpoint continues in that run's directory.
    * **Checkpoints** (:class:`~alstm_lightning.callbacks.RunCheckpoint`, ``--checkpoint.*``):
      ``best-*`` on ``val/loss``, ``last.ckpt`` at every epoch end, ``interrupted-*`` on Ctrl+C and
      SIGTERM, ``crashed-*`` on an exception; written atomically
      (:class:`~alstm_lightning.callbacks.AtomicCheckpointIO`).
    * **Preemption** (:class:`~alstm_lightning.callbacks.Preemption`): SIGTERM to any process stops
      every process at the same step with one checkpoint; the console script exits with 143.
    * **Distributed runs** fail, rather than wait for ever, when a process stops answering for
      ``--distributed_timeout`` seconds.
    * **Links**: the task's ``vocab_size``, ``level``, ``bptt``, ``input_size``, ``pad_index``,
      ``num_classes`` and ``objective`` come from the DataModule's attributes of those names.
    """

    def _add_instantiators(self) -> None:
        self.parser.add_instantiator(LinkedArgumentsInstantiator(cli=self, key="model"), LightningModule, subclasses=True)
        self.parser.add_instantiator(LinkedArgumentsInstantiator(cli=self, key="data"), LightningDataModule, subclasses=True)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--experiment",
            type=Optional[str],
            default=None,
            help="Name of the run directory <default_root_dir>/<experiment>/version_<n> (default: the config's file name)",
        )
        parser.add_argument(
            "--distributed_timeout",
            type=float,
            default=DEFAULT_DISTRIBUTED_TIMEOUT,
            help="Seconds a process of a distributed run waits for the others before it fails",
        )
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
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
        parser.add_lightning_class_args(Preemption, "preemption")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        for name in LINKED_DATA_ATTRIBUTES:
            parser.link_arguments(
                "data",
                f"model.init_args.{name}",
                compute_fn=lambda datamodule, name=name: linked_value(datamodule, name),
                apply_on="instantiate",
            )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then refuse an unreadable ``--ckpt_path`` or one of another task class, by name."""
        super().parse_arguments(parser, args)
        self._checkpoint: dict[str, Any] | None = None
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and ckpt_path not in ("last", "best", "hpc", "registry") and "://" not in str(ckpt_path):
            self._checkpoint = read_checkpoint(type(self).__name__, ckpt_path)
            _check_task_class(self.config[subcommand].model, self._checkpoint, ckpt_path)

    def _parse_ckpt_path(self) -> None:
        """LightningCLI puts a checkpoint's hyperparameters over the config; here also for a checkpoint saved
        without the CLI (a Trainer in Python), whose hyperparameters name no class and hold values our links set
        (``vocab_size``...), which are no keys of the parser: they are given as the config's class's."""
        hparams = dict((self._checkpoint or {}).get("hyper_parameters", {}))
        subcommand = self.config.get("subcommand")
        model = self.config[subcommand].get("model") if subcommand else None
        if not hparams or "_class_path" in hparams or getattr(model, "class_path", None) is None:
            super()._parse_ckpt_path()
            return
        hparams.pop("_instantiator", None)
        unknown = sorted(set(hparams) - accepted_arguments(import_class(model.class_path)))
        if unknown:
            raise ValueError(
                f"AlstmCLI: --ckpt_path must be a checkpoint of the config's model {model.class_path.rsplit('.', 1)[-1]}, "
                f"got one with hyperparameters it does not take, {unknown} (a checkpoint of another task?)"
            )
        given = {subcommand: {"model": {"class_path": model.class_path, "dict_kwargs": hparams}}}
        self.config = self.parser.parse_object(given, self.config)

    def before_instantiate_classes(self) -> None:
        """Choose the run directory and point the logger, the checkpoints and the predictions at it."""
        config = self.config[self.subcommand]
        root = Path(config.trainer.default_root_dir or DEFAULT_ROOT)
        experiment = config.experiment or _default_experiment(config)
        _check_writable("trainer.default_root_dir", root)
        resumed = run_directory_of(config.ckpt_path) if self.subcommand == "fit" and config.get("ckpt_path") else None
        directory = resumed if resumed is not None else new_run_directory(root, experiment)
        self.save_config_kwargs["run_directory"] = config.trainer.default_root_dir = str(directory)
        for logger in _logger_configs(config.trainer.logger):
            _place_logger(logger, root, experiment, directory)
        if config.checkpoint.dirpath is None:
            config.checkpoint.dirpath = str(directory / "checkpoints")
        if self.subcommand == "predict" and config.predictions.output is None:
            config.predictions.output = str(directory / "predictions.jsonl")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer, with atomic checkpoint writes, the distributed timeout, and no LR monitor without a logger."""
        trainer = super().instantiate_trainer(**kwargs)
        if not trainer.loggers:  # LearningRateMonitor refuses a Trainer without a logger
            trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, LearningRateMonitor)]
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        if isinstance(trainer.strategy, DDPStrategy):
            # set before the process group exists (fit's start); DDPStrategy keeps it in _timeout
            trainer.strategy._timeout = timedelta(seconds=self.config[self.subcommand].distributed_timeout)
        return trainer

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


def _default_experiment(config: Any) -> str:
    """The config file's name, else the task class's name."""
    for source in config.get("config") or ():
        if source is not None:
            return Path(str(source)).stem
    class_path = config.model.class_path if config.get("model") is not None else "run"
    return class_path.rsplit(".", 1)[-1]


def _logger_configs(logger: Any) -> list[Any]:
    """The ``class_path`` / ``init_args`` configs of the Trainer's logger setting (none for ``false``)."""
    if isinstance(logger, list):
        return [entry for entry in logger if hasattr(entry, "class_path")]
    return [logger] if hasattr(logger, "class_path") else []


def _place_logger(logger: Any, root: Path, experiment: str, directory: Path) -> None:
    """Point a logger config at the run directory, unless its own settings already say where."""
    cls = import_class(logger.class_path)
    args = logger.init_args
    if issubclass(cls, WandbLogger):
        if args.get("save_dir") in (None, ".", DEFAULT_ROOT):
            args.save_dir = str(directory)
        if args.get("name") is None:
            args.name = f"{experiment}/{directory.name}"
    elif "save_dir" in args and args.get("save_dir") in (None, ".", DEFAULT_ROOT, "lightning_logs"):
        args.save_dir = str(root)
        if "name" in args:
            args.name = experiment
        if "version" in args and args.get("version") is None:
            args.version = directory.name


def _check_task_class(model_config: Any, checkpoint: dict[str, Any], path: str) -> None:
    """Refuse a checkpoint whose task is not the config's (or a subclass of it), naming both."""
    saved = checkpoint.get("hyper_parameters", {}).get("_class_path")
    wanted = getattr(model_config, "class_path", None) if model_config is not None else None
    if saved is None or wanted is None or saved == wanted:
        return
    try:
        saved_class, wanted_class = (import_class(path_) for path_ in (saved, wanted))
    except (ImportError, AttributeError):
        return
    if not (issubclass(saved_class, wanted_class) or issubclass(wanted_class, saved_class)):
        raise ValueError(
            f"AlstmCLI: --ckpt_path must be a checkpoint of the config's model {wanted_class.__name__}, got a "
            f"{saved_class.__name__} checkpoint ({path}); use the config it was trained with (its run directory "
            "holds it as config.yaml)"
        )


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
