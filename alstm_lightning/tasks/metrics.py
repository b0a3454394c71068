"""The tasks' metrics, as torchmetrics collections per stage: token-weighted NLL, perplexity and bits per character."""

from __future__ import annotations

import math

from torch import Tensor
from torchmetrics import MeanMetric, MetricCollection

#: Stages with metrics, and the prefix of their log keys (``train/loss``, ``val/ppl``, ...).
STAGES: tuple[str, ...] = ("train", "val", "test")


class Perplexity(MeanMetric):
    """``exp(total NLL / total tokens)`` from per-batch mean NLLs (nats) weighted by their token counts."""

    def compute(self) -> Tensor:
        return super().compute().exp()


class BitsPerCharacter(MeanMetric):
    """``total NLL / total tokens / ln 2`` from per-batch mean NLLs (nats) weighted by their token counts."""

    def compute(self) -> Tensor:
        return super().compute() / math.log(2.0)


#: Per token level, the name and class of the metric reported beside the loss.
LEVEL_METRICS: dict[str, tuple[str, type[MeanMetric]]] = {
    "word": ("ppl", Perplexity),
    "char": ("bpc", BitsPerCharacter),
}


def language_model_metrics(level: str, prefix: str, name_prefix: str = "") -> MetricCollection:
    """``{prefix}{name_prefix}loss`` (mean NLL per token, nats) and ``{prefix}{name_prefix}ppl`` or ``bpc``.

    Each is updated with ``(mean NLL of a batch, its token count)``, so the epoch value is total
    NLL over total tokens, across processes too.

    Args:
        level: ``"word"`` (perplexity) or ``"char"`` (bits per character).
        prefix: the stage's log prefix, e.g. ``"val/"``.
        name_prefix: put before each name, e.g. ``"dynamic_"`` for dynamic evaluation's scores.
    """
    metric_name, metric_class = LEVEL_METRICS[level]
    return MetricCollection(
        {f"{name_prefix}loss": MeanMetric(), f"{name_prefix}{metric_name}": metric_class()}, prefix=prefix
    )
