r"""``LanguageModelingTask``: next-token prediction with truncated BPTT, the aLSTM paper's recipe.

The model (Flennerhag et al. 2018, language-modeling experiments, and the original code's model,
itself AWD-LSTM's, Merity et al. 2018):

    e = embedding_dropout(E, w)            # drop whole words from the table E: (V, E)
    x = locked_dropout(e)                  # one mask per sequence on the embedded input
    y, state = encoder(x, state)           # aLSTM (default), aRNN, LSTM or AWD-LSTM; y: (T, B, O)
    z = locked_dropout(y)                  # one mask per sequence on the encoder's output
    logits = W z + b                       # W is E when the weights are tied (O = E)

Training carries ``state`` from one window to the next, cut from the graph (truncated BPTT), and
takes each step with the learning rate scaled by ``T / bptt`` for windows of varying length T.
Evaluation carries the state through the whole split and reports total NLL / total tokens.
docs/language_modeling.md has the details: state per stage, the learning-rate scaling, the
test-time options, checkpoints and resuming.
"""

from __future__ import annotations

import os
from typing import Any, Literal, NamedTuple

import lightning as L
import torch
import torch.nn.functional as F
from lightning_utilities import apply_to_collection
from torch import Tensor, nn

from ..checks import (
    check_bool,
    check_choice,
    check_non_negative,
    check_non_negative_int,
    check_positive_int,
    check_probability,
    check_sampling,
    check_token_ids,
)
from ..data.language_modeling import PromptRequest, ScoreWindow
from ..data.vocab import Vocabulary
from ..layers import AdaptiveState, LockedDropout, embedding_dropout
from ..layers.policy import PolicyLayout
from .checkpoints import (
    DATA_KEY,
    RANDOM_STATE_KEY,
    check_checkpoint_file,
    check_same_data,
    is_fitting,
    load_init_weights,
    reload_random_state_mid_epoch,
    restore_checkpoint,
    save_random_state,
)
from .dynamic_evaluation import DYNAMIC_RULES, DynamicEvaluation, check_dynamic_settings
from .encoders import ENCODERS, EncoderName, make_encoder, warn_ignored_settings
from .metrics import LEVEL_METRICS, STAGES, language_model_metrics
from .neural_cache import NeuralCache, check_cache_settings
from .optimization import OptimizerName, check_optimization, configure_optimization

Level = Literal["word", "char"]
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
            for ``nn.LSTM``, or a list of per-layer ``(h, c)`` for the LSTM stacks), to continue from.
        output: the encoder's output after the output dropout, the decoder's input, ``(T, B, O)``.
        raw_output: the encoder's output before that dropout, ``(T, B, O)``.
    """

    logits: Tensor
    state: Any
    output: Tensor
    raw_output: Tensor


class LanguageModelingTask(L.LightningModule):
    """Embedding, recurrent encoder and (tied) decoder trained with truncated BPTT.

    Batches are ``(input, target)`` LongTensors shaped ``(T, B)`` (time-major), ``target`` the next
    token of ``input``, from consecutive windows over B contiguous streams, as the LM DataModules
    of :mod:`alstm_lightning.data` yield them; the state is carried from window to window. The
    defaults are the paper's Penn Treebank setup: a 2-layer aLSTM, 400 / 1150 / 100 units,
    Adam(0, 0.999) at 3e-3 cut by 10 at epochs 100 and 160.

    Logged: ``{train,val,test}/loss`` (mean NLL per token, nats; never the training objective of
    an overridden :meth:`loss`, which is logged as ``train/objective``) and ``/ppl`` (word level)
    or ``/bpc`` (char level), token-weighted. A checkpoint keeps the vocabulary (:attr:`vocab`), so
    ``load_from_checkpoint(path).generate_text("def ")`` needs nothing else, and a DataModule with
    another vocabulary is refused.

    Subclass hooks, one job each: :meth:`build_encoder`, :meth:`build_decoder`, :meth:`loss`,
    :meth:`regularization`. Pitfalls (state per stage, ``dropout``'s meaning per encoder, tied
    sizes, the test-time options): docs/language_modeling.md.

    Args:
        vocab_size: V, tokens in the vocabulary (linked from the DataModule's ``vocab_size``).
        level: ``"word"`` reports perplexity (``*/ppl``), ``"char"`` bits per character
            (``*/bpc``); linked from the DataModule's ``level``.
        encoder: ``"alstm"``, ``"arnn"``, ``"lstm"``, ``"lstm_proj"`` or ``"awd_lstm"`` (see
            :func:`~alstm_lightning.tasks.encoders.make_encoder`).
        embedding_size: E, width of the word embeddings.
        hidden_size: H, units of the encoder's layers (all but the last with tied weights).
        adapt_size: A, units of each aLSTM/aRNN layer's adaptation model (other encoders ignore it).
        num_layers: L, encoder layers.
        tie_weights: share the embedding table with the decoder (Press & Wolf 2017, Inan et al.
            2017); the encoder then outputs O = E, else O = H.
        embedding_dropout: probability of dropping a whole word from the embedding table.
        input_dropout: locked (variational) dropout on the embedded input.
        dropout: the encoder's own hidden dropout (aLSTM/aRNN: variational on every layer's
            ``h``; LSTMs: between layers; AWD-LSTM: locked, between layers, its ``dropouth``).
        adapt_dropout: the aLSTM/aRNN's variational dropout on the adaptation states.
        output_dropout: locked (variational) dropout on the encoder's output.
        ar_alpha: activation regularisation (Merity et al. 2018), ``alpha * mean(z**2)`` on the
            dropped output z; 0 turns it off.
        tar_beta: temporal activation regularisation, ``beta * mean((y_t - y_{t-1})**2)`` on the
            raw output y; 0 turns it off.
        policy_layout: the aLSTM/aRNN's ``"paper"`` or ``"reference"`` policy layout.
        bptt: the nominal window length that the learning rate is scaled against (linked from
            the DataModule's ``bptt``).
        lr: the base learning rate (Adam's or SGD's), finite and positive.
        betas: Adam's ``(beta1, beta2)``, each in ``[0, 1)``; the paper uses no momentum.
        eps: Adam's epsilon, positive.
        weight_decay: L2 penalty on every parameter (the optimizer's coupled ``weight_decay``).
        lr_milestones: strictly increasing epochs after which the learning rate is multiplied by ``lr_gamma``.
        lr_gamma: the factor of each cut, in ``(0, 1]``.
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
        TypeError, ValueError: for an argument of the wrong type or value, naming it.
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
        check_choice(owner, "level", level, tuple(LEVEL_METRICS))
        check_choice(owner, "encoder", encoder, ENCODERS)
        check_bool(owner, "tie_weights", tie_weights)
        for name, value in [
            ("embedding_dropout", embedding_dropout),
            ("input_dropout", input_dropout),
            ("dropout", dropout),
            ("adapt_dropout", adapt_dropout),
            ("output_dropout", output_dropout),
            ("weight_dropout", weight_dropout),
        ]:
            check_probability(owner, name, value)
        check_non_negative(owner, "ar_alpha", ar_alpha)
        check_non_negative(owner, "tar_beta", tar_beta)
        check_optimization(owner, optimizer, lr, weight_decay, betas, eps, lr_milestones, lr_gamma)
        if init_checkpoint is not None and not isinstance(init_checkpoint, str):
            raise TypeError(
                f"{owner}: init_checkpoint must be a str path or None, got {type(init_checkpoint).__name__} "
                f"({init_checkpoint!r})"
            )
        check_non_negative_int(owner, "cache_size", cache_size)
        check_cache_settings(owner, cache_theta, cache_lambda, "cache_theta", "cache_lambda")
        check_choice(owner, "dynamic_eval", dynamic_eval, ("off", *DYNAMIC_RULES))
        check_dynamic_settings(owner, dynamic_lr, dynamic_decay, "dynamic_lr", "dynamic_decay")
        warn_ignored_settings(
            owner, encoder, {"adapt_size": adapt_size, "adapt_dropout": adapt_dropout, "policy_layout": policy_layout},
            LanguageModelingTask.__init__,
        )
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

        # test-time options (docs/language_modeling.md). Scores of a model adapting to the test split
        # are logged as test/dynamic_*, the cache mixture's as test/cache_* (or test/dynamic_cache_*),
        # so that test/loss and test/ppl only ever mean static evaluation
        adapted = "dynamic_" if dynamic_eval != "off" else ""
        self.train_metrics = language_model_metrics(level, "train/")
        self.val_metrics = language_model_metrics(level, "val/")
        self.test_metrics = language_model_metrics(level, "test/", adapted)
        self.neural_cache = NeuralCache(cache_size, cache_theta, cache_lambda) if cache_size else None
        if self.neural_cache is not None:
            self.test_cache_metrics = language_model_metrics(level, "test/", f"{adapted}cache_")
        self.cache_size, self.cache_theta, self.cache_lambda = cache_size, cache_theta, cache_lambda
        self.dynamic_eval, self.dynamic_lr, self.dynamic_decay = dynamic_eval, dynamic_lr, dynamic_decay
        # built at each test epoch's start, from the weights then; None when dynamic_eval="off"
        self._dynamic: DynamicEvaluation | None = None

        #: the vocabulary the model reads and writes: the DataModule's (at setup) or the checkpoint's
        self.vocab: Vocabulary | None = None
        # per stage, the last window's final state, detached; None starts from zeros. The training
        # state a step started from is kept too: a checkpoint written by an exception inside the
        # step (before it finished) holds that one, so the step runs again from it on resume
        self._states: dict[str, Any] = dict.fromkeys((*STAGES, "predict"))
        self._state_at_step_start: Any = None
        self._window_length = bptt
        # whether the weights came from a checkpoint (restored, or init_checkpoint loaded): then
        # init_checkpoint is not loaded (again) when a fit starts
        self._weights_from_checkpoint = False
        # what on_train_start puts back when a fit resumes: the checkpoint's random and training states
        self._resume: dict[str, Any] | None = None
        # whether loss() is the default NLL (then the metrics' NLL is the objective, computed once)
        self._nll_is_the_objective = type(self).loss is LanguageModelingTask.loss

    @property
    def output_size(self) -> int:
        """O, the encoder's output width: ``embedding_size`` with tied weights, else ``hidden_size``."""
        return self.hparams.embedding_size if self.hparams.tie_weights else self.hparams.hidden_size

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> LanguageModelingTask:
        """Lightning's ``load_from_checkpoint``, refusing an unreadable file by its path first."""
        if isinstance(checkpoint_path, (str, os.PathLike)):
            check_checkpoint_file(cls.__name__, checkpoint_path)
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

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
        """The training objective: mean negative log-likelihood (nats) per token; ``logits: (T, B, V)``, ``target: (T, B)``.

        Override to train with another objective (label smoothing, ...); the logged ``loss``,
        ``ppl`` and ``bpc`` stay the model's NLL, and the objective is logged as ``train/objective``.
        """
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
            ValueError: if ``input`` is not 2-d or holds ids outside ``[0, vocab_size)``.
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

        The window's final state, cut from the graph, is the stage's next start.

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
        nll = F.cross_entropy(out.logits.flatten(0, 1), target.flatten())
        # token-weighted means: the epoch value is total NLL / total tokens, across processes too
        metrics = getattr(self, f"{stage}_metrics")
        metrics(nll.detach(), target.numel())
        self.log_dict(
            metrics, on_step=stage == "train", on_epoch=True, batch_size=target.size(1), prog_bar=stage != "test"
        )
        return nll, out

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """One step of truncated BPTT: continue from the previous window's state, minimise the loss + AR/TAR."""
        nll, out = self.shared_step(batch, "train")
        if self._nll_is_the_objective:
            return nll + self.regularization(out)
        objective = self.loss(out.logits, batch[1])
        self.log("train/objective", objective.detach(), on_step=True, on_epoch=True, batch_size=batch[1].size(1))
        return objective + self.regularization(out)

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
        self.test_cache_metrics(nll, target.numel())
        self.log_dict(self.test_cache_metrics, on_epoch=True, batch_size=target.size(1))

    def predict_step(self, batch: Tensor | PromptRequest | ScoreWindow, batch_idx: int = 0) -> Any:
        """Answer one predict item of a language-model DataModule, or score a plain batch.

        Args:
            batch: a :class:`~alstm_lightning.data.PromptRequest` (continue its text by sampling), a
                :class:`~alstm_lightning.data.ScoreWindow` (score a window of a text file, the state
                carried from the previous window), or token ids ``(T, B)`` with T >= 2, each column
                scored from a zero state.

        Returns:
            For a prompt, ``{"prompt": text, "continuation": text}``; for a window,
            ``{"offset": k, "tokens": [...], "log_probs": [...]}`` (``log p(token | everything
            before it)``, natural log); for ids, ``(T-1, B)`` log-probabilities of ``batch[1:]``.

        Raises:
            ValueError: for a plain batch of fewer than 2 steps.
            RuntimeError: for a prompt or window when the model has no vocabulary.
        """
        if isinstance(batch, PromptRequest):
            ids = self.generate(
                batch.ids.to(self.device),
                batch.max_new_tokens,
                batch.temperature,
                batch.top_k,
                generator=torch.Generator(device=self.device).manual_seed(batch.seed),
            )
            return {"prompt": batch.text, "continuation": self._require_vocab().decode(ids)}
        if isinstance(batch, ScoreWindow):
            vocab = self._require_vocab()
            out = self(batch.input, self._states["predict"])
            self._states["predict"] = out.state
            log_probs = out.logits.log_softmax(-1).gather(-1, batch.target.unsqueeze(-1)).flatten()  # (T,)
            return {
                "offset": batch.offset,
                "tokens": [vocab.itos[k] for k in batch.target.flatten().tolist()],
                "log_probs": log_probs.tolist(),
            }
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

    def on_predict_epoch_start(self) -> None:
        self._states["predict"] = None

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
        """Note the window length T, which scales the learning rate of this batch's step, and the state it starts from."""
        self._window_length = batch[0].size(0)
        self._state_at_step_start = self._states["train"]

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

    # ----------------------------------------------------------------------------- data, checkpoints
    def setup(self, stage: str) -> None:
        """Take the DataModule's vocabulary, or refuse it when it is not the one this model was trained on."""
        datamodule = getattr(self.trainer, "datamodule", None)
        current = getattr(datamodule, "vocab", None)
        if isinstance(current, Vocabulary):
            if self.vocab is None:
                self.vocab = current
            check_same_data(type(self).__name__, "vocabulary", self.vocab, current, self.vocab.difference(current))

    def on_fit_start(self) -> None:
        """Start from ``init_checkpoint``'s weights, unless this module's weights came from a checkpoint.

        Runs after Lightning has restored a ``ckpt_path`` given to ``fit`` (which calls
        :meth:`on_load_checkpoint`), so resuming keeps the resumed weights and never reads
        ``init_checkpoint``; so does a module made by ``load_from_checkpoint``.
        """
        if self.hparams.init_checkpoint is not None and not self._weights_from_checkpoint:
            self.load_init_checkpoint(self.hparams.init_checkpoint)

    def load_init_checkpoint(self, path: str) -> None:
        """Load the weights of a checkpoint of this architecture (:func:`~.checkpoints.load_init_weights`).

        With :class:`~alstm_lightning.NTASGD` or Lightning's ``WeightAveraging``, a checkpoint's
        ``state_dict`` holds the averaged weights, the ones that were validated.
        """
        load_init_weights(self, path, ARCHITECTURE_HPARAMS)
        self._weights_from_checkpoint = True

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the random generators' states, the truncated-BPTT training state and the vocabulary.

        So a fit resumed mid-epoch draws the same dropout masks and continues from the same hidden
        state, and the checkpoint alone can read and write text.
        """
        save_random_state(checkpoint)
        state = self._states["train"]
        if is_fitting(self):
            progress = self.trainer.fit_loop.epoch_loop.batch_progress.current
            if progress.started > progress.processed:  # saved from inside a step that did not finish
                state = self._state_at_step_start
        per_rank = self._trainer is not None and self.trainer.world_size > 1
        if per_rank and state is not None:
            # every process carries its own streams' state: keep them all, (W, B / W, ...) each (a collective:
            # every process saves the checkpoint's contents, rank 0 writes them)
            state = apply_to_collection(state, Tensor, self.all_gather)
        # plain tuples of tensors: Lightning loads checkpoints with torch.load(weights_only=True)
        checkpoint[TRAIN_STATE_KEY] = (
            None
            if state is None
            else {"adaptive": isinstance(state, AdaptiveState), "tensors": _plain(state), "per_rank": per_rank}
        )
        checkpoint[DATA_KEY] = {"vocabulary": None if self.vocab is None else self.vocab.to_dict()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of another architecture (:data:`ARCHITECTURE_HPARAMS`) or vocabulary;
        take its vocabulary; when a fit resumes, restore the random state and the truncated-BPTT
        training state (which matters mid-epoch only: every epoch starts from zeros).

        Raises:
            ValueError: naming each architecture hyperparameter that differs from the checkpoint's, or
                where the DataModule's vocabulary differs from the checkpoint's.
        """
        restore_checkpoint(self, checkpoint, ARCHITECTURE_HPARAMS)
        saved = checkpoint.get(DATA_KEY, {}).get("vocabulary")  # absent from checkpoints of earlier versions
        if saved is not None:
            saved = Vocabulary.from_dict(saved)
            if self.vocab is not None:
                check_same_data(type(self).__name__, "vocabulary", saved, self.vocab, saved.difference(self.vocab))
            self.vocab = saved
        self._weights_from_checkpoint = True
        if is_fitting(self):
            # for a mid-epoch resume, put back again in on_train_start (see there)
            self._resume = {key: checkpoint[key] for key in (RANDOM_STATE_KEY, TRAIN_STATE_KEY) if key in checkpoint}

    def on_train_start(self) -> None:
        """When a fit resumes mid-epoch, continue from the checkpoint's training and random states.

        The random state is put back once more (:func:`~.checkpoints.reload_random_state_mid_epoch`).
        The training state survives the resumed epoch's start (Lightning skips ``on_train_epoch_start``
        when it resumes mid-epoch); the next epoch starts from zeros as usual.
        """
        resume, self._resume = self._resume, None
        if not reload_random_state_mid_epoch(self, resume):
            return
        saved = resume[TRAIN_STATE_KEY] if TRAIN_STATE_KEY in resume else None
        if saved is not None:
            rank = self.trainer.global_rank
            own = (lambda t: t[rank].to(self.device)) if saved.get("per_rank") else (lambda t: t.to(self.device))
            tensors = apply_to_collection(saved["tensors"], Tensor, own)
            self._states["train"] = AdaptiveState(*tensors) if saved["adaptive"] else tensors

    # ----------------------------------------------------------------------------- sampling
    def _require_vocab(self) -> Vocabulary:
        if self.vocab is None:
            raise RuntimeError(
                f"{type(self).__name__}: reading or writing text needs the model's vocabulary, got none (a model "
                "gets it from its DataModule when a Trainer runs, or from a checkpoint of this version)"
            )
        return self.vocab

    def generate_text(
        self, prompt: str, max_new_tokens: int = 200, temperature: float = 1.0, top_k: int | None = None, seed: int = 0
    ) -> str:
        """Continue the text ``prompt`` by sampling, with the model's own vocabulary (see :meth:`generate`).

        Returns:
            The continuation only, as text.

        Raises:
            RuntimeError: when the model has no vocabulary (:attr:`vocab`).
            ValueError: for a prompt with tokens outside the vocabulary (when it has no ``<unk>``).
        """
        vocab = self._require_vocab()
        ids = vocab.encode(vocab.tokens(prompt), unknown="unk" if vocab.unk_token else "error")
        generator = torch.Generator(device=self.device).manual_seed(seed)
        return vocab.decode(self.generate(ids, max_new_tokens, temperature, top_k, generator=generator))

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
        check_sampling(owner, max_new_tokens, temperature, top_k)

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
