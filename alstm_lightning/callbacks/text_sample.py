"""Report a generated text sample and the final validation metrics when a language-model fit ends."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from ..checks import check_sampling


class TextSample(Callback):
    """At the end of ``fit``, sample a continuation of ``prompt`` and report it with ``val/*`` metrics.

    Needs a task with ``generate_text`` (e.g. :class:`~alstm_lightning.LanguageModelingTask`, which
    takes its vocabulary from the DataModule). Runs on global rank 0 only.

    Args:
        prompt: text to continue; at word level it is split on whitespace. Tokens outside the
            vocabulary map to ``<unk>`` where the vocabulary has one, else raise.
        max_new_tokens: how many tokens to sample.
        temperature: sampling temperature.
        top_k: sample among the k most likely tokens (all when ``None``).
        seed: seed of the sampling generator, so the sample is reproducible.
    """

    def __init__(
        self,
        prompt: str = "def ",
        max_new_tokens: int = 200,
        temperature: float = 0.8,
        top_k: int | None = None,
        seed: int = 0,
    ) -> None:
        check_sampling("TextSample", max_new_tokens, temperature, top_k)
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_k = top_k
        self.seed = seed
        self.sample: str | None = None

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        continuation = pl_module.generate_text(self.prompt, self.max_new_tokens, self.temperature, self.top_k, self.seed)
        self.sample = self.prompt + continuation if pl_module.vocab.level == "char" else f"{self.prompt} {continuation}"
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        summary = ", ".join(f"{k} = {v:.4f}" for k, v in sorted(metrics.items()))
        rank_zero_info(f"Final validation: {summary or 'not run'}\nSample:\n{self.sample}")
