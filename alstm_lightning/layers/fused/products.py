"""The fused path's matrix products: weights prepacked once per call for oneDNN, and products on them.

The forward multiplies the same weights at every step by ``B``-row matrices. On CPU, a weight used
for enough products is reordered once per call into oneDNN's blocked layout
(:func:`step_operand`), which spares every product the packing of the weight; :func:`mm` runs a
product on either kind of operand. When the reordering pays is set by :class:`PackingThresholds`,
which :func:`use_packing_thresholds` changes for a block of code (tests use it to run every check
on both kinds of operand; ``python -m benchmarks.layers`` measures what the defaults buy).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class PackingThresholds:
    """When the fused path's products change form on CPU: weights reordered into oneDNN's blocked
    layout (:func:`step_operand`) or packed by MKL (the C++ loop, float32), bfloat16 products under
    autocast (:func:`product_dtype`), and the C++ loop's batch run in slices, one per thread.

    Attributes:
        min_steps: fewest products by one weight for which it is reordered or packed (measured at
            ``ptb``: the break-even lies between 8 and 16 steps).
        min_fp32_size: fewest elements of a float32 weight for which it is reordered (below,
            oneDNN's per-call overhead outweighs the gain); bfloat16 weights are reordered at
            any size.
        min_bf16_autocast_size: fewest elements of a chain's largest weight for which bfloat16
            autocast computes the products in bfloat16; below, they run in the parameters' dtype,
            where casting every operand costs more than the bfloat16 kernels save (measured with
            ``python -m benchmarks.autocast``: since the C++ loop's float32 products run on
            MKL-packed weights and batch slices, bfloat16 products made a step slower at
            ``small``, whose largest weight has 2^18 elements; at ``ptb``, 1.8-2.1x faster).
        min_slice_rows: fewest batch rows per thread for which the C++ loop over time runs the
            batch in slices, one per thread, each through every step on its own (rows never
            interact within a step; with two threads, ``python -m benchmarks.ablation`` measured
            it 1.15-1.2x faster per step than splitting every operation over them at
            ``quickstart``, 1.4-1.5x at ``long``, the same within noise at ``small``).
        max_slice_weights: most elements of a chain's weights (adaptation model, projection and
            cell, every layer's) for which it does; above, each thread streaming every weight from
            memory costs more than the slices save (measured at ``ptb``: 1.3x slower).
    """

    min_steps: int = 12
    min_fp32_size: int = 2**19
    min_bf16_autocast_size: int = 2**19
    min_slice_rows: int = 4
    max_slice_weights: int = 2**22

    def __post_init__(self) -> None:
        for name in ("min_steps", "min_fp32_size", "min_bf16_autocast_size", "min_slice_rows", "max_slice_weights"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"PackingThresholds: {name} must be a non-negative int, got {value!r}")


_THRESHOLDS: ContextVar[PackingThresholds] = ContextVar("packing_thresholds", default=PackingThresholds())


def packing_thresholds() -> PackingThresholds:
    """The thresholds :func:`step_operand` applies now (the defaults unless changed by a ``with`` block)."""
    return _THRESHOLDS.get()


@contextmanager
def use_packing_thresholds(thresholds: PackingThresholds) -> Iterator[PackingThresholds]:
    """Apply ``thresholds`` inside a ``with`` block, restoring the previous ones after it.

    Example:
        >>> with use_packing_thresholds(PackingThresholds(min_steps=1, min_fp32_size=0)):
        ...     ...  # every weight is prepacked, whatever its size and the sequence length
    """
    if not isinstance(thresholds, PackingThresholds):
        raise TypeError(
            f"use_packing_thresholds: thresholds must be a PackingThresholds, got {type(thresholds).__name__}"
        )
    token = _THRESHOLDS.set(thresholds)
    try:
        yield thresholds
    finally:
        _THRESHOLDS.reset(token)


def product_dtype(device_type: str, dtype: torch.dtype, largest_weight: int) -> torch.dtype:
    """The dtype of a chain's matrix products for parameters of ``dtype`` on ``device_type``.

    Outside autocast, ``dtype``. Under autocast, the autocast dtype, except bfloat16 on CPU for
    a chain whose largest weight has fewer than ``min_bf16_autocast_size`` elements
    (:func:`packing_thresholds`): there the products stay in ``dtype``, which is faster and exact
    to the parameters, so bfloat16 autocast is never slower than float32.
    """
    if not torch.is_autocast_enabled(device_type):
        return dtype
    autocast_dtype = torch.get_autocast_dtype(device_type)
    small = largest_weight < packing_thresholds().min_bf16_autocast_size
    return dtype if device_type == "cpu" and autocast_dtype == torch.bfloat16 and small else autocast_dtype


def mm(
    a: Tensor, b: Tensor, out: Tensor | None = None, add: Tensor | None = None, dtype: torch.dtype | None = None
) -> Tensor:
    """``a @ b (+ add)`` with the product computed in ``b``'s dtype (the matmul dtype).

    Args:
        a: ``(m, k)``, cast to ``b``'s dtype if needed.
        b: a ``(k, n)`` matrix or an operand made by :func:`step_operand`.
        out: ``(m, n)``, where the result goes (whatever its dtype), or ``None``.
        add: ``(m, n)`` or ``(n,)``, added to the product, or ``None``.
        dtype: the dtype of a new result (default ``a``'s); ignored with ``out``.

    Returns:
        ``out``, or a new ``(m, n)`` tensor.
    """
    target = out.dtype if out is not None else (dtype or a.dtype)
    if b.is_mkldnn:
        product = torch.ops.mkldnn._linear_pointwise(a.to(b.dtype), b, None, "none", [], "")
    elif a.dtype == b.dtype == target and (add is None or add.dtype == target):
        return torch.mm(a, b, out=out) if add is None else torch.addmm(add, a, b, out=out)
    else:
        product = torch.mm(a.to(b.dtype), b)
    if out is None:
        out = product.to(target)
    else:
        out.copy_(product)
    return out if add is None else out.add_(add)


def step_operand(b: Tensor, rows: int, steps: int, reorder_float32: bool = True) -> Tensor:
    """``b: (k, n)`` arranged for ``steps`` products ``(rows, k) @ b`` in a row, for :func:`mm`.

    On CPU, a matrix used for at least ``min_steps`` products (:func:`packing_thresholds`) is
    reordered once into oneDNN's blocked layout, which spares every product the packing of ``b``,
    when that pays: in bfloat16 always (measured 1.1-1.4x faster per product), in float32 from
    ``min_fp32_size`` elements on (unless ``reorder_float32`` is off: the C++ loop packs float32
    operands itself, with MKL), unless ``torch.backends.mkldnn.enabled`` is off. Otherwise ``b``
    is returned as is: a view, no copy (one-step generation pays nothing).
    """
    onednn = b.device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
    thresholds = packing_thresholds()
    if not onednn or steps < thresholds.min_steps:
        return b
    if b.dtype == torch.bfloat16:
        pays = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    else:
        pays = reorder_float32 and b.dtype == torch.float32 and b.numel() >= thresholds.min_fp32_size
    return torch.ops.mkldnn._reorder_linear_weight(b.t(), rows) if pays else b


def accumulate_mm(
    acc: Tensor, a: Tensor, b: Tensor, mm_dtype: torch.dtype, scratch: tuple[Tensor, Tensor] | None
) -> None:
    """``acc += a @ b`` with the product computed in ``mm_dtype``.

    When that is not ``acc``'s dtype, ``scratch`` holds two flat buffers, at least ``acc.numel()``
    long, reused by every call: one in ``mm_dtype`` for the product, one in ``acc``'s dtype for its
    conversion (a fresh tensor per call, as ``acc.add_(product)`` would make, measured about 4x
    slower to fill, from the page faults of its first touch).
    """
    if mm_dtype == acc.dtype:
        acc.addmm_(a.to(mm_dtype), b.to(mm_dtype))
        return
    product, converted = (buf[: acc.numel()].view_as(acc) for buf in scratch)
    torch.mm(a.to(mm_dtype), b.to(mm_dtype), out=product)
    acc.add_(converted.copy_(product))
