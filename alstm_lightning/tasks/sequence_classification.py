"""``SequenceClassificationTask``: classify or regress whole sequences (or every step) with an adaptive RNN."""

from __future__ import annotations

import os
import warnings
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torchmetrics import MeanSquaredError, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from ..checks import (
    check_bool,
    check_choice,
    check_int,
    check_positive_int,
    check_probability,
    check_token_ids,
)
from ..data.batching import TextBatch
from ..data.loading import IGNORE_INDEX
from ..data.tokenizers import TextEncoder
from ..layers.initialization import check_max_timescale, chrono_init_
from ..layers.policy import POLICY_LAYOUTS, PolicyLayout
from .checkpoints import (
    DATA_KEY,
    check_checkpoint_file,
    check_same_data,
    is_fitting,
    reload_random_state_mid_epoch,
    restore_checkpoint,
    save_random_state,
)
from .encoders import ENCODERS, EncoderName, make_encoder, warn_ignored_settings
from .optimization import check_optimization, configure_optimization

Pooling = Literal["last", "mean", "max", "none"]
Objective = Literal["classification", "regression"]
POOLINGS: tuple[str, ...] = ("last", "mean", "max", "none")
#: The encoders with a forget gate, which ``chrono_init`` applies to.
CHRONO_ENCODERS: tuple[str, ...] = ("alstm", "lstm", "lstm_proj")
OBJECTIVES: tuple[str, ...] = ("classification", "regression")
#: The hyperparameters that define the architecture: a checkpoint loads only into a model with the same.
ARCHITECTURE_HPARAMS: tuple[str, ...] = (
    "num_classes", "vocab_size", "input_size", "pad_index", "objective", "encoder", "embedding_size", "hidden_size",
    "adapt_size", "num_layers", "bidirectional", "policy_layout", "pooling",
)


class SequenceClassificationTask(L.LightningModule):
    r"""Sequence classification or regression: embed or read features, encode, pool over time, predict.

    For a batch ``(inputs, lengths, targets)`` (batch-first, padded):

    * ``x = Embedding(inputs)`` for token ids (``vocab_size`` set), else ``x = inputs``
      (``input_size`` set);
    * ``output = encoder(pack(x, lengths))``: the sequences go through the encoder as a
      ``PackedSequence``, so padding never reaches the recurrent state;
    * ``z = pool(output, lengths)`` over time: the ``"last"`` valid step, the masked ``"mean"``
      or ``"max"``, or ``"none"`` for one prediction per step;
    * ``y = Linear(Dropout(z))``, trained with cross-entropy (``num_classes > 1``) or mean
      squared error (``objective="regression"``, ``num_classes=1``).

    Pitfall, bidirectional ``"last"`` pooling: the reverse direction finishes at step 0, so the
    pooled vector is the forward direction's output at each sequence's last valid step
    concatenated with the reverse direction's output at step 0 — not ``output[:, length - 1]``.

    Per-step targets (e.g. the copy-memory task) are ``(B, T)`` class ids with ``-100`` on the
    steps that are not scored; they need ``pooling="none"``.

    Subclass hooks, one job each: :meth:`build_encoder`, :meth:`build_head`, :meth:`build_metrics`,
    :meth:`pool`, :meth:`loss`. One :meth:`shared_step` serves training, validation and test. A
    subclass may add constructor arguments: each argument here is checked where it enters.

    Logged: ``{train,val,test}/loss``; ``acc`` (accuracy) and ``f1`` (macro F1) for
    classification, ``mse`` for regression. With a text DataModule
    (:class:`~alstm_lightning.TextClassificationDataModule`) the checkpoint keeps the label names and
    the :class:`~alstm_lightning.data.TextEncoder`, so ``load_from_checkpoint(path).classify(["..."])``
    needs nothing else. :meth:`predict_step` returns class probabilities, or the predicted values for
    regression (labelled records for texts).

    Args:
        num_classes: C, classes to predict; ``1`` with ``objective="regression"``. Linked from the
            DataModule by the CLI.
        vocab_size: size of the token vocabulary when the inputs are token ids ``(B, T)``;
            exactly one of ``vocab_size`` and ``input_size`` is set. Linked from the DataModule.
        input_size: I, features per step when the inputs are floats ``(B, T, I)``. Linked from
            the DataModule.
        pad_index: the token id used for padding; its embedding is zero and receives no
            gradient. Only read with ``vocab_size``. Linked from the DataModule.
        objective: ``"classification"`` (cross-entropy) or ``"regression"`` (mean squared error of a
            single output). Linked from the DataModule.
        encoder: the recurrent encoder: ``"alstm"``, ``"arnn"``, ``"lstm"`` or ``"lstm_proj"`` (both
            ``torch.nn.LSTM`` here, every layer ``hidden_size`` wide), built by
            :func:`~alstm_lightning.tasks.encoders.make_encoder`.
        embedding_size: width of the token embedding (only with ``vocab_size``).
        hidden_size: H, units per layer and direction of the encoder.
        adapt_size: A, units of each layer's adaptation model (alstm / arnn only).
        num_layers: L, encoder layers.
        dropout: for alstm / arnn, one variational mask per sequence on every layer's ``h``; for
            lstm, ``torch.nn.LSTM``'s dropout between layers.
        adapt_dropout: variational dropout on the adaptation state ``a`` (alstm / arnn only).
        bidirectional: add a reverse direction; the pooled vector is then ``2*H`` wide.
        policy_layout: ``"paper"`` or ``"reference"`` split of the alstm / arnn policy.
        chrono_init: T_max, the longest dependency expected (in steps), to start the alstm / lstm
            encoder with chrono-initialised gate biases
            (:func:`~alstm_lightning.layers.initialization.chrono_init_`): much faster learning of
            long-range tasks such as the adding problem. ``None`` keeps the default initialisation.
        pooling: how the per-step outputs become one vector per sequence: ``"last"``,
            ``"mean"``, ``"max"`` (padding masked out), or ``"none"`` for per-step targets.
        head_dropout: drop probability before the output layer.
        class_weights: per-class weights of the cross-entropy, ``C`` non-negative numbers.
        label_smoothing: label smoothing of the cross-entropy, in ``[0, 1)``.
        lr: Adam learning rate, finite and positive.
        betas: Adam's ``(beta1, beta2)``, each in ``[0, 1)``.
        weight_decay: Adam's L2 penalty.
        lr_milestones: strictly increasing epochs at which the learning rate is multiplied by
            ``lr_gamma`` (``MultiStepLR``); ``None`` keeps it constant.
        lr_gamma: the factor applied at each of ``lr_milestones``, in ``(0, 1]``.
        task: deprecated name of ``objective`` (checkpoints of version 0.1 load through it).

    Raises:
        TypeError, ValueError: for an argument of the wrong type or value, or inconsistent
            arguments (both or neither of ``vocab_size`` and ``input_size``; regression with
            ``num_classes != 1``; ...), naming the argument.

    Example:
        >>> task = SequenceClassificationTask(num_classes=3, input_size=2, hidden_size=16, adapt_size=4)
        >>> logits = task(torch.randn(5, 7, 2), torch.tensor([7, 3, 5, 1, 2]))
        >>> logits.shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        num_classes: int,
        vocab_size: int | None = None,
        input_size: int | None = None,
        pad_index: int = 0,
        objective: Objective = "classification",
        encoder: EncoderName = "alstm",
        embedding_size: int = 64,
        hidden_size: int = 64,
        adapt_size: int = 16,
        num_layers: int = 1,
        dropout: float = 0.0,
        adapt_dropout: float = 0.0,
        bidirectional: bool = False,
        policy_layout: PolicyLayout = "paper",
        chrono_init: float | None = None,
        pooling: Pooling = "last",
        head_dropout: float = 0.0,
        class_weights: list[float] | None = None,
        label_smoothing: float = 0.0,
        lr: float = 3e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        lr_milestones: list[int] | None = None,
        lr_gamma: float = 0.1,
        task: Objective | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        if task is not None:
            warnings.warn(f"{owner}: task is deprecated, pass objective={task!r} instead", DeprecationWarning, stacklevel=2)
            objective = task
        check_choice(owner, "objective", objective, OBJECTIVES)
        check_choice(owner, "encoder", encoder, ENCODERS)
        check_choice(owner, "pooling", pooling, POOLINGS)
        check_choice(owner, "policy_layout", policy_layout, POLICY_LAYOUTS)
        for name, value in [
            ("num_classes", num_classes),
            ("embedding_size", embedding_size),
            ("hidden_size", hidden_size),
            ("adapt_size", adapt_size),
            ("num_layers", num_layers),
        ]:
            check_positive_int(owner, name, value)
        for name, value in [
            ("dropout", dropout),
            ("adapt_dropout", adapt_dropout),
            ("head_dropout", head_dropout),
            ("label_smoothing", label_smoothing),
        ]:
            check_probability(owner, name, value)
        check_bool(owner, "bidirectional", bidirectional)
        if chrono_init is not None:
            check_max_timescale(owner, "chrono_init", chrono_init)
            if encoder not in CHRONO_ENCODERS:
                raise ValueError(
                    f"{owner}: chrono_init needs a gated encoder with a forget gate, one of {CHRONO_ENCODERS}, "
                    f"got encoder={encoder!r}"
                )
        _check_inputs_kind(owner, vocab_size, input_size, pad_index)
        _check_objective(owner, objective, num_classes, pooling, class_weights, label_smoothing)
        check_optimization(owner, "adam", lr, weight_decay, betas, 1e-8, lr_milestones, lr_gamma)

        warn_ignored_settings(
            owner, encoder, {"adapt_size": adapt_size, "adapt_dropout": adapt_dropout, "policy_layout": policy_layout},
            SequenceClassificationTask.__init__,
        )
        self.save_hyperparameters(ignore=["task"])
        self.hparams.objective = objective
        if vocab_size is not None:
            self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=pad_index)
        self.encoder = self.build_encoder()
        if chrono_init is not None:
            chrono_init_(self.encoder, chrono_init)
        self.head = self.build_head()
        weights = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float)
        self.register_buffer("class_weights", weights)
        self.train_metrics = self.build_metrics("train/")
        self.val_metrics = self.build_metrics("val/")
        self.test_metrics = self.build_metrics("test/")
        #: raw text to ids, as the model was trained (from a text DataModule at setup, or from a checkpoint)
        self.text_encoder: TextEncoder | None = None
        #: the label of each class id, where the DataModule names them
        self.class_names: list[str] | None = None
        # the checkpoint a fit resumes from, for on_train_start
        self._resume: dict[str, Any] | None = None

    @property
    def num_directions(self) -> int:
        """D: 2 when bidirectional, else 1."""
        return 2 if self.hparams.bidirectional else 1

    @property
    def encoder_input_size(self) -> int:
        """The feature width the encoder reads: ``embedding_size`` for tokens, else ``input_size``."""
        hp = self.hparams
        return hp.embedding_size if hp.vocab_size is not None else hp.input_size

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> SequenceClassificationTask:
        """Lightning's ``load_from_checkpoint``, refusing an unreadable file by its path first."""
        if isinstance(checkpoint_path, (str, os.PathLike)):
            check_checkpoint_file(cls.__name__, checkpoint_path)
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    def build_encoder(self) -> nn.Module:
        """Override to use another encoder.

        Returns:
            A module called as ``encoder(packed) -> (packed_output, state)`` on a
            ``PackedSequence`` of ``encoder_input_size`` features, whose output is ``D*H`` wide
            with the reverse direction's ``H`` features last, like ``torch.nn.LSTM``.
        """
        hp = self.hparams
        return make_encoder(
            hp.encoder,
            self.encoder_input_size,
            hp.hidden_size,
            hp.adapt_size,
            num_layers=hp.num_layers,
            dropout=hp.dropout,
            adapt_dropout=hp.adapt_dropout,
            bidirectional=hp.bidirectional,
            policy_layout=hp.policy_layout,
        )

    def build_head(self) -> nn.Module:
        """Override to change the output layer: maps the pooled ``(..., D*H)`` to ``(..., C)``."""
        hp = self.hparams
        width = self.num_directions * hp.hidden_size
        return nn.Sequential(nn.Dropout(hp.head_dropout), nn.Linear(width, hp.num_classes))

    def build_metrics(self, prefix: str) -> MetricCollection:
        """Override to log other metrics: those of one split, their names prefixed by ``prefix`` (``"val/"``...).

        Each is updated with ``(outputs, targets)``: ``(N, C)`` logits and ``(N,)`` class ids (``-100``
        ignored), or ``(N,)`` predicted and target values for regression.
        """
        if self.hparams.objective == "regression":
            return MetricCollection({"mse": MeanSquaredError()}, prefix=prefix)
        num_classes = self.hparams.num_classes
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes, average="micro", ignore_index=IGNORE_INDEX),
                "f1": MulticlassF1Score(num_classes, average="macro", ignore_index=IGNORE_INDEX),
            },
            prefix=prefix,
        )

    def encode(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        """Embed (for token ids) and run the encoder over the packed batch.

        Args:
            inputs: ``(B, T)`` token ids or ``(B, T, I)`` features, padded.
            lengths: ``(B,)`` valid steps per sequence, on any device.

        Returns:
            ``(B, T, D*H)``, zero on padded steps.
        """
        x = self.embedding(inputs) if self.hparams.vocab_size is not None else inputs
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        output, _ = self.encoder(packed)
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=x.size(1))
        return output

    def pool(self, output: Tensor, lengths: Tensor) -> Tensor:
        """Override to pool differently: ``(B, T, D*H)`` per-step outputs to one vector per sequence.

        ``"last"`` takes each sequence's last valid step (for a bidirectional encoder: the forward
        half there and the reverse half at step 0, where that direction ends); ``"mean"`` and
        ``"max"`` ignore padded steps; ``"none"`` returns ``output`` unchanged.

        Args:
            output: ``(B, T, D*H)`` encoder outputs; padded steps hold anything.
            lengths: ``(B,)`` valid steps per sequence, on ``output``'s device.

        Returns:
            ``(B, D*H)``, or ``(B, T, D*H)`` for ``"none"``.
        """
        pooling = self.hparams.pooling
        if pooling == "none":
            return output
        if pooling == "last":
            rows = torch.arange(output.size(0), device=output.device)
            last = output[rows, lengths - 1]  # (B, D*H)
            if self.num_directions == 1:
                return last
            forward_size = output.size(-1) // 2
            return torch.cat([last[:, :forward_size], output[:, 0, forward_size:]], dim=-1)
        valid = (torch.arange(output.size(1), device=output.device) < lengths.unsqueeze(1)).unsqueeze(-1)  # (B, T, 1)
        if pooling == "mean":
            return output.masked_fill(~valid, 0.0).sum(1) / lengths.unsqueeze(1).to(output.dtype)
        return output.masked_fill(~valid, float("-inf")).amax(1)

    def forward(self, inputs: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Predict from a padded batch.

        Args:
            inputs: ``(B, T)`` token ids (with ``vocab_size``) or ``(B, T, I)`` features.
            lengths: ``(B,)`` integer valid steps per sequence, each in ``[1, T]``; ``None``
                means every sequence fills all ``T`` steps.

        Returns:
            Logits ``(B, C)`` (``(B, T, C)`` with ``pooling="none"``); for regression ``C = 1``.

        Raises:
            TypeError, ValueError: for inputs or lengths of the wrong kind or shape, token ids outside
                ``[0, vocab_size)``, or NaN / infinite features on valid steps (padded steps may hold
                anything).
        """
        self._check_inputs(inputs)
        if lengths is None:
            lengths = torch.full((inputs.size(0),), inputs.size(1), dtype=torch.long, device=inputs.device)
        self._check_lengths(lengths, inputs)
        self._check_values(inputs, lengths)
        output = self.encode(inputs, lengths)
        return self.head(self.pool(output, lengths.to(output.device)))

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Override to change the objective.

        Args:
            outputs: head outputs, ``(N, C)``: sequences, or unrolled steps with ``pooling="none"``.
            targets: ``(N,)`` class ids (``-100`` ignored) or, for regression, values.

        Returns:
            The scalar loss: cross-entropy with ``class_weights`` and ``label_smoothing``, or the
            mean squared error of ``outputs[:, 0]``.
        """
        if self.hparams.objective == "regression":
            return F.mse_loss(outputs.squeeze(-1), targets.to(outputs.dtype))
        return F.cross_entropy(
            outputs,
            targets,
            weight=self.class_weights,
            ignore_index=IGNORE_INDEX,
            label_smoothing=self.hparams.label_smoothing,
        )

    def shared_step(self, batch: tuple[Tensor, Tensor, Tensor], stage: str) -> Tensor:
        """Forward, loss, metrics and logging for one batch of ``stage`` (``"train"``, ``"val"``, ``"test"``)."""
        inputs, lengths, targets = batch
        self._check_targets(targets, inputs)
        outputs = self(inputs, lengths)
        outputs = outputs.flatten(0, -2)  # (N, C): N = B, or B*T for per-step targets
        targets = targets.flatten()
        loss = self.loss(outputs, targets)
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(outputs.squeeze(-1) if self.hparams.objective == "regression" else outputs, targets)
        batch_size = inputs.size(0)
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, batch_size=batch_size, prog_bar=True)
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=batch_size, prog_bar=stage == "val")
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        return self.shared_step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        return self.shared_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        return self.shared_step(batch, "test")

    def predict_step(self, batch: tuple[Tensor, ...] | TextBatch, batch_idx: int = 0) -> Any:
        """Class probabilities ``(B, C)`` (``(B, T, C)`` per step), or predicted values ``(B,)`` for regression.

        The batch is ``(inputs, lengths)`` or ``(inputs, lengths, targets)`` (targets unused), or a
        :class:`~alstm_lightning.data.TextBatch` of texts to classify: then one record per text,
        ``{"text": ..., "label": ..., "probabilities": {label: p}}`` (labels are the class names the
        checkpoint keeps, else the class ids).
        """
        outputs = self(batch[0], batch[1])
        if self.hparams.objective == "regression":
            values = outputs.squeeze(-1)
            return values if not isinstance(batch, TextBatch) else [
                {"text": text, "value": value} for text, value in zip(batch.texts, values.tolist())
            ]
        probabilities = outputs.softmax(-1)
        if not isinstance(batch, TextBatch):
            return probabilities
        return [self._labelled(text, row) for text, row in zip(batch.texts, probabilities.tolist())]

    def _labelled(self, text: str, probabilities: list[float]) -> dict[str, Any]:
        names = self.class_names or [str(k) for k in range(len(probabilities))]
        best = max(range(len(probabilities)), key=probabilities.__getitem__)
        return {"text": text, "label": names[best], "probabilities": dict(zip(names, probabilities))}

    @torch.no_grad()
    def classify(self, texts: list[str]) -> list[dict[str, Any]]:
        """Classify raw texts with the model's own text encoder (kept in its checkpoint), in eval mode.

        Returns:
            One ``{"text", "label", "probabilities"}`` record per text (see :meth:`predict_step`).

        Raises:
            RuntimeError: when the model has no text encoder (it was not trained on texts).
            ValueError: for a text without tokens.
        """
        if self.text_encoder is None:
            raise RuntimeError(
                f"{type(self).__name__}: classify needs the model's text encoder, got none (a model gets it from a "
                "TextClassificationDataModule when a Trainer runs, or from such a model's checkpoint)"
            )
        ids = [self.text_encoder.encode(text) for text in texts]
        if empty := [text for text, sequence in zip(texts, ids) if len(sequence) == 0]:
            raise ValueError(f"{type(self).__name__}.classify: texts must have at least one token, got none in {empty[:3]}")
        inputs = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=self.hparams.pad_index)
        lengths = torch.tensor([len(sequence) for sequence in ids])
        was_training = self.training
        self.eval()
        try:
            records = self.predict_step(TextBatch(inputs.to(self.device), lengths, list(texts)))
        finally:
            self.train(was_training)
        return records

    def configure_optimizers(self) -> dict[str, Any]:
        """Adam with learning-rate cuts at ``lr_milestones`` (none when ``None``)."""
        hp = self.hparams
        return configure_optimization(
            self.parameters(),
            "adam",
            hp.lr,
            hp.weight_decay,
            betas=hp.betas,
            lr_milestones=hp.lr_milestones,
            lr_gamma=hp.lr_gamma,
        )

    def setup(self, stage: str) -> None:
        """Take the DataModule's text encoder and class names, or refuse them when they are not this model's."""
        datamodule = getattr(self.trainer, "datamodule", None)
        encoder = getattr(datamodule, "text_encoder", None)
        names = getattr(datamodule, "class_names", None)
        self._adopt(encoder if isinstance(encoder, TextEncoder) else None, list(names) if names is not None else None)

    def _adopt(self, encoder: TextEncoder | None, names: list[str] | None) -> None:
        """Check ``encoder`` and ``names`` against the model's, then keep them where the model has none."""
        owner = type(self).__name__
        if encoder is not None and self.text_encoder is not None:
            check_same_data(owner, "vocabulary", self.text_encoder.vocab, encoder.vocab, self.text_encoder.vocab.difference(encoder.vocab))
            settings = {k: v for k, v in self.text_encoder.to_dict().items() if k != "vocab"}
            current = {k: v for k, v in encoder.to_dict().items() if k != "vocab"}
            check_same_data(owner, "tokenizer settings", settings, current, None if settings == current else f"{settings} vs {current}")
        if names is not None and self.class_names is not None:
            check_same_data(owner, "class names", self.class_names, names, None if names == self.class_names else f"{self.class_names} vs {names}")
        self.text_encoder = self.text_encoder or encoder
        self.class_names = self.class_names or names

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Add the random generators' states (a resumed fit draws the same dropout masks) and the data contract."""
        save_random_state(checkpoint)
        checkpoint[DATA_KEY] = {
            "text_encoder": None if self.text_encoder is None else self.text_encoder.to_dict(),
            "class_names": self.class_names,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse a checkpoint of another architecture (:data:`ARCHITECTURE_HPARAMS`), text encoder or labels;
        take its text encoder and labels; restore the random state when resuming."""
        hparams = checkpoint.get("hyper_parameters", {})
        if "task" in hparams and "objective" not in hparams:  # a checkpoint of version 0.1
            hparams["objective"] = hparams.pop("task")
        restore_checkpoint(self, checkpoint, ARCHITECTURE_HPARAMS)
        self._resume = checkpoint if is_fitting(self) else None
        saved = checkpoint.get(DATA_KEY, {})  # absent from checkpoints of earlier versions
        encoder = saved.get("text_encoder")
        own, self.text_encoder, own_names, self.class_names = self.text_encoder, None, self.class_names, None
        self._adopt(None if encoder is None else TextEncoder.from_dict(encoder), saved.get("class_names"))
        self._adopt(own, own_names)

    def on_train_start(self) -> None:
        """In a fit resumed mid-epoch, the checkpoint's random state again (see :func:`~.checkpoints.reload_random_state_mid_epoch`)."""
        resume, self._resume = self._resume, None
        reload_random_state_mid_epoch(self, resume)

    def _check_inputs(self, inputs: object) -> None:
        owner = type(self).__name__
        if not isinstance(inputs, Tensor):
            raise TypeError(f"{owner}: inputs must be a torch.Tensor, got {type(inputs).__name__}")
        hp = self.hparams
        if hp.vocab_size is not None:
            if inputs.dtype != torch.long or inputs.dim() != 2:
                raise ValueError(
                    f"{owner}: inputs must be (B, T) long token ids (vocab_size={hp.vocab_size}), "
                    f"got dtype {inputs.dtype} shape {tuple(inputs.shape)}"
                )
        elif not inputs.is_floating_point() or inputs.dim() != 3 or inputs.size(-1) != hp.input_size:
            raise ValueError(
                f"{owner}: inputs must be (B, T, {hp.input_size}) floats (input_size={hp.input_size}), "
                f"got dtype {inputs.dtype} shape {tuple(inputs.shape)}"
            )
        if inputs.size(0) == 0 or inputs.size(1) == 0:
            raise ValueError(f"{owner}: inputs must have B > 0 and T > 0, got shape {tuple(inputs.shape)}")

    def _check_lengths(self, lengths: object, inputs: Tensor) -> None:
        owner = type(self).__name__
        if not isinstance(lengths, Tensor) or lengths.is_floating_point() or lengths.dtype == torch.bool:
            raise TypeError(f"{owner}: lengths must be an integer torch.Tensor, got {_describe(lengths)}")
        if tuple(lengths.shape) != (inputs.size(0),):
            raise ValueError(
                f"{owner}: lengths shape must be ({inputs.size(0)},) (the batch size), got {tuple(lengths.shape)}"
            )
        low, high = int(lengths.min()), int(lengths.max())
        if low < 1 or high > inputs.size(1):
            raise ValueError(
                f"{owner}: lengths must be in [1, T={inputs.size(1)}], got values in [{low}, {high}]"
            )

    def _check_values(self, inputs: Tensor, lengths: Tensor) -> None:
        owner = type(self).__name__
        vocab_size = self.hparams.vocab_size
        if vocab_size is not None:
            check_token_ids(owner, "inputs", inputs, vocab_size)
            return
        valid = torch.arange(inputs.size(1), device=inputs.device) < lengths.to(inputs.device).unsqueeze(1)  # (B, T)
        # a NaN would spread through the recurrence and the loss into every weight at the next step
        bad = ~torch.isfinite(inputs[valid])  # (steps, I)
        if bad.any():
            raise ValueError(
                f"{owner}: inputs must be finite on the valid steps, got {int(bad.sum())} NaN or infinite values"
            )

    def _check_targets(self, targets: object, inputs: Tensor) -> None:
        owner = type(self).__name__
        if not isinstance(targets, Tensor):
            raise TypeError(f"{owner}: targets must be a torch.Tensor, got {type(targets).__name__}")
        per_step = self.hparams.pooling == "none"
        expected = tuple(inputs.shape[:2]) if per_step else (inputs.size(0),)
        if tuple(targets.shape) != expected:
            hint = " (per-step targets need pooling='none')" if targets.dim() == 2 and not per_step else ""
            raise ValueError(
                f"{owner}: targets shape must be {expected} with pooling={self.hparams.pooling!r}, "
                f"got {tuple(targets.shape)}{hint}"
            )
        if self.hparams.objective == "classification" and (targets.is_floating_point() or targets.dtype == torch.bool):
            raise TypeError(f"{owner}: targets must be integer class ids for classification, got dtype {targets.dtype}")
        if targets.is_floating_point() and not torch.isfinite(targets).all():
            raise ValueError(
                f"{owner}: targets must be finite, got {int((~torch.isfinite(targets)).sum())} NaN or infinite values"
            )


def _describe(value: object) -> str:
    """``Tensor(dtype)`` for a tensor, else the type name: for error messages."""
    return f"Tensor(dtype={value.dtype})" if isinstance(value, Tensor) else type(value).__name__


def _check_inputs_kind(owner: str, vocab_size: int | None, input_size: int | None, pad_index: int) -> None:
    """Exactly one of ``vocab_size`` (token ids, with a ``pad_index`` among them) and ``input_size`` (features)."""
    if (vocab_size is None) == (input_size is None):
        raise ValueError(
            f"{owner}: exactly one of vocab_size (token ids) and input_size (float features) must be set, "
            f"got vocab_size={vocab_size!r}, input_size={input_size!r}"
        )
    if vocab_size is None:
        check_positive_int(owner, "input_size", input_size)
        return
    check_positive_int(owner, "vocab_size", vocab_size)
    check_int(owner, "pad_index", pad_index)
    if not 0 <= pad_index < vocab_size:
        raise ValueError(f"{owner}: pad_index must be in [0, vocab_size={vocab_size}), got {pad_index}")


def _check_objective(
    owner: str,
    objective: str,
    num_classes: int,
    pooling: str,
    class_weights: list[float] | None,
    label_smoothing: float,
) -> None:
    """The settings that depend on the objective: one output for regression, per-class weights for classification."""
    if objective == "regression":
        if num_classes != 1:
            raise ValueError(f"{owner}: num_classes must be 1 with objective='regression', got {num_classes}")
        if pooling == "none":
            raise ValueError(
                f"{owner}: pooling must not be 'none' with objective='regression' (per-step targets are class ids)"
            )
        for name, value, default in [("class_weights", class_weights, None), ("label_smoothing", label_smoothing, 0.0)]:
            if value != default:
                raise ValueError(f"{owner}: {name} must be {default!r} with objective='regression', got {value!r}")
        return
    if num_classes < 2:
        raise ValueError(
            f"{owner}: num_classes must be at least 2 with objective='classification', got {num_classes} "
            "(use objective='regression' for a single output)"
        )
    if class_weights is not None and (len(class_weights) != num_classes or any(w < 0 for w in class_weights)):
        raise ValueError(
            f"{owner}: class_weights must be {num_classes} (num_classes) non-negative numbers, got {class_weights!r}"
        )
