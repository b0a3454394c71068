"""NTASGD: the non-monotone trigger on scripted validation losses, and the average of the SGD iterates."""

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.nn.utils import parameters_to_vector
from torch.utils.data import DataLoader, TensorDataset

from alstm_lightning.callbacks import NTASGD, nonmonotone_trigger

STEPS_PER_EPOCH = 2


@pytest.mark.parametrize(
    "history, current, nonmono, expected",
    [
        ([5, 4, 3], 3.5, 2, False),  # better than v_0 = 5, the only check before the last two
        ([5, 4, 3, 3.5, 3.2], 3.4, 2, True),  # 3.4 > min(5, 4, 3): the best before the last two checks
        ([5, 4, 3, 3.5, 3.2], 3.0, 2, False),  # equal to that best is not worse
        ([5, 4], 4.5, 2, False),  # t = 2 is not > nonmono
        ([5, 4, 3], 4.5, 2, False),  # arXiv v1's "worse than the last n" would switch here (4.5 > 3)
        ([5], 6, 0, True),  # nonmono = 0: any check worse than the best so far
        ([], 6, 0, False),
    ],
)
def test_trigger_condition(history, current, nonmono, expected):
    assert nonmonotone_trigger(history, current, nonmono) is expected


def _flat(module):
    return parameters_to_vector(module.parameters()).detach().clone()


class ScriptedModule(pl.LightningModule):
    """A linear regression trained by SGD whose validation loss is read from ``script``.

    Records the weights after every optimizer step (``iterates[global_step]``) and the weights
    each validation ran with (``validated``: ``(global_step, weights)``).
    """

    def __init__(self, script):
        super().__init__()
        self.layer = nn.Linear(3, 1)
        self.script = script
        self.iterates = {}
        self.validated = []
        self.started_from = None

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self.layer(x), y)

    def on_train_start(self):
        self.started_from = _flat(self)
        self.iterates[self.trainer.global_step] = _flat(self)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.iterates[self.trainer.global_step] = _flat(self)

    def validation_step(self, batch, batch_idx):
        self.validated.append((self.trainer.global_step, _flat(self)))
        self.log("val/loss", self.script[len(self.validated) - 1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _data():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2 * STEPS_PER_EPOCH, 3, generator=generator)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(2 * STEPS_PER_EPOCH, 1, generator=generator)
    dataset = TensorDataset(x, y)
    return DataLoader(dataset, batch_size=2), DataLoader(dataset, batch_size=4)


def _fit(module, callbacks, epochs, tmp_path, ckpt_path=None):
    trainer = pl.Trainer(
        max_epochs=epochs,
        callbacks=callbacks,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, *_data(), ckpt_path=ckpt_path)
    return trainer


# Check 5 is the first worse than the best before the last two checks (3.4 > 3); the arXiv v1
# reading ("worse than the best of the last two") would already switch at check 3 (3.5 > 3).
SCRIPT = [5.0, 4.0, 3.0, 3.5, 3.2, 3.4, 3.3, 3.1]
SWITCH_CHECK = 5


def _mean(iterates, first, last):
    return torch.stack([iterates[k] for k in range(first, last + 1)]).mean(0)


def test_switches_at_the_right_check_and_validates_the_mean_of_the_iterates(tmp_path):
    module = ScriptedModule(SCRIPT)
    nt_asgd = NTASGD(nonmono=2)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    _fit(module, [nt_asgd, checkpoint], len(SCRIPT), tmp_path)

    switch_step = (SWITCH_CHECK + 1) * STEPS_PER_EPOCH
    assert nt_asgd.switch_step == switch_step
    assert nt_asgd.losses == pytest.approx(SCRIPT[: SWITCH_CHECK + 1])
    assert len(module.validated) == len(SCRIPT)
    for check, (step, weights) in enumerate(module.validated):
        if check <= SWITCH_CHECK:  # before and at the switch: the SGD iterate itself
            torch.testing.assert_close(weights, module.iterates[step])
        else:  # after: (w_T + ... + w_k) / (k - T + 1)
            torch.testing.assert_close(weights, _mean(module.iterates, switch_step, step))
            assert not torch.allclose(weights, module.iterates[step])
    final_step = len(SCRIPT) * STEPS_PER_EPOCH
    torch.testing.assert_close(_flat(module), _mean(module.iterates, switch_step, final_step))

    # The last checkpoint (saved at the last validation) holds the average as the model's weights,
    # the SGD iterate beside it, and the callback's state.
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    average = _mean(module.iterates, switch_step, final_step)
    torch.testing.assert_close(parameters_to_vector(saved["state_dict"].values()), average)
    torch.testing.assert_close(parameters_to_vector(saved["current_model_state"].values()), module.iterates[final_step])
    state = saved["callbacks"]["NTASGD"]
    assert state["switch_step"] == switch_step and state["losses"] == pytest.approx(SCRIPT[: SWITCH_CHECK + 1])
    assert saved["averaging_state"]["n_averaged"].item() == final_step - switch_step + 1


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
def test_resume_continues_from_the_iterate_and_keeps_averaging(tmp_path):
    first = ScriptedModule(SCRIPT)
    _fit(first, [NTASGD(nonmono=2), ModelCheckpoint(dirpath=tmp_path, save_last=True)], len(SCRIPT), tmp_path)
    switch_step = (SWITCH_CHECK + 1) * STEPS_PER_EPOCH
    last_step = len(SCRIPT) * STEPS_PER_EPOCH

    second = ScriptedModule([9.0, 9.0])
    nt_asgd = NTASGD(nonmono=2)
    _fit(second, [nt_asgd], len(SCRIPT) + 1, tmp_path, ckpt_path=tmp_path / "last.ckpt")
    assert nt_asgd.switch_step == switch_step and nt_asgd.losses == pytest.approx(SCRIPT[: SWITCH_CHECK + 1])
    torch.testing.assert_close(second.started_from, first.iterates[last_step])
    iterates = {**first.iterates, **second.iterates}
    resumed_step = last_step + STEPS_PER_EPOCH
    (step, weights) = second.validated[-1]
    assert step == resumed_step
    torch.testing.assert_close(weights, _mean(iterates, switch_step, resumed_step))


def test_no_switch_leaves_the_weights_alone(tmp_path):
    module = ScriptedModule([5.0, 4.0, 3.0, 2.0])
    nt_asgd = NTASGD(nonmono=1)
    _fit(module, [nt_asgd], 4, tmp_path)
    assert nt_asgd.switch_step is None and not nt_asgd.averaging
    torch.testing.assert_close(_flat(module), module.iterates[4 * STEPS_PER_EPOCH])
    for step, weights in module.validated:
        torch.testing.assert_close(weights, module.iterates[step])


def test_start_fit_averages_from_the_first_step_and_stops_when_the_trigger_fires(tmp_path):
    # AWD-LSTM's fine-tuning: ASGD(t0=0) averages w_1, ..., w_k and the run ends at the first
    # check on the average that is worse than the best before the last `nonmono` checks
    module = ScriptedModule(SCRIPT)
    nt_asgd = NTASGD(nonmono=2, start="fit", stop_on_trigger=True)
    trainer = _fit(module, [nt_asgd], len(SCRIPT) + 5, tmp_path)

    assert nt_asgd.switch_step == 0 and nt_asgd.losses == []
    assert nt_asgd.averaged_losses == pytest.approx(SCRIPT[: SWITCH_CHECK + 1])
    assert len(module.validated) == SWITCH_CHECK + 1  # stopped at the firing check
    assert trainer.current_epoch == SWITCH_CHECK + 1
    for step, weights in module.validated:
        torch.testing.assert_close(weights, _mean(module.iterates, 1, step))
    final_step = (SWITCH_CHECK + 1) * STEPS_PER_EPOCH
    torch.testing.assert_close(_flat(module), _mean(module.iterates, 1, final_step))


def test_stop_on_trigger_after_a_triggered_switch_uses_only_the_checks_on_the_average(tmp_path):
    # switch at check 5; the checks on the average are then 3.3, 3.1, 3.2, 3.0, 3.15 and the
    # last is the first worse than the best before the last two (3.15 > 3.1)
    script = [*SCRIPT[: SWITCH_CHECK + 1], 3.3, 3.1, 3.2, 3.0, 3.15, 1.0]
    module = ScriptedModule(script)
    nt_asgd = NTASGD(nonmono=2, stop_on_trigger=True)
    _fit(module, [nt_asgd], len(script), tmp_path)
    assert nt_asgd.switch_step == (SWITCH_CHECK + 1) * STEPS_PER_EPOCH
    assert nt_asgd.averaged_losses == pytest.approx([3.3, 3.1, 3.2, 3.0, 3.15])
    assert len(module.validated) == len(script) - 1


def test_errors(tmp_path):
    with pytest.raises(ValueError, match=r"NTASGD: monitor must name a metric logged during validation, got 'val/ppl'"):
        _fit(ScriptedModule(SCRIPT), [NTASGD(monitor="val/ppl")], 1, tmp_path)
    with pytest.raises(TypeError, match="NTASGD: monitor must be a str"):
        NTASGD(monitor=None)
    with pytest.raises(TypeError, match="NTASGD: nonmono must be an int"):
        NTASGD(nonmono=2.0)
    with pytest.raises(ValueError, match="NTASGD: nonmono must be a non-negative int, got -1"):
        NTASGD(nonmono=-1)
    with pytest.raises(ValueError, match="NTASGD: start must be one of"):
        NTASGD(start="now")
    with pytest.raises(TypeError, match="NTASGD: stop_on_trigger must be a bool"):
        NTASGD(stop_on_trigger="yes")
