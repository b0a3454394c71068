r"""``NTASGD``: non-monotonically triggered averaged SGD (Merity et al. 2018) as a Lightning callback.

NT-ASGD (Merity et al., "Regularizing and Optimizing LSTM Language Models", ICLR 2018, Section 3,
Algorithm 1) trains with plain SGD until the validation loss stops improving, then keeps taking
the same SGD steps while averaging the iterates; the average is the model it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from ..checks import check_bool, check_choice, check_non_negative_int


def nonmonotone_trigger(history: Sequence[float], current: float, nonmono: int) -> bool:
    """Whether the check with value ``current``, after the checks ``history`` (oldest first), starts averaging.

    True when more than ``nonmono`` checks precede it and ``current`` is worse (greater) than the
    best of all of them but the last ``nonmono``: ``t > n and v_t > min(v_0, ..., v_{t-n-1})``.
    """
    t = len(history)
    return t > nonmono and current > min(history[: t - nonmono])


class NTASGD(WeightAveraging):
    """Averages the weights once ``monitor`` stops improving; validates, saves and returns the average.

    **Trigger.** At validation check ``t`` (0-based, sanity checks excluded) with value ``v_t`` of
    ``monitor``, averaging starts when ``t > nonmono and v_t > min(v_0, ..., v_{t-nonmono-1})``: the
    loss is worse than the best one seen before the last ``nonmono`` checks (see
    :func:`nonmonotone_trigger`), so the earliest switch is at check ``nonmono + 1``. This is the
    condition of the ICLR paper and of the released AWD-LSTM code (``len(best_val_loss) > nonmono and
    val_loss > min(best_val_loss[:-nonmono])``). The first arXiv version of Algorithm 1 compared
    with the best of the *last* ``nonmono`` checks instead, which switches as soon as the loss fails
    to beat that recent best; the authors called that a typo (salesforce/awd-lstm-lm issue 13). The switch is irreversible. A
    check is one validation run: the Trainer's ``val_check_interval`` / ``check_val_every_n_epoch``
    are the paper's logging interval L.

    **Averaging.** Lightning's :class:`~lightning.pytorch.callbacks.WeightAveraging` keeps a
    ``torch.optim.swa_utils.AveragedModel`` (a copy of the module made when fit starts) with its
    default equal weights. At the switch, after
    optimizer step T, it is started with the current weights ``w_T``, then updated after every
    optimizer step, so it holds ``(w_T + ... + w_k) / (k - T + 1)`` as Algorithm 1 returns. The
    task's optimizer is left alone. (The AWD-LSTM code swapped SGD for ``torch.optim.ASGD(t0=0,
    lambd=0)``, which is SGD plus this average. Replacing the optimizer from a callback would drop
    its state and schedulers, and ``ASGD`` fixes its start ``t0`` when it is built.)

    **Where the average is used, once averaging has started:**

    * validation runs on it (swapped in for each validation epoch, swapped out after), so
      ``monitor``, ``ModelCheckpoint`` and ``EarlyStopping`` score the average;
    * a checkpoint's ``state_dict`` holds it, for ``load_from_checkpoint`` and
      ``trainer.test(ckpt_path=...)``; the SGD iterate is saved under ``"current_model_state"`` and
      the averaging state (``n_averaged``) under ``"averaging_state"``, and
      ``trainer.fit(ckpt_path=...)`` resumes both; the callback's own state (``losses``,
      ``switch_step``) goes through :meth:`state_dict`;
    * when training ends, the module's weights are the average.

    Before the switch nothing is swapped or replaced.

    **Fine-tuning** (AWD-LSTM's second stage, the authors' ``finetune.py``): ``start="fit"`` averages
    from the fit's first optimizer step, without waiting for the trigger, so the average is
    ``(w_1 + ... + w_k) / k`` as ``torch.optim.ASGD(t0=0, lambd=0)`` keeps it (the starting weights
    ``w_0`` are not in it); ``stop_on_trigger=True`` applies the same non-monotone test to the
    checks made on the average (the first after the switch is check 0) and stops the fit when it
    fires, as ``finetune.py`` ends.

    Args:
        monitor: a metric logged during validation (on epoch), lower is better.
        nonmono: n, the number of most recent checks left out of the comparison (5 in AWD-LSTM).
        device: where the average is kept (default: the module's device), as in ``WeightAveraging``.
        use_buffers: also average the buffers (e.g. batch-norm statistics), as in ``WeightAveraging``.
        start: ``"trigger"`` (NT-ASGD) or ``"fit"`` (average from the first step: fine-tuning).
        stop_on_trigger: once averaging, stop the fit when the trigger fires on the average's checks.

    Attributes:
        losses: the values of ``monitor`` at the checks before the switch, the switching one included.
        averaged_losses: the values of ``monitor`` at the checks after the switch (on the average).
        switch_step: ``trainer.global_step`` at the switch, T; ``None`` before it.

    Pitfalls:
        ``ModelCheckpoint(save_weights_only=True)`` skips callback hooks, so its files hold the SGD
        iterate although the score they were kept for measured the average. After training has
        ended the module holds the average, so a checkpoint saved then resumes from the average.
        Sharded strategies (FSDP, DeepSpeed) are not supported, as for ``WeightAveraging``.

    Example:
        >>> trainer = lightning.Trainer(callbacks=[NTASGD(monitor="val/loss", nonmono=5)])
        >>> finetune = NTASGD(monitor="val/loss", nonmono=5, start="fit", stop_on_trigger=True)
    """

    def __init__(
        self,
        monitor: str = "val/loss",
        nonmono: int = 5,
        device: torch.device | str | int | None = None,
        use_buffers: bool = True,
        start: Literal["trigger", "fit"] = "trigger",
        stop_on_trigger: bool = False,
    ) -> None:
        if not isinstance(monitor, str):
            raise TypeError(f"NTASGD: monitor must be a str, got {type(monitor).__name__} ({monitor!r})")
        check_non_negative_int("NTASGD", "nonmono", nonmono)
        check_choice("NTASGD", "start", start, ("trigger", "fit"))
        check_bool("NTASGD", "stop_on_trigger", stop_on_trigger)
        super().__init__(device=device, use_buffers=use_buffers)
        self.monitor = monitor
        self.nonmono = nonmono
        self.start = start
        self.stop_on_trigger = stop_on_trigger
        self.losses: list[float] = []
        self.averaged_losses: list[float] = []
        self.switch_step: int | None = None

    @property
    def averaging(self) -> bool:
        """Whether the switch has happened."""
        return self.switch_step is not None

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        """Update after every optimizer step past the switch; ``w_T`` itself is added at the switch.

        ``step_idx`` is ``trainer.global_step - 1``, so ``step_idx >= T`` means steps ``T+1, T+2, ...``.
        """
        return self.switch_step is not None and step_idx is not None and step_idx >= self.switch_step

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """With ``start="fit"``, average from the first optimizer step (after the sanity check)."""
        super().on_train_start(trainer, pl_module)
        if self.start == "fit" and not self.averaging:
            self.switch_step = trainer.global_step
            rank_zero_info(f"NTASGD: averaging from step {self.switch_step} (start='fit')")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record the check's ``monitor``; start averaging, or stop the fit, when the trigger fires."""
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        if self.averaging and not self.stop_on_trigger:
            return
        if self.monitor not in trainer.callback_metrics:
            raise ValueError(
                f"NTASGD: monitor must name a metric logged during validation, got {self.monitor!r} "
                f"(logged: {sorted(trainer.callback_metrics)})"
            )
        current = float(trainer.callback_metrics[self.monitor])
        history = self.averaged_losses if self.averaging else self.losses
        fired = trainer.strategy.reduce_boolean_decision(nonmonotone_trigger(history, current, self.nonmono), all=False)
        history.append(current)
        if self.averaging:
            if fired:
                trainer.should_stop = True
                rank_zero_info(
                    f"NTASGD: stopping: {self.monitor}={current:.4f} of the average is worse than the best of "
                    f"its checks before the last {self.nonmono}"
                )
            return
        if fired:
            self.switch_step = trainer.global_step
            # Algorithm 1 averages w_T, ..., w_k: the weights at the switch are the first term.
            self._average_model.update_parameters(pl_module)
            rank_zero_info(
                f"NTASGD: averaging from step {self.switch_step}: {self.monitor}={current:.4f} is worse than "
                f"the best of the checks before the last {self.nonmono}"
            )

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._averaging_in_fit(trainer):
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._averaging_in_fit(trainer):
            super().on_validation_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.averaging:
            super().on_train_end(trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._averaging_in_fit(trainer):
            super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Only a checkpoint saved after the switch holds an average; outside fit there is none to restore.
        if trainer.state.fn == TrainerFn.FITTING and "current_model_state" in checkpoint:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "losses": list(self.losses),
            "averaged_losses": list(self.averaged_losses),
            "switch_step": self.switch_step,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.losses = list(state_dict["losses"])
        self.averaged_losses = list(state_dict["averaged_losses"])
        self.switch_step = state_dict["switch_step"]

    def _averaging_in_fit(self, trainer: pl.Trainer) -> bool:
        return self.averaging and trainer.state.fn == TrainerFn.FITTING
