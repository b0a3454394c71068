r"""The continuous cache of Grave et al. (2017): a language model mixed with a pointer to its recent hidden states.

Grave, Joulin and Usunier, "Improving Neural Language Models with a Continuous Cache", ICLR 2017.
A test-time method: nothing is trained, the cache is three numbers (size, theta, lambda).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import check_non_negative, check_positive_int, check_probability


def cache_log_prob(h: Tensor, target: Tensor, past_h: Tensor, past_target: Tensor, size: int, theta: float) -> Tensor:
    r"""``log p_cache(target_t)`` at every step of a window, each stream with its own cache.

    With the keys ``h_i`` (the cache's hidden states, then the window's) and their values
    ``x_{i+1}`` (the token that followed each), the step at position ``t`` of the stream reads

    .. math::

        p_\text{cache}(w) = \frac{\sum_{i \in C_t} 1[x_{i+1} = w] \exp(\theta h_t^\top h_i)}
                                 {\sum_{i \in C_t} \exp(\theta h_t^\top h_i)},
        \qquad C_t = \{t - \text{size}, \dots, t - 1\} \cap \{0, 1, \dots\}

    (Grave et al. 2017, Eq. 2 and Sec. 4). The window's own earlier steps are in the cache:
    ``C_t`` never holds ``t`` itself, so ``x_{t+1}`` is never read before it is scored. Computed
    in log space: ``theta * h_t @ h_i`` exceeds float32's ``exp`` range for a 400-wide ``tanh`` state.

    Args:
        h: the window's hidden states, ``(T, B, O)``.
        target: the window's next tokens, ``(T, B)``.
        past_h: the cache's hidden states, oldest first, ``(N, B, O)`` with ``0 <= N <= size``.
        past_target: the token that followed each of them, ``(N, B)``.
        size: the cache's length, at least 1.
        theta: the flatness of the attention, ``theta >= 0``.

    Returns:
        ``(T, B)``: ``log p_cache(target_t)``, ``-inf`` where ``target_t`` is not in the cache,
        NaN where the cache is empty (the stream's first step, ``N = 0`` and ``t = 0``).
    """
    N, T = past_h.size(0), h.size(0)
    keys = torch.cat([past_h, h])  # (N+T, B, O)
    values = torch.cat([past_target, target])  # (N+T, B)
    scores = theta * torch.einsum("tbo,jbo->tbj", h, keys)  # (T, B, N+T)
    query = torch.arange(N, N + T, device=h.device).unsqueeze(1)  # (T, 1): each step's position
    key = torch.arange(N + T, device=h.device).unsqueeze(0)  # (1, N+T)
    in_cache = (key < query) & (key >= query - size)  # (T, N+T)
    scores = scores.masked_fill(~in_cache.unsqueeze(1), -math.inf)
    hits = values.t().unsqueeze(0) == target.unsqueeze(-1)  # (T, B, N+T): x_{i+1} = target_t
    return scores.masked_fill(~hits, -math.inf).logsumexp(-1) - scores.logsumexp(-1)


def check_cache_settings(
    owner: str, theta: object, lambda_: object, theta_name: str = "theta", lambda_name: str = "lambda_"
) -> None:
    """Raise unless the cache's flatness ``theta`` is finite and ``>= 0`` and its weight ``lambda_`` is in ``[0, 1)``.

    ``theta_name`` and ``lambda_name`` are the caller's names of the two (a task calls them
    ``cache_theta`` and ``cache_lambda``).
    """
    check_non_negative(owner, theta_name, theta)
    check_probability(owner, lambda_name, lambda_)


class NeuralCache:
    r"""Grave et al.'s cache over the last ``size`` hidden states of each of B streams, carried across windows.

    Each step's distribution is the model's mixed with the cache's (Grave et al. 2017, Eq. 3):

    .. math::

        p(w) = (1 - \lambda)\, p_\text{model}(w) + \lambda\, p_\text{cache}(w),
        \qquad p_\text{cache}(w) \propto \sum_{i \in C_t} 1[x_{i+1} = w] \exp(\theta h_t^\top h_i)

    with ``h`` the last layer's hidden state (the encoder's raw output, as in the paper and
    AWD-LSTM's ``pointer.py``) and ``C_t`` the ``size`` steps before ``t`` (see
    :func:`cache_log_prob`). Defaults are the Penn Treebank values of AWD-LSTM's pointer
    evaluation (Merity et al. 2018): ``size=500, theta=0.662, lambda_=0.1279``.

    **Protocol.** Call :meth:`reset` at the start of a split, then the instance on each window
    in order. A window is scored with the cache as it stood, its own earlier steps included,
    then its states and next tokens join the cache, whose oldest entries fall out beyond
    ``size``. So each stream's cache runs across window boundaries exactly as within a window,
    and window length does not change the result. Streams never share entries: stream b's cache
    holds only stream b's steps, so B streams batched score as each scored alone.

    **Difference from ``pointer.py``.** AWD-LSTM's script scores a token with the cache only
    once more than ``size`` states precede it, and with the model alone before; here the cache
    is used from the stream's second token on, with whatever it holds (the paper's sum over
    ``i < t``). The two differ on a split's first ``size`` tokens only. The stream's very first
    token, with an empty cache, is scored by the model alone.

    Args:
        size: how many past steps per stream the cache holds, at least 1.
        theta: the flatness of the cache's attention, ``theta >= 0`` (0 gives a unigram cache).
        lambda_: the cache's weight in the mixture, in ``[0, 1)``; 0 reproduces the model.

    Raises:
        TypeError, ValueError: for an argument of the wrong type or value.

    Example:
        >>> cache = NeuralCache(size=500)
        >>> cache.reset()
        >>> log_p = cache(out.raw_output, target, out.logits)  # doctest: +SKIP
    """

    def __init__(self, size: int = 500, theta: float = 0.662, lambda_: float = 0.1279) -> None:
        check_positive_int("NeuralCache", "size", size)
        check_cache_settings("NeuralCache", theta, lambda_)
        self.size = size
        self.theta = float(theta)
        self.lambda_ = float(lambda_)
        self.past_h: Tensor | None = None
        self.past_target: Tensor | None = None

    def reset(self) -> None:
        """Empty every stream's cache: the next window starts a new split."""
        self.past_h = self.past_target = None

    def __call__(self, h: Tensor, target: Tensor, logits: Tensor) -> Tensor:
        """Score one window with the mixture, then add its steps to the cache.

        Args:
            h: the last layer's hidden states, ``(T, B, O)`` (detached: the cache keeps them).
            target: the next tokens, ``(T, B)``.
            logits: the model's next-token scores, ``(T, B, V)``.

        Returns:
            ``(T, B)``: ``log p(target_t)`` under the mixture.

        Raises:
            ValueError: if B differs from the cache's streams or the shapes disagree.
        """
        T, B = target.shape
        if h.shape[:2] != (T, B) or logits.shape[:2] != (T, B):
            raise ValueError(
                f"NeuralCache: h and logits must start with target's shape {(T, B)}, "
                f"got {tuple(h.shape)} and {tuple(logits.shape)}"
            )
        if self.past_h is None:
            self.past_h = h.new_empty(0, B, h.size(-1))
            self.past_target = target.new_empty(0, B)
        elif self.past_h.size(1) != B:
            raise ValueError(
                f"NeuralCache: the batch size must stay {self.past_h.size(1)} until reset(), got {B}"
            )
        log_p_model = -F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view(T, B)
        log_p_cache = cache_log_prob(h, target, self.past_h, self.past_target, self.size, self.theta)
        # log((1 - lambda) p_model + lambda p_cache); lambda = 0 leaves log p_model bit for bit
        log_lambda = math.log(self.lambda_) if self.lambda_ > 0 else -math.inf
        mixed = torch.logaddexp(math.log1p(-self.lambda_) + log_p_model, log_lambda + log_p_cache)
        empty = torch.arange(T, device=h.device).unsqueeze(1) + self.past_h.size(0) == 0  # (T, 1)
        self.past_h = torch.cat([self.past_h, h])[-self.size :]
        self.past_target = torch.cat([self.past_target, target])[-self.size :]
        return torch.where(empty, log_p_model, mixed)
