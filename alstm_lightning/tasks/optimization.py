"""The tasks' optimizer and learning-rate schedule: their argument checks and what ``configure_optimizers`` returns."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch
from torch import nn

from ..checks import check_choice, check_in_interval, check_int, check_non_negative, check_positive

OptimizerName = Literal["adam", "sgd"]
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")


def check_optimization(
    owner: str,
    optimizer: str,
    lr: float,
    weight_decay: float,
    betas: Sequence[float],
    eps: float,
    lr_milestones: Sequence[int] | None,
    lr_gamma: float,
) -> None:
    """Check a task's optimizer and schedule arguments where they enter (its ``__init__``), by their names.

    Rules: ``optimizer`` one of :data:`OPTIMIZERS`; ``lr`` finite and positive; ``weight_decay``
    finite and non-negative; ``betas`` two numbers in ``[0, 1)``; ``eps`` finite and positive;
    ``lr_milestones`` strictly increasing positive epochs (or ``None``); ``lr_gamma`` in ``(0, 1]``.

    Raises:
        TypeError, ValueError: naming the argument, the expected and the actual value.
    """
    check_choice(owner, "optimizer", optimizer, OPTIMIZERS)
    check_positive(owner, "lr", lr)
    check_non_negative(owner, "weight_decay", weight_decay)
    if isinstance(betas, (str, bytes)) or not isinstance(betas, Sequence) or len(betas) != 2:
        raise ValueError(f"{owner}: betas must be two numbers in [0, 1), got {betas!r}")
    for beta in betas:
        try:
            check_in_interval(owner, "betas", beta, 0.0, 1.0, closed="left")
        except (TypeError, ValueError):
            raise ValueError(f"{owner}: betas must be two numbers in [0, 1), got {betas!r}") from None
    check_positive(owner, "eps", eps)
    if lr_milestones is not None:
        if isinstance(lr_milestones, (str, bytes)) or not isinstance(lr_milestones, Sequence):
            raise TypeError(f"{owner}: lr_milestones must be a list of ints (epochs), got {lr_milestones!r}")
        for milestone in lr_milestones:
            try:
                check_int(owner, "lr_milestones", milestone)
            except TypeError:
                raise TypeError(f"{owner}: lr_milestones must be a list of ints (epochs), got {lr_milestones!r}") from None
        if list(lr_milestones) != sorted(set(lr_milestones)) or any(m < 1 for m in lr_milestones):
            raise ValueError(f"{owner}: lr_milestones must be strictly increasing positive epochs, got {lr_milestones!r}")
    check_in_interval(owner, "lr_gamma", lr_gamma, 0.0, 1.0, closed="right")


def configure_optimization(
    parameters: Iterable[nn.Parameter],
    optimizer: OptimizerName,
    lr: float,
    weight_decay: float,
    betas: Sequence[float] = (0.9, 0.999),
    eps: float = 1e-8,
    lr_milestones: Sequence[int] | None = (),
    lr_gamma: float = 0.1,
) -> dict[str, Any]:
    """Adam or plain SGD with coupled weight decay, the learning rate cut by ``lr_gamma`` after each milestone epoch.

    The arguments are those :func:`check_optimization` checks.

    Args:
        parameters: what to optimise.
        optimizer: ``"adam"`` (``lr``, ``betas``, ``eps``, ``weight_decay``) or ``"sgd"`` (``lr`` and
            ``weight_decay`` only: no momentum, as AWD-LSTM trains).
        lr: the base learning rate.
        weight_decay: L2 penalty added to the gradients (coupled).
        betas: Adam's ``(beta1, beta2)``.
        eps: Adam's epsilon.
        lr_milestones: epochs after which the learning rate is multiplied by ``lr_gamma`` (``None``: none).
        lr_gamma: the factor of each cut.

    Returns:
        ``{"optimizer": ..., "lr_scheduler": {"scheduler": MultiStepLR, "interval": "epoch"}}``.
    """
    if optimizer == "sgd":
        built = torch.optim.SGD(parameters, lr=lr, weight_decay=weight_decay)
    else:
        built = torch.optim.Adam(parameters, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(built, milestones=list(lr_milestones or ()), gamma=lr_gamma)
    return {"optimizer": built, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
