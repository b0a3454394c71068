r"""``PolicyMonitor``: logs statistics of the aLSTM / aRNN adaptation policy during training.

Every ``every_n_steps`` optimizer steps the encoder is traced on the current training batch
(:func:`~alstm_lightning.layers.policy_trace.trace_policies`) and, per layer, direction and
sub-policy, the mean, the standard deviation and the share of saturated entries are logged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor, nn

from ..checks import check_fraction, check_positive_int
from ..layers.policy_trace import trace_policies
from ..layers.policy import unused_policy_fraction
from ..layers.stack import aLSTM, aRNN

EncoderInput = Callable[[pl.LightningModule, Any], Tensor]


def default_encoder_input(pl_module: pl.LightningModule, batch: Any) -> Tensor:
    """The encoder input of a batch: its first tensor, through ``pl_module.embedding`` when there is one.

    Fits batches that are a tensor or a tuple / list starting with the input (token ids with an
    ``embedding`` module, or features), as the tasks of :mod:`alstm_lightning.tasks` yield them.
    Padding is not removed: padded steps count in the statistics (return a ``PackedSequence``
    from your own ``encoder_input`` to leave them out).

    Raises:
        TypeError: if the batch's input is not a tensor.
    """
    input = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(input, Tensor):
        raise TypeError(
            "default_encoder_input: batch must be a tensor or a tuple/list starting with one, "
            f"got {type(input).__name__}; pass encoder_input=(pl_module, batch) -> input to PolicyMonitor"
        )
    embedding = getattr(pl_module, "embedding", None)
    return embedding(input) if isinstance(embedding, nn.Module) else input


class PolicyMonitor(pl.Callback):
    """Logs, every ``every_n_steps`` training steps, how the adaptation policy ``pi = tanh(P a)`` behaves.

    The encoder is traced in eval mode (no dropout mask is drawn, so training's random stream is
    untouched) from a zero state, on global rank zero only. For each layer ``l``, direction (suffix
    ``_reverse``) and sub-policy ``name`` in ``pi_x, pi_h, pi_i, pi_hh, pi_b`` it logs

    * ``policy/layer{l}/{name}/mean`` and ``.../std`` over all steps, rows and units;
    * ``policy/layer{l}/{name}/saturated``: the share of entries with ``|pi| >= saturation_threshold``,
      where ``tanh`` has nearly flat gradient and the policy acts as a fixed ±1 gate;
    * with ``policy_layout="reference"``, ``policy/layer{l}/unused``: the share of the projection's
      outputs that no sub-policy reads (:func:`~alstm_lightning.unused_policy_fraction`);

    to every logger of the Trainer, at ``step=trainer.global_step``, and, to a ``WandbLogger``, a
    histogram ``policy/layer{l}/{name}/histogram`` of the values.

    Args:
        every_n_steps: log when ``trainer.global_step`` is a multiple of it.
        saturation_threshold: ``|pi|`` at or above which an entry counts as saturated, in ``(0, 1)``.
        encoder: the dotted attribute name of the encoder inside the LightningModule (e.g.
            ``"encoder"``); by default its first submodule that is an ``aLSTM`` or ``aRNN``.
        encoder_input: ``(pl_module, batch) -> input`` giving what the encoder reads for a training
            batch; by default :func:`default_encoder_input`.

    Pitfalls:
        Tracing runs the per-step ``impl="naive"`` path over the whole batch, a forward's worth of
        time without the fused kernel: keep ``every_n_steps`` large for big batches.
    """

    def __init__(
        self,
        every_n_steps: int = 100,
        saturation_threshold: float = 0.95,
        encoder: str | None = None,
        encoder_input: EncoderInput = default_encoder_input,
    ) -> None:
        check_positive_int("PolicyMonitor", "every_n_steps", every_n_steps)
        check_fraction("PolicyMonitor", "saturation_threshold", saturation_threshold)
        if encoder is not None and not isinstance(encoder, str):
            raise TypeError(f"PolicyMonitor: encoder must be a str or None, got {type(encoder).__name__}")
        if not callable(encoder_input):
            raise TypeError(f"PolicyMonitor: encoder_input must be callable, got {type(encoder_input).__name__}")
        self.every_n_steps = every_n_steps
        self.saturation_threshold = float(saturation_threshold)
        self.encoder = encoder
        self.encoder_input = encoder_input
        self._logged_step: int | None = None

    def find_encoder(self, pl_module: pl.LightningModule) -> aLSTM | aRNN:
        """The encoder to trace: the submodule named ``encoder``, else the first aLSTM / aRNN.

        Raises:
            ValueError: if there is no such submodule.
            TypeError: if the named submodule is not an aLSTM or aRNN.
        """
        owner = type(pl_module).__name__
        if self.encoder is None:
            found = next((m for m in pl_module.modules() if isinstance(m, (aLSTM, aRNN))), None)
            if found is None:
                raise ValueError(f"PolicyMonitor: pl_module must contain an aLSTM or aRNN, got none in {owner}")
            return found
        try:
            module = pl_module.get_submodule(self.encoder)
        except AttributeError:
            raise ValueError(
                f"PolicyMonitor: encoder must name a submodule of {owner}, got {self.encoder!r}"
            ) from None
        if not isinstance(module, (aLSTM, aRNN)):
            raise TypeError(
                f"PolicyMonitor: encoder must name an aLSTM or aRNN, got {self.encoder!r} ({type(module).__name__})"
            )
        return module

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.find_encoder(pl_module)  # a wrong configuration fails before the first step, not at step N

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        # with gradient accumulation several batches end at the same step: log once
        if step % self.every_n_steps or step == self._logged_step or not trainer.is_global_zero:
            return
        self._logged_step = step
        encoder = self.find_encoder(pl_module)
        training = encoder.training
        encoder.eval()
        try:
            traced = trace_policies(encoder, self.encoder_input(pl_module, batch), split=True)
        finally:
            encoder.train(training)

        metrics: dict[str, float] = {}
        histograms: dict[str, Tensor] = {}
        directions = encoder.directions()
        cells = [direction.cell_layers[l] for l in range(encoder.num_layers) for direction in directions]
        for k, (sub_policies, cell) in enumerate(zip(traced, cells)):
            key = f"policy/layer{k // len(directions)}{directions[k % len(directions)].suffix}"
            for name, values in sub_policies._asdict().items():
                if values is None:
                    continue
                values = values.float()
                values = values[~values.isnan()]  # packed input: steps past a sequence's end
                metrics[f"{key}/{name}/mean"] = values.mean().item()
                metrics[f"{key}/{name}/std"] = values.std().item()
                metrics[f"{key}/{name}/saturated"] = (values.abs() >= self.saturation_threshold).float().mean().item()
                histograms[f"{key}/{name}/histogram"] = values
            if cell.policy_layout == "reference":
                metrics[f"{key}/unused"] = unused_policy_fraction(
                    cell.input_size, cell.hidden_size, cell.num_gates, cell.bias is not None, "reference"
                )
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
            if isinstance(logger, WandbLogger):
                import wandb  # only with a WandbLogger: importing wandb takes about a second

                logger.experiment.log(
                    {name: wandb.Histogram(v.flatten().cpu().numpy()) for name, v in histograms.items()}
                    | {"trainer/global_step": step}
                )
