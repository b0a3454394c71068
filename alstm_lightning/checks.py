"""Argument, input and state checks shared by ``layers/``, ``data/`` and ``tasks/``: one owner per rule.

Every message reads ``<owner>: <what> must be <expected>, got <actual>``. Pure Python and torch:
``layers/`` uses it too, and it imports nothing from Lightning.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from torch import Tensor
from torch.nn.utils.rnn import PackedSequence


def check_int(owner: str, name: str, value: object) -> None:
    """Raise unless ``value`` is an ``int`` (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__} ({value!r})")


def check_positive_int(owner: str, name: str, value: object) -> None:
    """Raise unless ``value`` is an ``int`` (not a bool) greater than zero."""
    check_int(owner, name, value)
    if value <= 0:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value}")


def check_non_negative_int(owner: str, name: str, value: object) -> None:
    """Raise unless ``value`` is an ``int`` (not a bool) that is zero or more (a seed, a worker count)."""
    check_int(owner, name, value)
    if value < 0:
        raise ValueError(f"{owner}: {name} must be a non-negative int, got {value}")


def check_float(owner: str, name: str, value: object) -> None:
    """Raise unless ``value`` is a real number (an ``int`` or ``float``, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {name} must be a float, got {type(value).__name__} ({value!r})")


def check_positive(owner: str, name: str, value: object) -> None:
    """Raise unless ``value`` is a finite real number greater than zero (a learning rate, a temperature)."""
    check_float(owner, name, value)
    if not value > 0:
        raise ValueError(f"{owner}: {name} must be positive, got {value}")
    if not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be positive and finite, got {value}")


def check_non_negative(owner: str, name: str, value: object) -> None:
    """Raise unless ``value`` is a finite real number that is zero or more (a penalty's weight)."""
    check_float(owner, name, value)
    if not value >= 0:
        raise ValueError(f"{owner}: {name} must be non-negative, got {value}")
    if not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be non-negative and finite, got {value}")


def check_in_interval(
    owner: str, name: str, value: object, low: float, high: float, closed: str = "neither"
) -> None:
    """Raise unless ``value`` is a real number in the interval from ``low`` to ``high``.

    Args:
        closed: which ends belong to the interval: ``"neither"`` (``(low, high)``), ``"left"``
            (``[low, high)``), ``"right"`` (``(low, high]``) or ``"both"`` (``[low, high]``).
    """
    left, right = closed in ("left", "both"), closed in ("right", "both")
    shown = f"{'[' if left else '('}{low:g}, {high:g}{']' if right else ')'}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {name} must be a float in {shown}, got {type(value).__name__} ({value!r})")
    above = value >= low if left else value > low
    below = value <= high if right else value < high
    if not (above and below):
        raise ValueError(f"{owner}: {name} must be in {shown}, got {value}")


def check_fraction(owner: str, name: str, value: object) -> None:
    """Raise unless ``value`` is a real number in ``(0, 1)``."""
    check_in_interval(owner, name, value, 0.0, 1.0)


def check_probability(owner: str, name: str, value: object) -> None:
    """Raise unless ``value`` is a real number in ``[0, 1)`` (a drop probability)."""
    check_in_interval(owner, name, value, 0.0, 1.0, closed="left")


def check_choice(owner: str, name: str, value: object, choices: Sequence[str]) -> None:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{owner}: {name} must be one of {tuple(choices)}, got {value!r}")


def check_bool(owner: str, name: str, value: object) -> None:
    """Raise unless ``value`` is a ``bool``."""
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be a bool, got {type(value).__name__} ({value!r})")


def check_sampling(owner: str, max_new_tokens: object, temperature: object, top_k: object) -> None:
    """Raise unless the sampling settings of a text generation are usable (shared by every generating entry point).

    ``max_new_tokens`` a positive int, ``temperature`` a finite positive number, ``top_k`` a
    positive int or ``None``.
    """
    check_positive_int(owner, "max_new_tokens", max_new_tokens)
    check_positive(owner, "temperature", temperature)
    if top_k is not None:
        check_positive_int(owner, "top_k", top_k)


def check_path(owner: str, name: str, value: object) -> str:
    """Raise unless ``value`` is a path (a ``str`` or ``os.PathLike``); return it as a ``str``."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if not isinstance(value, str):
        raise TypeError(f"{owner}: {name} must be a path (str or os.PathLike), got {type(value).__name__} ({value!r})")
    return value


def check_floating_tensor(owner: str, name: str, value: object, ndim: int) -> Tensor:
    """Raise unless ``value`` is a floating-point tensor with ``ndim`` dimensions; return it."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{owner}: {name} must be a floating-point tensor, got dtype {value.dtype}")
    if value.dim() != ndim:
        raise ValueError(
            f"{owner}: {name} must have {ndim} dimensions, got {value.dim()} (shape {tuple(value.shape)})"
        )
    return value


def check_token_ids(owner: str, name: str, ids: Tensor, vocab_size: int) -> None:
    """Raise unless every id in the integer tensor ``ids`` lies in ``[0, vocab_size)``.

    One reduction on the valid path (a single host sync on an accelerator); the range in the
    message is computed only when the check fails.
    """
    if ((ids < 0) | (ids >= vocab_size)).any():
        raise ValueError(
            f"{owner}: {name} must be token ids in [0, vocab_size={vocab_size}), "
            f"got range [{int(ids.min())}, {int(ids.max())}]"
        )


def check_size(owner: str, name: str, tensor: Tensor, expected: Sequence[int], what: str = "shape") -> None:
    """Raise unless ``tensor.shape`` equals ``expected``."""
    if tuple(tensor.shape) != tuple(expected):
        raise ValueError(f"{owner}: {name} {what} must be {tuple(expected)}, got {tuple(tensor.shape)}")


def check_like(owner: str, name: str, tensor: Tensor, reference: Tensor) -> None:
    """Raise unless ``tensor`` lives on ``reference``'s device with its dtype."""
    if tensor.device != reference.device:
        raise ValueError(f"{owner}: {name} must be on device {reference.device}, got {tensor.device}")
    if tensor.dtype != reference.dtype:
        raise TypeError(f"{owner}: {name} must have dtype {reference.dtype}, got {tensor.dtype}")


def check_sequence_input(owner: str, input: object, input_size: int, batch_first: bool) -> None:
    """Validate the ``input`` of a recurrent stack: a 3-d float tensor or a ``PackedSequence``.

    Checks type, dtype, dimensionality, feature size and that the batch and time axes are non-empty.
    """
    if isinstance(input, PackedSequence):
        data = check_floating_tensor(owner, "input.data (PackedSequence)", input.data, 2)
        if data.size(0) == 0:
            raise ValueError(f"{owner}: input (PackedSequence) must hold at least one step, got none")
        if data.size(-1) != input_size:
            raise ValueError(
                f"{owner}: input.data.size(-1) must equal input_size={input_size}, got {data.size(-1)} "
                f"(input.data shape {tuple(data.shape)})"
            )
        return
    if not isinstance(input, Tensor):
        raise TypeError(f"{owner}: input must be a torch.Tensor or a PackedSequence, got {type(input).__name__}")
    layout = "(B, T, I)" if batch_first else "(T, B, I)"
    if not input.is_floating_point():
        raise TypeError(f"{owner}: input must be a floating-point tensor, got dtype {input.dtype}")
    if input.dim() != 3:
        raise ValueError(
            f"{owner}: input must have 3 dimensions {layout}, got {input.dim()} (shape {tuple(input.shape)})"
        )
    if input.size(-1) != input_size:
        raise ValueError(
            f"{owner}: input.size(-1) must equal input_size={input_size}, got {input.size(-1)} "
            f"(input shape {tuple(input.shape)})"
        )
    time_dim, batch_dim = (1, 0) if batch_first else (0, 1)
    if input.size(batch_dim) == 0:
        raise ValueError(f"{owner}: input batch size must be positive, got 0 (input shape {tuple(input.shape)})")
    if input.size(time_dim) == 0:
        raise ValueError(
            f"{owner}: input sequence length must be positive, got 0 (input shape {tuple(input.shape)})"
        )


def check_state_tensors(
    owner: str,
    field: str,
    tensors: object,
    shapes: Sequence[tuple[int, int]],
    reference: Tensor,
) -> None:
    """Validate one field of a recurrent state: a sequence of tensors with the given shapes."""
    if not isinstance(tensors, (tuple, list)) or not all(isinstance(t, Tensor) for t in tensors):
        raise TypeError(f"{owner}: hx.{field} must be a tuple of tensors, got {type(tensors).__name__}")
    if len(tensors) != len(shapes):
        raise ValueError(
            f"{owner}: hx.{field} must hold {len(shapes)} tensors (one per layer and direction), got {len(tensors)}"
        )
    for k, (tensor, shape) in enumerate(zip(tensors, shapes)):
        if tuple(tensor.shape) != tuple(shape):
            raise ValueError(
                f"{owner}: hx.{field}[{k}] shape must be {tuple(shape)} (batch size {shape[0]} from the input), "
                f"got {tuple(tensor.shape)}"
            )
        check_like(owner, f"hx.{field}[{k}]", tensor, reference)

