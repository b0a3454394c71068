r"""``LanguageModelingTask``: next-token prediction with truncated BPTT, the aLSTM paper's recipe.

The model (Flennerhag et al. 2018, language-modeling experiments, and the original code's model,
itself AWD-LSTM's, Merity et al. 2018):

    e = embedding_dropout(E, w)            # drop whole words from the table E: (V, E)
    x = locked_dropout(e)                  # one mask per sequence on the embedded input
    y, state = encoder(x, state)           # aLSTM (default), aRNN, nn.LSTM or AWD-LSTM; y: (T, B, O)
    z = locked_dropout(y)                  # one mask per sequence on the encoder's output
    logits = W z + b                       # W is E when the weights are tied (O = E)

Training carries ``state`` from one window to the next, cut from the graph (truncated BPTT), and
takes each step with the learning rate scaled by ``T / bptt`` for windows of varying length T.
Evaluation carries the state through the whole split (the DataModule's batch size 10 for
validation and 1 for test) and reports total NLL / total tokens.
"""

from __future__ import annotations

import math
import os
from typing import Any, Literal, NamedTuple

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from lightning_utilities import apply_to_collection
from torch import Tensor, nn
from torchmetrics import MeanMetric

from ..layers import AdaptiveState, LockedDropout, embedding_dropout
from ..layers.checks import (
    check_bool,
    check_choice,
    check_non_negative,
    check_non_negative_int,
    check_positive,
    check_positive_int,
    check_probability,
    check_token_ids,
)
from ..layers.policy import PolicyLayout
from .checkpoints import (
    RANDOM_STATE_KEY,
    check_compatible_hparams,
    load_random_state,
    restore_checkpoint,
    save_random_state,
)
from .dynamic_evaluation import DYNAMIC_RULES, DynamicEvaluation
from .encoders import ENCODERS, EncoderName, make_encoder
from .neural_cache import NeuralCache
from .optimization import OPTIMIZERS, OptimizerName, configure_optimization

Level = Literal["word", "char"]
STAGES: tuple[str, ...] = ("train", "val", "test")
#: the checkpoint key of the training stage's truncated-BPTT state
TRAIN_STATE_KEY = "truncated_bptt_train_state"
#: the hyperparameters that define the architecture: a checkpoint loads only into a model with the same
ARCHITECTURE_HPARAMS: tuple[str, ...] = (
    "vocab_size",
    "encoder",
    "embedding_size",
    "hidden_size",
    "adapt_size",
    "num_layers",
    "tie_weights",
    "policy_layout",
)
#: the ``__init__`` arguments that only ``test`` reads (kept out of ``hparams`` and checkpoints)
TEST_TIME_OPTIONS: tuple[str, ...] = (
    "cache_size",
    "cache_theta",
    "cache_lambda",
    "dynamic_eval",
    "dynamic_lr",
    "dynamic_decay",
)


def _plain(state: Any) -> Any:
    """``state`` with every named tuple (an :class:`~alstm_lightning.AdaptiveState`) turned into a plain tuple."""
    if isinstance(state, tuple):
        return tuple(_plain(item) for item in state)
    if isinstance(state, list):
        return [_plain(item) for item in state]
    return state


class LanguageModelOutput(NamedTuple):
    """What :meth:`LanguageModelingTask.forward` returns.

    Fields:
        logits: next-token scores, ``(T, B, V)``.
        state: the encoder's final state (an :class:`~alstm_lightning.AdaptiveState`, ``(h, c)``
            for ``nn.LSTM``, or a list of per-layer ``(h, c)`` for AWD-LSTM), to continue from.
        output: the encoder's output after the output dropout, the decoder's input, ``(T, B, O)``.
        raw_output: the encoder's output before that dropout, ``(T, B, O)``.
    """

    logits: Tensor
    state: Any
    output: Tensor
    raw_output: Tensor


class _Perplexity(MeanMetric):
    """``exp(total NLL / total tokens)`` from per-batch mean NLLs (nats) weighted by their token counts."""

    def compute(self) -> Tensor:
        return super().compute().exp()


class _BitsPerCharacter(MeanMetric):
    """``total NLL / total tokens / ln 2`` from per-batch mean NLLs (nats) weighted by their token counts."""

    def compute(self) -> Tensor:
        return super().compute() / math.log(2.0)


#: per level, the name and class of the metric reported beside the loss
_LEVEL_METRICS: dict[str, tuple[str, type[MeanMetric]]] = {
    "word": ("ppl", _Perplexity),
    "char": ("bpc", _BitsPerCharacter),
}


class LanguageModelingTask(L.LightningModule):
    """Embedding, recurrent encoder and (tied) decoder trained with truncated BPTT.

    Batches are ``(input, target)`` LongTensors shaped ``(T, B)`` (time-major), ``target`` the next
    token of ``input``, from consecutive windows over B contiguous streams, as the LM DataModules
    of :mod:`alstm_lightning.data` yield them. The defaults are the paper's Penn Treebank setup
    (original code's README): a 2-layer aLSTM, 400 / 1150 / 100 units, Adam(0, 0.999) at 3e-3 cut
    by 10 at epochs 100 and 160; gradient clipping at 5 is the Trainer's ``gradient_clip_val``.

    Pitfalls:
        * The hidden state is carried per stage (``train``, ``val``, ``test``) and reset at each
          epoch's start, so validation inside a training epoch leaves the training state alone.
          Every batch of a stage must have the same B, and only one validation loader is supported.
        * The learning rate is scaled by ``T / bptt`` during each optimizer step only; with
          gradient accumulation the last window's T sets the scale.
        * ``dropout`` is the encoder's own: variational on every layer's ``h`` (recurrent) for
          the aLSTM/aRNN, ordinary dropout between layers for ``nn.LSTM`` (see
          :func:`~alstm_lightning.tasks.encoders.make_encoder`).
        * With tied weights the aLSTM/aRNN's last layer has E units, so a 1-layer model never
          uses ``hidden_size``.
        * Metrics: ``{stage}/loss`` (mean NLL per token in nats, without AR/TAR) and
          ``{stage}/ppl`` or ``{stage}/bpc``, token-weighted. Training logs them per step and
          per epoch (Lightning adds ``_step`` / ``_epoch`` to the logger's keys); validation and
          test per epoch only, the value over the whole split, so ``val/loss`` and ``test/ppl``
          keep their names everywhere.
        * Test-time options (``test`` only; training and validation ignore them). They are not
          comparable to static evaluation, and their names say so: ``test/loss`` and
          ``test/ppl`` (``bpc``) are only ever the static model's score. ``cache_size > 0``
          mixes in the neural cache (Grave et al. 2017, :class:`~.neural_cache.NeuralCache`)
          and logs ``test/cache_loss`` and ``test/cache_ppl`` beside the static metrics.
          ``dynamic_eval`` adapts the weights to the test split as it is scored (Krause et al.
          2018, :class:`~.dynamic_evaluation.DynamicEvaluation`) and logs ``test/dynamic_loss``
          and ``test/dynamic_ppl`` *instead of* ``test/loss`` / ``test/ppl``; with both on, the
          mixture is ``test/dynamic_cache_*``. Dynamic evaluation needs
          ``Trainer(inference_mode=False)`` (CLI: ``--trainer.inference_mode false``), puts the
          weights back at the test epoch's end (an interrupted test leaves them adapted), and
          adapts one set of weights to all B test streams: the papers' protocol is B = 1
          (``test_batch_size=1``, the default). Under DDP each process adapts on its own streams.
          Both carry their memory (cache, adapted weights) across windows and start afresh at
          each test epoch's start; the window length (the DataModule's ``bptt``) sets how often
          dynamic evaluation steps (Krause et al. used 5) but does not change the cache's result.
          The options are attributes, not ``hparams``: checkpoints do not keep them, so each
          ``test --ckpt_path`` run takes them from its own command line (LightningCLI would
          otherwise put the checkpoint's hyperparameters over it).

    Subclass hooks: :meth:`build_encoder`, :meth:`build_decoder`, :meth:`loss`, :meth:`regularization`.

    Args:
        vocab_size: V, tokens in the vocabulary (linked from the DataModule's ``vocab_size``).
        level: ``"word"`` reports perplexity (``*/ppl``), ``"char"`` bits per character
            (``*/bpc``); linked from the DataModule's ``level``.
        encoder: ``"alstm"``, ``"arnn"``, ``"lstm"`` (``torch.nn.LSTM``; with tied weights
            and ``hidden_size > embedding_size`` its ``proj_size`` is ``embedding_size``) or
            ``"awd_lstm"`` (AWD-LSTM's stack of weight-dropped LSTMs, the last of O units).
        embedding_size: E, width of the word embeddings.
        hidden_size: H, units of the encoder's layers (all but the last for the aLSTM/aRNN).
        adapt_size: A, units of each aLSTM/aRNN layer's adaptation model (unused by ``"lstm"``).
        num_layers: L, encoder layers.
        tie_weights: share the embedding table with the decoder (Press & Wolf 2017, Inan et al.
            2017); the encoder then outputs O = E, else O = H.
        embedding_dropout: probability of dropping a whole word from the embedding table.
        input_dropout: locked (variational) dropout on the embedded input.
        dropout: the encoder's own hidden dropout (aLSTM/aRNN: variational on every layer's
            ``h``; ``nn.LSTM``: between layers; AWD-LSTM: locked, between layers, its ``dropouth``).
        adapt_dropout: the aLSTM/aRNN's variational dropout on the adaptation states.
        output_dropout: locked (variational) dropout on the encoder's output.
        ar_alpha: activation regularisation (Merity et al. 2018), ``alpha * mean(z**2)`` on the
            dropped output z; 0 turns it off.
        tar_beta: temporal activation regularisation, ``beta * mean((y_t - y_{t-1})**2)`` on the
            raw output y; 0 turns it off.
        policy_layout: the aLSTM/aRNN's ``"paper"`` or ``"reference"`` policy layout.
        bptt: the nominal window length that the learning rate is scaled against (linked from
            the DataModule's ``bptt``).
        lr: the base learning rate (Adam's or SGD's).
        betas: Adam's ``(beta1, beta2)``; the paper uses no momentum.
        eps: Adam's epsilon.
        weight_decay: L2 penalty on every parameter (the optimizer's coupled ``weight_decay``).
        lr_milestones: epochs after which the learning rate is multiplied by ``lr_gamma``.
        lr_gamma: the factor of each cut.
        weight_dropout: weight drop (DropConnect) on every recurrent matrix ``W_hh``, AWD-LSTM's
            ``wdrop``; ``"awd_lstm"`` only (must be 0 for the other encoders).
        optimizer: ``"adam"`` (``lr``, ``betas``, ``eps``, ``weight_decay``) or ``"sgd"``: plain SGD
            with ``lr`` and ``weight_decay`` only, as AWD-LSTM trains (no momentum; ``betas`` and
            ``eps`` unused).
        init_checkpoint: a checkpoint whose weights (``state_dict`` only) a fit starts from, the
            fine-tuning start; read when a fit starts, not here, and not when the fit resumes from
            a ``ckpt_path`` or the module came from ``load_from_checkpoint`` (see :meth:`on_fit_start`).
        cache_size: test only: the neural cache's length per stream (Grave et al. 2017); 0 turns
            it off. Defaults of the three: AWD-LSTM's Penn Treebank pointer values (Merity et al.
            2018), 500 / 0.662 / 0.1279; tune them on validation data for other models.
        cache_theta: test only: the flatness theta of the cache's attention, ``>= 0``.
        cache_lambda: test only: the cache's weight lambda in the mixture, in ``[0, 1)``.
        dynamic_eval: test only: ``"off"``, or dynamic evaluation (Krause et al. 2018) with the
            ``"sgd"`` or ``"rms"`` rule (see :class:`~.dynamic_evaluation.DynamicEvaluation`);
            needs ``Trainer(inference_mode=False)``.
        dynamic_lr: test only: dynamic evaluation's step size eta, ``>= 0``; the default is
            Krause et al.'s released ``"rms"`` setting for AWD-LSTM (windows of 5 tokens), and
            ``"sgd"`` needs a much larger one: tune it on validation data.
        dynamic_decay: test only: the pull lambda toward the trained weights, in ``[0, 1]``;
            the default is Krause et al.'s released setting, as for ``dynamic_lr``.

    Raises:
        TypeError, ValueError: for an argument of the wrong type or value.
    """

    def __init__(
        self,
        vocab_size: int,
        level: Level = "word",
        encoder: EncoderName = "alstm",
        embedding_size: int = 400,
        hidden_size: int = 1150,
        adapt_size: int = 100,
        num_layers: int = 2,
        tie_weights: bool = True,
        embedding_dropout: float = 0.16,
        input_dropout: float = 0.6,
        dropout: float = 0.25,
        adapt_dropout: float = 0.1,
        output_dropout: float = 0.6,
        ar_alpha: float = 0.0,
        tar_beta: float = 0.0,
        policy_layout: PolicyLayout = "paper",
        bptt: int = 70,
        lr: float = 3e-3,
        betas: tuple[float, float] = (0.0, 0.999),
        eps: float = 1e-9,
        weight_decay: float = 1e-6,
        lr_milestones: tuple[int, ...] = (100, 160),
        lr_gamma: float = 0.1,
        weight_dropout: float = 0.0,
        optimizer: OptimizerName = "adam",
        init_checkpoint: str | None = None,
        cache_size: int = 0,
        cache_theta: float = 0.662,
        cache_lambda: float = 0.1279,
        dynamic_eval: Literal["off", "sgd", "rms"] = "off",
        dynamic_lr: float = 5e-5,
        dynamic_decay: float = 0.002,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        for name, value in [
            ("vocab_size", vocab_size),
            ("embedding_size", embedding_size),
            ("hidden_size", hidden_size),
            ("adapt_size", adapt_size),
            ("num_layers", num_layers),
            ("bptt", bptt),
        ]:
            check_positive_int(owner, name, value)
        check_choice(owner, "level", level, tuple(_LEVEL_METRICS))
        check_choice(owner, "encoder", encoder, ENCODERS)
        check_bool(owner, "tie_weights", tie_weights)
        check_probability(owner, "embedding_dropout", embedding_dropout)
        for name, value in [
            ("ar_alpha", ar_alpha),
            ("tar_beta", tar_beta),
            ("cache_theta", cache_theta),
            ("dynamic_lr", dynamic_lr),
            ("dynamic_decay", dynamic_decay),
        ]:
            check_non_negative(owner, name, value)
        check_probability(owner, "weight_dropout", weight_dropout)
        if weight_dropout != 0.0 and encoder != "awd_lstm":
            raise ValueError(
                f"{owner}: weight_dropout must be 0 unless encoder='awd_lstm', got {weight_dropout} "
                f"with encoder={encoder!r}"
            )
        check_choice(owner, "optimizer", optimizer, OPTIMIZERS)
        if init_checkpoint is not None and not isinstance(init_checkpoint, str):
            raise TypeError(
                f"{owner}: init_checkpoint must be a str path or None, got {type(init_checkpoint).__name__} "
                f"({init_checkpoint!r})"
            )
        check_non_negative_int(owner, "cache_size", cache_size)
        check_probability(owner, "cache_lambda", cache_lambda)
        check_choice(owner, "dynamic_eval", dynamic_eval, ("off", *DYNAMIC_RULES))
        if dynamic_decay > 1:
            raise ValueError(f"{owner}: dynamic_decay must be in [0, 1], got {dynamic_decay}")
        # the test-time options are no property of the trained model: kept out of checkpoints, else
        # LightningCLI's `test --ckpt_path` would put the checkpoint's values over the command line's
        self.save_hyperparameters(ignore=list(TEST_TIME_OPTIONS))

        self.embedding = nn.Embedding(vocab_size, embedding_size)
        # as in the original code: small uniform embeddings, the tied decoder starting from them
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        self.input_dropout = LockedDropout(input_dropout)
        self.encoder = self.build_encoder()
        self.output_dropout = LockedDropout(output_dropout)
        self.decoder = self.build_decoder()

        metric_name, metric_class = _LEVEL_METRICS[level]
        # one collection per stage: train_metrics, val_metrics, test_metrics
        for stage in STAGES:
            setattr(self, f"{stage}_metrics", nn.ModuleDict({"loss": MeanMetric(), metric_name: metric_class()}))
        # per stage, the last window's final state, detached; None starts from zeros
        self._states: dict[str, Any] = dict.fromkeys(STAGES)
        self._window_length = bptt
        # whether the weights came from a checkpoint (restored, or init_checkpoint loaded): then
        # init_checkpoint is not loaded (again) when a fit starts
        self._weights_from_checkpoint = False
        # what on_train_start puts back when a fit resumes: the checkpoint's random and training states
        self._resume: dict[str, Any] | None = None
        # test-time options (see Pitfalls). Scores of a model adapting to the test split are
        # logged as test/dynamic_*, the cache mixture's as test/cache_* (or test/dynamic_cache_*),
        # so that test/loss and test/ppl only ever mean static evaluation
        adapted = "dynamic_" if dynamic_eval != "off" else ""
        if adapted:
            self.test_metrics = nn.ModuleDict({f"{adapted}{name}": m for name, m in self.test_metrics.items()})
        self.neural_cache = NeuralCache(cache_size, cache_theta, cache_lambda) if cache_size else None
        if self.neural_cache is not None:
            self.test_cache_metrics = nn.ModuleDict(
                {f"{adapted}cache_loss": MeanMetric(), f"{adapted}cache_{metric_name}": metric_class()}
            )
        self.cache_size, self.cache_theta, self.cache_lambda = cache_size, cache_theta, cache_lambda
        self.dynamic_eval, self.dynamic_lr, self.dynamic_decay = dynamic_eval, dynamic_lr, dynamic_decay
        # built at each test epoch's start, from the weights then; None when dynamic_eval="off"
        self._dynamic: DynamicEvaluation | None = None

    @property
    def output_size(self) -> int:
        """O, the encoder's output width: ``embedding_size`` with tied weights, else ``hidden_size``."""
        return self.hparams.embedding_size if self.hparams.tie_weights else self.hparams.hidden_size

    # ----------------------------------------------------------------------------- model hooks
    def build_encoder(self) -> nn.Module:
        """The recurrent encoder, ``forward(x: (T, B, E), hx) -> (y: (T, B, O), state)``.

        Override to use another recurrent module with that interface; its ``state`` may be any
        nest of tensors (it is detached between windows).
        """
        hp = self.hparams
        return make_encoder(
            hp.encoder,
            hp.embedding_size,
            hp.hidden_size,
            hp.adapt_size,
            output_size=self.output_size,
            num_layers=hp.num_layers,
            dropout=hp.dropout,
            adapt_dropout=hp.adapt_dropout,
            policy_layout=hp.policy_layout,
            weight_dropout=hp.weight_dropout,
        )

    def build_decoder(self) -> nn.Module:
        """The output layer ``(T, B, O) -> (T, B, V)``, bias zero; its weight is the embedding table when tied."""
        decoder = nn.Linear(self.output_size, self.hparams.vocab_size)
        nn.init.zeros_(decoder.bias)
        if self.hparams.tie_weights:
            decoder.weight = self.embedding.weight
        return decoder

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Mean negative log-likelihood (nats) per token; ``logits: (T, B, V)``, ``target: (T, B)``."""
        return F.cross_entropy(logits.flatten(0, 1), target.flatten())

    def regularization(self, out: LanguageModelOutput) -> Tensor:
        """AR on the dropped output plus TAR on the raw output's steps (Merity et al. 2018), a scalar."""
        hp = self.hparams
        penalty = hp.ar_alpha * out.output.pow(2).mean()
        if out.raw_output.size(0) > 1:
            penalty = penalty + hp.tar_beta * (out.raw_output[1:] - out.raw_output[:-1]).pow(2).mean()
        return penalty

    # ----------------------------------------------------------------------------- forward
    def forward(self, input: Tensor, hx: Any = None) -> LanguageModelOutput:
        """Score the next token at every position of ``input: (T, B)``, continuing from ``hx``.

        Args:
            input: token ids, ``(T, B)``.
            hx: the encoder's state to start from (zeros when ``None``).

        Returns:
            A :class:`LanguageModelOutput` with ``logits: (T, B, V)``.

        Raises:
            TypeError: if ``input`` is not an integer tensor.
            ValueError: if ``input`` is not 2-d.
        """
        owner = type(self).__name__
        if not isinstance(input, Tensor) or input.dtype not in (torch.int32, torch.int64):
            kind = f"dtype {input.dtype}" if isinstance(input, Tensor) else type(input).__name__
            raise TypeError(f"{owner}: input must be an integer tensor of token ids, got {kind}")
        if input.dim() != 2:
            raise ValueError(f"{owner}: input must have 2 dimensions (T, B), got shape {tuple(input.shape)}")
        check_token_ids(owner, "input", input, self.hparams.vocab_size)
        x = embedding_dropout(self.embedding, input, self.hparams.embedding_dropout, self.training)  # (T, B, E)
        x = self.input_dropout(x)
        raw_output, state = self.encoder(x, hx)  # (T, B, O)
        output = self.output_dropout(raw_output)
        return LanguageModelOutput(self.decoder(output), state, output, raw_output)

    # ----------------------------------------------------------------------------- steps
    def shared_step(self, batch: tuple[Tensor, Tensor], stage: str) -> tuple[Tensor, LanguageModelOutput]:
        """Predict one window's next tokens from the stage's carried state and log the stage's metrics.

        The window's final state is kept, cut from the graph, for the stage's next window.

        Returns:
            The mean NLL per token and the model's output.
        """
        input, target = batch
        if target.shape != input.shape:
            raise ValueError(
                f"{type(self).__name__}: a batch's target must have its input's shape {tuple(input.shape)}, "
                f"got {tuple(target.shape)}"
            )
        out = self(input, self._states[stage])
        self._states[stage] = apply_to_collection(out.state, Tensor, Tensor.detach)
        nll = self.loss(out.logits, target)
        # token-weighted means: the epoch value is total NLL / total tokens, across processes too
        for name, metric in getattr(self, f"{stage}_metrics").items():
            metric(nll.detach(), target.numel())
            self.log(f"{stage}/{name}", metric, on_step=stage == "train", on_epoch=True, batch_size=target.size(1))
        return nll, out

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """One step of truncated BPTT: continue from the previous window's state, minimise NLL + AR/TAR."""
        nll, out = self.shared_step(batch, "train")
        return nll + self.regularization(out)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.shared_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Score one test window: statically, or with dynamic evaluation and/or the neural cache.

        Dynamic evaluation scores the window first and updates the weights from its gradient
        after, so no token is scored by weights that have seen it. The cache scores the window
        with the model's output and the hidden states before that update.
        """
        if self._dynamic is None:
            _, out = self.shared_step(batch, "test")
        else:
            with torch.enable_grad():
                nll, out = self.shared_step(batch, "test")
                gradients = torch.autograd.grad(nll, self._dynamic.parameters, allow_unused=True)
            self._dynamic.step(gradients)
        if self.neural_cache is not None:
            self.cache_step(out, batch[1])

    def cache_step(self, out: LanguageModelOutput, target: Tensor) -> None:
        """Score a test window with the model mixed with the neural cache; log ``test/*cache_*``.

        Args:
            out: the model's output on the window (its raw output is the cache's ``h``).
            target: the window's next tokens, ``(T, B)``.
        """
        log_p = self.neural_cache(out.raw_output.detach(), target, out.logits.detach())  # (T, B)
        # reduced by nll_loss, as cross_entropy reduces the static loss: cache_lambda = 0 gives test/loss bit for bit
        nll = F.nll_loss(log_p.reshape(-1, 1), torch.zeros_like(target).flatten())
        for name, metric in self.test_cache_metrics.items():
            metric(nll, target.numel())
            self.log(f"test/{name}", metric, on_epoch=True, batch_size=target.size(1))

    def predict_step(self, batch: Tensor, batch_idx: int = 0) -> Tensor:
        """Per-token log-probabilities of B texts, each scored from a zero state.

        Args:
            batch: token ids, ``(T, B)`` with T >= 2.

        Returns:
            ``(T-1, B)``: ``log p(batch[t] | batch[:t])`` for t = 1 .. T-1.

        Raises:
            ValueError: if ``batch`` has fewer than 2 steps.
        """
        if batch.dim() != 2 or batch.size(0) < 2:
            raise ValueError(
                f"{type(self).__name__}: batch must be (T, B) token ids with T >= 2, got shape {tuple(batch.shape)}"
            )
        log_probs = self(batch[:-1]).logits.log_softmax(-1)  # (T-1, B, V)
        return log_probs.gather(-1, batch[1:].unsqueeze(-1)).squeeze(-1)

    # ----------------------------------------------------------------------------- state and lr
    def on_train_epoch_start(self) -> None:
        self._states["train"] = None

    def on_validation_epoch_start(self) -> None:
        self._states["val"] = None

    def on_test_epoch_start(self) -> None:
        """Start the test split afresh: zero state, empty cache, dynamic evaluation from the current weights.

        Raises:
            RuntimeError: with ``dynamic_eval`` on, if the test loop runs in inference mode.
        """
        self._states["test"] = None
        if self.neural_cache is not None:
            self.neural_cache.reset()
        if self.dynamic_eval != "off":
            if torch.is_inference_mode_enabled():
                raise RuntimeError(
                    f"{type(self).__name__}: the test loop must run without inference mode for "
                    f"dynamic_eval={self.dynamic_eval!r} (it takes gradient steps), got Trainer(inference_mode=True); "
                    f"create the Trainer with inference_mode=False (CLI: --trainer.inference_mode false)"
                )
            self._dynamic = DynamicEvaluation(self.parameters(), self.dynamic_eval, self.dynamic_lr, self.dynamic_decay)

    def on_test_epoch_end(self) -> None:
        """Put back the weights dynamic evaluation adapted (a test leaves the model as it found it); free the cache."""
        if self._dynamic is not None:
            self._dynamic.restore()
            self._dynamic = None
        if self.neural_cache is not None:
            self.neural_cache.reset()

    def on_train_batch_start(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Note the window length T, which scales the learning rate of this batch's step."""
        self._window_length = batch[0].size(0)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer, optimizer_closure=None) -> None:
        """Step with every group's learning rate scaled by ``T / bptt`` for this window only.

        Variable-length windows (the paper's setup, after Merity et al. 2018) would otherwise give
        short windows the weight of full ones. The scheduled rates are put back right after the
        step, so the LR scheduler never sees the scaling.
        """
        scale = self._window_length / self.hparams.bptt
        scheduled = [group["lr"] for group in optimizer.param_groups]
        for group, lr in zip(optimizer.param_groups, scheduled):
            group["lr"] = lr * scale
        try:
            super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        finally:
            for group, lr in zip(optimizer.param_groups, scheduled):
                group["lr"] = lr

    def configure_optimizers(self) -> dict[str, Any]:
        """Adam or plain SGD (coupled weight decay on every parameter), with learning-rate cuts at ``lr_milestones``."""
        hp = self.hparams
        return configure_optimization(
            self.parameters(),
            hp.optimizer,
            hp.lr,
            hp.weight_decay,
            betas=hp.betas,
            eps=hp.eps,
            lr_milestones=hp.lr_milestones,
            lr_gamma=hp.lr_gamma,
        )

    # ----------------------------------------------------------------------------- fine-tuning start
    def on_fit_start(self) -> None:
        """Start from ``init_checkpoint``'s weights, unless this module's weights came from a checkpoint.

        Runs after Lightning has restored a ``ckpt_path`` given to ``fit`` (which calls
        :meth:`on_load_checkpoint`), so resuming keeps the resumed weights and never reads
        ``init_checkpoint``; so does a module made by ``load_from_checkpoint``.
        """
        if self.hparams.init_checkpoint is not None and not self._weights_from_checkpoint:
            self.load_init_checkpoint(self.hparams.init_checkpoint)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the random generators' states and the truncated-BPTT training state, so that a fit
        resumed mid-epoch draws the same dropout masks and continues from the same hidden state."""
        save_random_state(checkpoint)
        state = self._states["train"]
        # plain tuples of tensors: Lightning loads checkpoints with torch.load(weights_only=True)
        checkpoint[TRAIN_STATE_KEY] = (
            None if state is None else {"adaptive": isinstance(state, AdaptiveState), "tensors": _plain(state)}
        )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of another architecture (:data:`ARCHITECTURE_HPARAMS`); when a fit resumes,
        restore the random state and the truncated-BPTT training state (which matters mid-epoch only:
        every epoch starts from zeros).

        Raises:
            ValueError: naming each architecture hyperparameter that differs from the checkpoint's.
        """
        restore_checkpoint(self, checkpoint, ARCHITECTURE_HPARAMS)
        self._weights_from_checkpoint = True
        if self._trainer is not None and self.trainer.state.fn == "fit":
            # for a mid-epoch resume, put back again in on_train_start (see there)
            self._resume = {key: checkpoint[key] for key in (RANDOM_STATE_KEY, TRAIN_STATE_KEY) if key in checkpoint}

    def on_train_start(self) -> None:
        """When a fit resumes mid-epoch, continue from the checkpoint's training and random states.

        The random state was put back when the checkpoint loaded; by now Lightning has built a new
        iterator over the training windows (each draws a seed from the global generator), which
        the uninterrupted fit did not do mid-epoch, so it is put back again. The training state
        survives the resumed epoch's start (Lightning skips ``on_train_epoch_start`` when it resumes
        mid-epoch); the next epoch starts from zeros as usual.
        """
        resume, self._resume = self._resume, None
        if resume is None or not self.trainer.fit_loop.restarted_mid_epoch:
            return
        load_random_state(resume)
        saved = resume[TRAIN_STATE_KEY] if TRAIN_STATE_KEY in resume else None
        if saved is not None:
            tensors = apply_to_collection(saved["tensors"], Tensor, Tensor.to, self.device)
            self._states["train"] = AdaptiveState(*tensors) if saved["adaptive"] else tensors

    def load_init_checkpoint(self, path: str) -> None:
        """Load the weights (the ``state_dict`` only: no optimizer, epoch or callback state) of a checkpoint.

        With :class:`~alstm_lightning.NTASGD` or Lightning's ``WeightAveraging``, a checkpoint's
        ``state_dict`` holds the averaged weights, the ones that were validated.

        Args:
            path: a local Lightning checkpoint of a model of this architecture.

        Raises:
            FileNotFoundError: if there is no file at ``path``.
            ValueError: if the file holds no ``state_dict``, parameters whose names or shapes differ
                from this module's (all of them are named), or architecture hyperparameters
                (:data:`ARCHITECTURE_HPARAMS`, e.g. ``policy_layout``) that differ from this module's.
        """
        owner = type(self).__name__
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{owner}: init_checkpoint must be an existing checkpoint file, got {path!r}")
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
            raise ValueError(f"{owner}: init_checkpoint must be a Lightning checkpoint with a state_dict, got {path!r}")
        if "hyper_parameters" in checkpoint:  # a checkpoint of the same parameter shapes may still differ
            check_compatible_hparams(owner, checkpoint["hyper_parameters"], self.hparams, ARCHITECTURE_HPARAMS)
        loaded, own = checkpoint["state_dict"], self.state_dict()
        problems = []
        if missing := sorted(own.keys() - loaded.keys()):
            problems.append(f"missing {missing}")
        if unexpected := sorted(loaded.keys() - own.keys()):
            problems.append(f"unexpected {unexpected}")
        if mismatched := [
            f"{name} {tuple(loaded[name].shape)} (model: {tuple(own[name].shape)})"
            for name in sorted(own.keys() & loaded.keys())
            if loaded[name].shape != own[name].shape
        ]:
            problems.append(f"shape mismatch {mismatched}")
        if problems:
            raise ValueError(
                f"{owner}: init_checkpoint must hold this model's parameters, got {path!r} with " + "; ".join(problems)
            )
        self.load_state_dict(loaded)
        self._weights_from_checkpoint = True
        rank_zero_info(f"{owner}: loaded the weights of init_checkpoint={path!r}")

    # ----------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def generate(
        self,
        prompt: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Sample a continuation of ``prompt`` token by token, in eval mode (no dropout).

        Args:
            prompt: token ids, ``(T,)`` with T >= 1.
            max_new_tokens: how many tokens to sample.
            temperature: divides the logits; below 1 sharpens, above 1 flattens.
            top_k: sample only among the k most likely tokens (all when ``None``; 1 is greedy).
            generator: the random generator (on the model's device) that makes sampling
                reproducible; the global one when ``None``.

        Returns:
            The sampled ids, ``(max_new_tokens,)``, without the prompt.

        Raises:
            TypeError, ValueError: for a wrong prompt or setting.
        """
        owner = f"{type(self).__name__}.generate"
        if not isinstance(prompt, Tensor) or prompt.dtype not in (torch.int32, torch.int64):
            kind = f"dtype {prompt.dtype}" if isinstance(prompt, Tensor) else type(prompt).__name__
            raise TypeError(f"{owner}: prompt must be an integer tensor of token ids, got {kind}")
        if prompt.dim() != 1 or prompt.numel() == 0:
            raise ValueError(f"{owner}: prompt must be a non-empty 1-d tensor, got shape {tuple(prompt.shape)}")
        check_token_ids(owner, "prompt", prompt, self.hparams.vocab_size)
        check_positive_int(owner, "max_new_tokens", max_new_tokens)
        check_positive(owner, "temperature", temperature)
        if top_k is not None:
            check_positive_int(owner, "top_k", top_k)

        was_training = self.training
        self.eval()
        try:
            ids, state, sampled = prompt.to(self.device).unsqueeze(1), None, []  # ids: (T, 1)
            for _ in range(max_new_tokens):
                out = self(ids, state)
                state = out.state
                logits = out.logits[-1, 0] / temperature  # (V,)
                if top_k is not None:
                    kth = logits.topk(min(top_k, logits.numel())).values[-1]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                ids = torch.multinomial(logits.softmax(-1), 1, generator=generator).unsqueeze(1)  # (1, 1)
                sampled.append(ids.view(1))
        finally:
            self.train(was_training)
        return torch.cat(sampled)
