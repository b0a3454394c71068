"""Parameter matching: exact parameter counts of language models, and the hidden size that meets a budget.

Comparisons of encoders are fair only at an equal parameter budget (the aLSTM paper compares at
about 17M parameters on Penn Treebank). :func:`count_parameters` counts a
:class:`~alstm_lightning.LanguageModelingTask` configuration exactly, by building the model on
``torch.device("meta")``: the real constructors (so one owner for every size, the encoders
themselves) with shapes but no memory, a few milliseconds even at the paper's sizes.
:func:`solve_hidden_size` finds the ``hidden_size`` whose count is closest to a target.

Example:
    >>> alstm = count_parameters(vocab_size=10_000, encoder="alstm", embedding_size=400, hidden_size=1150)
    >>> lstm = solve_hidden_size(alstm, encoder="lstm", vocab_size=10_000, embedding_size=400)
    >>> alstm, lstm.hidden_size, lstm.parameters
    (17197800, 1415, 17201420)
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import torch

from ..checks import check_choice, check_positive_int
from .encoders import ENCODERS, EncoderName
from .language_modeling import LanguageModelingTask


class SizingResult(NamedTuple):
    """What :func:`solve_hidden_size` found.

    Fields:
        encoder: the encoder solved for.
        hidden_size: the hidden size whose model's parameter count is closest to the target.
        parameters: that model's exact parameter count.
        target_parameters: the target.
        unit_step: how many parameters one more hidden unit adds, ``count(hidden_size + 1) -
            parameters``; the solver guarantees ``|parameters - target_parameters| <= unit_step / 2``
            (a model's count grows ever faster with the hidden size, so this step is at least the
            one below).
    """

    encoder: str
    hidden_size: int
    parameters: int
    target_parameters: int
    unit_step: int

    @property
    def relative_gap(self) -> float:
        """``(parameters - target_parameters) / target_parameters``."""
        return (self.parameters - self.target_parameters) / self.target_parameters


def count_parameters(**task_config: Any) -> int:
    """The exact number of parameters of ``LanguageModelingTask(**task_config)``, without allocating it.

    Counts what ``sum(p.numel() for p in LanguageModelingTask(**task_config).parameters())`` counts:
    embedding, encoder and decoder, the tied decoder weight once. The model is built on the meta
    device, so no weights are allocated or initialised.

    Args:
        **task_config: :class:`~alstm_lightning.LanguageModelingTask` arguments (``vocab_size``
            at least).

    Raises:
        TypeError, ValueError: as ``LanguageModelingTask`` raises for its arguments.
    """
    with torch.device("meta"):
        task = LanguageModelingTask(**task_config)
    return sum(p.numel() for p in task.parameters())


def solve_hidden_size(
    target_parameters: int, encoder: EncoderName = "lstm", **task_config: Any
) -> SizingResult:
    """The ``hidden_size`` whose language model's parameter count is closest to ``target_parameters``.

    Every other architecture argument is taken from ``task_config`` (the task's defaults where it
    is silent). The count grows with the hidden size, so a doubling search and a bisection find the
    first size at or above the target; the closer of it and the size below wins.

    Args:
        target_parameters: the parameter budget, e.g. another model's :func:`count_parameters`.
        encoder: any encoder of :data:`~alstm_lightning.tasks.encoders.ENCODERS`.
        **task_config: the other :class:`~alstm_lightning.LanguageModelingTask` arguments
            (``vocab_size`` at least; not ``hidden_size``, which is solved for).

    Returns:
        A :class:`SizingResult` with the exact counts.

    Raises:
        TypeError: for a non-int ``target_parameters``, a ``hidden_size`` in ``task_config``, or
            arguments ``LanguageModelingTask`` does not take.
        ValueError: for an unknown ``encoder``, a ``target_parameters`` below the smallest model's
            count, or a configuration whose count does not depend on ``hidden_size`` (one layer with
            tied weights: the only layer then has ``embedding_size`` units).
    """
    owner = "solve_hidden_size"
    check_positive_int(owner, "target_parameters", target_parameters)
    check_choice(owner, "encoder", encoder, ENCODERS)
    if "hidden_size" in task_config:
        raise TypeError(
            f"{owner}: task_config must not hold hidden_size (it is solved for), "
            f"got hidden_size={task_config['hidden_size']!r}"
        )
    counts: dict[int, int] = {}

    def count(hidden_size: int) -> int:
        if hidden_size not in counts:
            counts[hidden_size] = count_parameters(encoder=encoder, hidden_size=hidden_size, **task_config)
        return counts[hidden_size]

    smallest = _smallest_hidden_size(encoder, task_config)
    if count(smallest + 1) == count(smallest):
        raise ValueError(
            f"{owner}: the parameter count must depend on hidden_size, got the same count {count(smallest)} for "
            f"every hidden size with encoder={encoder!r} (one layer with tied weights has embedding_size units only)"
        )
    if target_parameters < count(smallest):
        raise ValueError(
            f"{owner}: target_parameters must be at least {count(smallest)}, the count at hidden_size={smallest} "
            f"with encoder={encoder!r}, got {target_parameters}"
        )
    low, high = smallest, smallest
    while count(high) < target_parameters:
        low, high = high, 2 * high
    while low < high:  # the first size whose count reaches the target
        middle = (low + high) // 2
        if count(middle) < target_parameters:
            low = middle + 1
        else:
            high = middle
    best = min((max(low - 1, smallest), low), key=lambda h: abs(count(h) - target_parameters))
    return SizingResult(encoder, best, count(best), target_parameters, count(best + 1) - count(best))


def _smallest_hidden_size(encoder: str, task_config: dict[str, Any]) -> int:
    """The smallest hidden size the task builds: 1, or the output size of a tied ``"lstm_proj"`` (it only narrows)."""
    if encoder != "lstm_proj":
        return 1
    arguments = inspect.signature(LanguageModelingTask).bind_partial(**task_config)
    arguments.apply_defaults()
    return arguments.arguments["embedding_size"] if arguments.arguments["tie_weights"] else 1
