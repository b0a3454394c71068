"""The fused path's product backend: when weights are prepacked for oneDNN, products on them, the thresholds."""

from __future__ import annotations

import pytest
import torch

from alstm_lightning.layers.fused import PackingThresholds, packing_thresholds, use_packing_thresholds
from alstm_lightning.layers.fused.products import mm, product_dtype, step_operand


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_step_operand_prepacks_for_long_enough_sequences_only(dtype):
    b = torch.randn(7, 5).to(dtype)
    a = torch.randn(3, 7).to(dtype)
    with use_packing_thresholds(PackingThresholds(min_steps=4, min_fp32_size=35)):
        assert step_operand(b, rows=3, steps=3) is b  # too few steps: the weight itself, no copy
        operand = step_operand(b, rows=3, steps=4)
    assert operand.is_mkldnn == torch.backends.mkldnn.is_available()
    expected = (a.float() @ b.float()).to(dtype)
    torch.testing.assert_close(mm(a, operand), expected)
    # into a wider `out=` tensor and with an added term, as the forward uses it
    out = torch.empty(3, 5)
    add = torch.randn(3, 5)
    result = mm(a, operand, out=out, add=add)
    assert result is out
    torch.testing.assert_close(out, expected.float() + add, atol=1e-2, rtol=1e-2)


def test_step_operand_leaves_small_float32_float64_and_disabled_onednn_unpacked(monkeypatch):
    small = torch.randn(7, 5)
    double = torch.randn(70, 50, dtype=torch.float64)
    large = torch.randn(7, 6)
    with use_packing_thresholds(PackingThresholds(min_steps=1, min_fp32_size=36)):
        assert step_operand(small, rows=3, steps=100) is small
        assert step_operand(double, rows=3, steps=100) is double
        assert step_operand(large, rows=3, steps=100).is_mkldnn == torch.backends.mkldnn.is_available()
        monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)  # the user's switch is respected
        assert step_operand(large, rows=3, steps=100) is large


def test_step_operand_packs_on_cpu_only(device):
    weight = torch.randn(7, 6, device=device)
    with use_packing_thresholds(PackingThresholds(min_steps=1, min_fp32_size=0)):
        operand = step_operand(weight, rows=3, steps=100)
    assert (operand is weight) == (device.type != "cpu" or not torch.backends.mkldnn.is_available())


def test_use_packing_thresholds_applies_inside_the_block_only():
    outer = packing_thresholds()
    inner = PackingThresholds(min_steps=3, min_fp32_size=7)
    with use_packing_thresholds(inner) as applied:
        assert applied is inner and packing_thresholds() is inner
    assert packing_thresholds() is outer
    assert PackingThresholds() == PackingThresholds(
        min_steps=12, min_fp32_size=2**19, min_bf16_autocast_size=2**19, min_slice_rows=4, max_slice_weights=2**22
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"min_steps": -1}, "min_steps must be a non-negative int"),
        ({"min_fp32_size": 1.5}, "min_fp32_size"),
        ({"min_bf16_autocast_size": True}, "min_bf16_autocast_size"),
        ({"min_slice_rows": -2}, "min_slice_rows must be a non-negative int"),
        ({"max_slice_weights": "many"}, "max_slice_weights"),
    ],
)
def test_packing_thresholds_reject_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PackingThresholds(**kwargs)
    with pytest.raises(TypeError, match="thresholds must be a PackingThresholds"):
        with use_packing_thresholds({"min_steps": 1}):
            pass


def test_product_dtype_keeps_the_parameters_dtype_outside_autocast_and_for_small_cpu_bfloat16_chains():
    with use_packing_thresholds(PackingThresholds(min_bf16_autocast_size=100)):
        assert product_dtype("cpu", torch.float32, largest_weight=10**6) == torch.float32  # no autocast
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert product_dtype("cpu", torch.float32, largest_weight=99) == torch.float32
            assert product_dtype("cpu", torch.float64, largest_weight=99) == torch.float64
            assert product_dtype("cpu", torch.float32, largest_weight=100) == torch.bfloat16
        with torch.autocast("cpu", dtype=torch.float16):  # the size rule is bfloat16's only
            assert product_dtype("cpu", torch.float32, largest_weight=99) == torch.float16


def test_small_models_under_cpu_bfloat16_autocast_give_float32_results():
    """Below the size, bfloat16 autocast changes nothing in the fused path's results (float32 products)."""
    from alstm_lightning import aLSTM

    model = aLSTM(5, 7, 4, num_layers=2)
    x = torch.randn(6, 3, 5)
    expected, _ = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output, _ = model(x)
    torch.testing.assert_close(output, expected, rtol=0, atol=0)
