r"""Dynamic evaluation (Krause et al. 2018): gradient steps on the test stream, each after its window is scored.

Krause, Kahembwe, Murray and Renals, "Dynamic Evaluation of Neural Sequence Models", ICML 2018.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from ..checks import check_choice, check_in_interval, check_non_negative, check_positive

DynamicRule = Literal["sgd", "rms"]
DYNAMIC_RULES: tuple[str, ...] = ("sgd", "rms")


def check_dynamic_settings(owner: str, lr: object, decay: object, lr_name: str = "lr", decay_name: str = "decay") -> None:
    """Raise unless dynamic evaluation's step size ``lr`` is finite and ``>= 0`` and its pull ``decay`` is in ``[0, 1]``.

    ``lr_name`` and ``decay_name`` are the caller's names of the two (a task calls them ``dynamic_lr``
    and ``dynamic_decay``).
    """
    check_non_negative(owner, lr_name, lr)
    check_in_interval(owner, decay_name, decay, 0.0, 1.0, closed="both")


class DynamicEvaluation:
    r"""Adapts parameters ``theta`` to the stream being evaluated, pulled back toward their start ``theta_0``.

    The caller scores window ``s_i`` with the current ``theta``, takes the gradient ``g_i`` of
    that window's mean NLL and calls :meth:`step`; so no token is ever scored by weights that
    have seen it. :meth:`restore` puts ``theta_0`` back. Two rules (Krause et al. 2018):

    ``"sgd"``, SGD with a global decay prior::

        theta <- theta - lr * g_i + decay * (theta_0 - theta)

    ``"rms"``, RMS-normalised steps with an RMS-scaled global prior::

        MS     = mean of g_j**2 over the windows j = 1..i scored so far    (per element)
        r      = sqrt(MS)
        rate   = min(decay * r / mean_k(mean(r_k)), 1)                      (mean over the tensors k)
        theta <- theta - lr * g_i / (r + eps) + rate * (theta_0 - theta)

    The update and the decay rate scaled by ``r`` normalised to mean 1, clipped so one step never
    overshoots ``theta_0``, are those of Krause et al.'s released code (whose normaliser is, as
    here, the mean over parameter tensors of each tensor's mean ``r``). **One difference:**
    there ``MS`` is measured once, before evaluation, on the *training* split (batches of 100
    streams); here it is the running mean over the test windows already scored, because a test
    run sees only the test split. So the first steps are near sign steps of size ``lr``, and
    ``lr`` / ``eps`` tuned for the released code do not transfer exactly.

    ``theta_0`` is the parameters' value when the instance is built. ``g_i`` is whatever the
    caller differentiates; :class:`~alstm_lightning.tasks.LanguageModelingTask` uses the mean
    NLL per token of the window over all its B streams, as Krause et al. (their B is 1).

    Args:
        parameters: the parameters to adapt in place (those with ``requires_grad``).
        rule: ``"sgd"`` or ``"rms"``.
        lr: the step size eta, ``>= 0`` (0 never moves the weights).
        decay: the prior's pull lambda toward ``theta_0``, in ``[0, 1]``.
        eps: the ``"rms"`` rule's stabiliser epsilon, ``> 0`` (default: the released code's).

    Raises:
        TypeError, ValueError: for an argument of the wrong type or value.
    """

    def __init__(
        self, parameters: Iterable[nn.Parameter], rule: DynamicRule, lr: float, decay: float, eps: float = 2e-5
    ) -> None:
        owner = "DynamicEvaluation"
        check_choice(owner, "rule", rule, DYNAMIC_RULES)
        check_dynamic_settings(owner, lr, decay)
        check_positive(owner, "eps", eps)
        self.parameters = [p for p in parameters if p.requires_grad]
        self.rule = rule
        self.lr = float(lr)
        self.decay = float(decay)
        self.eps = float(eps)
        self.theta_0 = [p.detach().clone() for p in self.parameters]
        # "rms" only: the sum of g_j**2 over the windows scored so far, and their number
        self.sum_squares = [torch.zeros_like(p) for p in self.parameters] if rule == "rms" else []
        self.steps = 0

    @torch.no_grad()
    def step(self, gradients: Sequence[Tensor | None]) -> None:
        """Apply one update from the gradients of the window just scored (``None``: a zero gradient).

        Raises:
            ValueError: if there is not one gradient per parameter.
        """
        if len(gradients) != len(self.parameters):
            raise ValueError(
                f"DynamicEvaluation.step: gradients must hold one entry per parameter ({len(self.parameters)}), "
                f"got {len(gradients)}"
            )
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.parameters, gradients)]
        self.steps += 1
        if self.rule == "sgd":
            for p, g, p0 in zip(self.parameters, grads, self.theta_0):
                pull = p0 - p  # from theta before this step, as in the rule
                p.add_(g, alpha=-self.lr).add_(pull, alpha=self.decay)
            return
        rms = []
        for g, total in zip(grads, self.sum_squares):
            total.addcmul_(g, g)
            rms.append((total / self.steps).sqrt())
        # floor: all-zero gradients so far would make the normaliser 0 (and the rates 0 / 0)
        normaliser = torch.stack([r.mean() for r in rms]).mean().clamp_min(torch.finfo(rms[0].dtype).tiny)
        for p, g, p0, r in zip(self.parameters, grads, self.theta_0, rms):
            rate = (self.decay * r / normaliser).clamp_max(1.0)
            pull = rate * (p0 - p)
            p.sub_(self.lr * g / (r + self.eps)).add_(pull)

    @torch.no_grad()
    def restore(self) -> None:
        """Copy ``theta_0`` back into the parameters and forget the gradient statistics."""
        for p, p0 in zip(self.parameters, self.theta_0):
            p.copy_(p0)
        for total in self.sum_squares:
            total.zero_()
        self.steps = 0
