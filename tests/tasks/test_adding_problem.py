"""A small aLSTM learns the adding problem at T = 200 without gradient clipping.

Always predicting 1 scores a mean squared error of 0.167. With the default initialisation the
aLSTM sits on that plateau for about the first 2000 steps at T = 200 (``nn.LSTM`` did not leave it
within the 800 steps tried either): its forget gates start near 1/2, so a marked value fades as
``2^-t``. Measured on the project's 2-core CPU machine (2026-11-29), in a plain training loop with
batch 128 and Adam 5e-3, the validation MSE stayed at 0.155-0.161 up to step 1900, then fell to
0.041 at step 2300 and 0.0003 at step 2800. That check takes 18 minutes and is opt-in
(``ALSTM_ADDING_PROBLEM=1``).

With chrono initialisation (``chrono_init=200``, :func:`~alstm_lightning.layers.initialization.chrono_init_`)
the plateau ends about four times sooner: in the same loop (one thread, seeds 0 and 1) the
validation MSE was 0.020 and 0.13 at step 500 and 0.005 and 0.005 at step 550-600. Starting the
policies near one without the chrono biases did not help (still 0.159 at step 650). Run through
Lightning as this test does, the validation MSE was 0.0025 after 700 steps with seed 0 (171 s
here), and with seeds 1 and 2 0.165 and 0.087 at step 500, 0.019 and 0.009 at step 600. The test
suite runs that version for 800 steps, leaving a margin over the latest escape seen: seed 0 reached
0.0016 in 226 s here.
"""

from __future__ import annotations

import os

import lightning as L
import pytest

from alstm_lightning import AddingDataModule, SequenceClassificationTask

STEPS = 3000
CHRONO_STEPS = 800
BASELINE_MSE = 2 / 12  # Var(u1 + u2) with u1, u2 ~ U(0, 1): the error of always predicting 1


def _fit_and_validate(steps: int, **task_options) -> float:
    """Train a small aLSTM on the adding problem at T = 200 for ``steps`` steps; return the validation MSE."""
    L.seed_everything(0)
    data = AddingDataModule(seq_len=200, num_train=100_000, num_val=1000, num_test=1000, batch_size=128)
    task = SequenceClassificationTask(
        num_classes=data.num_classes,
        input_size=data.input_size,
        objective=data.objective,
        hidden_size=32,
        adapt_size=8,
        lr=5e-3,
        **task_options,
    )
    quiet = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    fit = L.Trainer(max_steps=steps, gradient_clip_val=None, limit_val_batches=0, enable_checkpointing=False, **quiet)
    fit.fit(task, datamodule=data)
    mse = L.Trainer(**quiet).validate(task, datamodule=data, verbose=False)[0]["val/mse"]
    print(f"adding problem, T = 200, {task_options}: val MSE {mse:.4f} after {steps} steps (baseline {BASELINE_MSE:.3f})")
    return mse


def test_chrono_initialised_alstm_learns_the_adding_problem_at_t200_without_clipping():
    mse = _fit_and_validate(CHRONO_STEPS, chrono_init=200)
    # "well below" the baseline: under a third of it
    assert mse < BASELINE_MSE / 3, f"val MSE {mse:.4f} after {CHRONO_STEPS} steps, baseline {BASELINE_MSE:.3f}"


@pytest.mark.skipif(
    os.environ.get("ALSTM_ADDING_PROBLEM") != "1",
    reason="about 18 minutes on a 2-core CPU (3000 steps at T = 200); set ALSTM_ADDING_PROBLEM=1 to run it",
)
def test_small_alstm_learns_the_adding_problem_at_t200_without_clipping():
    mse = _fit_and_validate(STEPS)
    assert mse < BASELINE_MSE / 3, f"val MSE {mse:.4f} after {STEPS} steps, baseline {BASELINE_MSE:.3f}"
