"""The tasks' optimizer and learning-rate schedule, in the form Lightning's ``configure_optimizers`` returns."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch
from torch import nn

OptimizerName = Literal["adam", "sgd"]
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")


def configure_optimization(
    parameters: Iterable[nn.Parameter],
    optimizer: OptimizerName,
    lr: float,
    weight_decay: float,
    betas: Sequence[float] = (0.9, 0.999),
    eps: float = 1e-8,
    lr_milestones: Sequence[int] = (),
    lr_gamma: float = 0.1,
) -> dict[str, Any]:
    """Adam or plain SGD with coupled weight decay, the learning rate cut by ``lr_gamma`` after each milestone epoch.

    Args:
        parameters: what to optimise.
        optimizer: ``"adam"`` (``lr``, ``betas``, ``eps``, ``weight_decay``) or ``"sgd"`` (``lr`` and
            ``weight_decay`` only: no momentum, as AWD-LSTM trains).
        lr: the base learning rate.
        weight_decay: L2 penalty added to the gradients (coupled).
        betas: Adam's ``(beta1, beta2)``.
        eps: Adam's epsilon.
        lr_milestones: epochs after which the learning rate is multiplied by ``lr_gamma``.
        lr_gamma: the factor of each cut.

    Returns:
        ``{"optimizer": ..., "lr_scheduler": {"scheduler": MultiStepLR, "interval": "epoch"}}``.
    """
    if optimizer == "sgd":
        built = torch.optim.SGD(parameters, lr=lr, weight_decay=weight_decay)
    else:
        built = torch.optim.Adam(parameters, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(built, milestones=list(lr_milestones), gamma=lr_gamma)
    return {"optimizer": built, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
