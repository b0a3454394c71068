"""``precision="bf16-mixed"`` on CPU: the fused path runs under autocast and the losses follow fp32's."""

from __future__ import annotations

import math

import torch
from lightning import Callback, Trainer, seed_everything

from alstm_lightning import AddingDataModule, SequenceClassificationTask
from alstm_lightning.layers import stack
from alstm_lightning.layers.fused import PackingThresholds, use_packing_thresholds

STEPS = 12


class RecordLosses(Callback):
    """Keep every training step's loss."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(outputs["loss"].item())


def fit_losses(precision: str) -> list[float]:
    seed_everything(0)
    model = SequenceClassificationTask(
        num_classes=1, input_size=2, objective="regression", hidden_size=16, adapt_size=4, num_layers=2, lr=1e-2
    )
    data = AddingDataModule(seq_len=30, num_train=STEPS * 8, num_val=8, num_test=8, batch_size=8)
    record = RecordLosses()
    trainer = Trainer(
        max_steps=STEPS, precision=precision, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
        callbacks=[record],
    )
    trainer.fit(model, data)
    return record.losses


def test_bf16_mixed_uses_the_fused_path_and_tracks_fp32(monkeypatch):
    calls = []

    def spy(runner):
        def run(x, *args, **kwargs):
            autocast = torch.is_autocast_enabled("cpu")
            calls.append((runner.__name__, torch.get_autocast_dtype("cpu") if autocast else None))
            return runner(x, *args, **kwargs)

        return run

    for name, runner in stack.CHAIN_RUNNERS.items():
        monkeypatch.setitem(stack.CHAIN_RUNNERS, name, spy(runner))
    with use_packing_thresholds(PackingThresholds(min_bf16_autocast_size=0)):  # bf16 products at this small size
        bf16 = fit_losses("bf16-mixed")
    assert calls and set(calls) == {("run_chain_fused", torch.bfloat16)}

    calls.clear()
    fp32 = fit_losses("32-true")
    assert calls and set(calls) == {("run_chain_fused", None)}
    assert len(bf16) == len(fp32) == STEPS
    assert all(math.isfinite(loss) for loss in bf16)
    assert bf16 != fp32  # the products did run in bf16
    # bf16 keeps 8 significant bits (unit roundoff 2**-9 ~ 0.2%): measured, the losses of the two fits
    # (MSE near 1) differ by at most 0.3% over the 12 steps; 2% leaves room for other CPUs' kernels
    for step, (low, full) in enumerate(zip(bf16, fp32)):
        assert abs(low - full) <= 0.02 * full, f"step {step}: bf16 loss {low} vs fp32 {full}"
