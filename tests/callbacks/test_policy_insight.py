"""PolicyMonitor: finite policy statistics reach CSV and offline W&B; they are the traced policy's."""

import csv
import math

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from torch import nn
from torch.nn.utils import parameters_to_vector
from torch.utils.data import DataLoader

from alstm_lightning import aLSTM, unused_policy_fraction
from alstm_lightning.callbacks import PolicyMonitor, default_encoder_input
from alstm_lightning.layers.policy_trace import trace_policies

V, E, H, A, T, B = 11, 4, 3, 2, 5, 2
STEPS = 4
SUB_POLICIES = ("pi_x", "pi_h", "pi_i", "pi_hh", "pi_b")


class TinyLanguageModel(pl.LightningModule):
    """Embedding, a 2-layer aLSTM and a linear decoder over ``(tokens, targets)`` batches, time-major."""

    def __init__(self, dropout=0.0, bidirectional=False, policy_layout="reference"):
        super().__init__()
        self.embedding = nn.Embedding(V, E)
        self.encoder = aLSTM(
            E, H, A, num_layers=2, dropout=dropout, adapt_dropout=dropout, bidirectional=bidirectional,
            policy_layout=policy_layout,
        )
        self.decoder = nn.Linear(H * (2 if bidirectional else 1), V)

    def training_step(self, batch, batch_idx):
        tokens, targets = batch
        output, _ = self.encoder(self.embedding(tokens))
        return F.cross_entropy(self.decoder(output).flatten(0, 1), targets.flatten())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def _batches():
    generator = torch.Generator().manual_seed(3)
    tokens = torch.randint(V, (STEPS, T, B), generator=generator)
    targets = torch.randint(V, (STEPS, T, B), generator=generator)
    return [(tokens[k], targets[k]) for k in range(STEPS)]


def _fit(module, callbacks, logger, tmp_path):
    trainer = pl.Trainer(
        max_steps=STEPS,
        callbacks=callbacks,
        logger=logger,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, DataLoader(_batches(), batch_size=None))
    return trainer


def _expected_last(module):
    """The sub-policies the last logged step saw: the final weights on the last batch, traced again."""
    module.encoder.eval()
    return trace_policies(module.encoder, module.embedding(_batches()[-1][0]), split=True)


def test_csv_logger_gets_the_traced_statistics(tmp_path):
    module = TinyLanguageModel()
    logger = CSVLogger(tmp_path, name="run")
    _fit(module, [PolicyMonitor(every_n_steps=2, saturation_threshold=0.5)], logger, tmp_path)
    with open(logger.log_dir + "/metrics.csv") as f:
        rows = [row for row in csv.DictReader(f) if row["policy/layer0/pi_x/mean"]]
    assert [int(row["step"]) for row in rows] == [2, 4]

    for row in rows:
        for layer in (0, 1):
            for name in SUB_POLICIES:
                key = f"policy/layer{layer}/{name}"
                mean, std, saturated = (float(row[f"{key}/{stat}"]) for stat in ("mean", "std", "saturated"))
                assert math.isfinite(mean) and -1 < mean < 1 and std > 0 and 0 <= saturated <= 1
            cell = module.encoder.alstm_layers[layer]
            unused = unused_policy_fraction(cell.input_size, cell.hidden_size, 4, True, "reference")
            assert float(row[f"policy/layer{layer}/unused"]) == pytest.approx(unused) and unused > 0

    traced = _expected_last(module)
    for layer in (0, 1):
        for name in SUB_POLICIES:
            values = getattr(traced[layer], name)
            key = f"policy/layer{layer}/{name}"
            assert float(rows[-1][f"{key}/mean"]) == pytest.approx(values.mean().item(), rel=1e-5, abs=1e-7)
            assert float(rows[-1][f"{key}/std"]) == pytest.approx(values.std().item(), rel=1e-5)
            saturated = (values.abs() >= 0.5).float().mean().item()
            assert float(rows[-1][f"{key}/saturated"]) == pytest.approx(saturated)


def test_offline_wandb_run_gets_statistics_and_histograms(tmp_path):
    module = TinyLanguageModel(bidirectional=True, policy_layout="paper")
    logger = WandbLogger(offline=True, save_dir=str(tmp_path), project="policy-monitor-test")
    try:
        _fit(module, [PolicyMonitor(every_n_steps=2)], logger, tmp_path)
        summary = {key: logger.experiment.summary[key] for key in logger.experiment.summary.keys()}
    finally:
        logger.experiment.finish()
    # offline, the run is one record file, uploaded later by `wandb sync`
    (record,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    assert b"policy/layer1_reverse/pi_b/histogram" in record.read_bytes()
    assert summary["trainer/global_step"] == STEPS
    traced = _expected_last(module)
    for k, key in enumerate(["layer0", "layer0_reverse", "layer1", "layer1_reverse"]):
        for name in SUB_POLICIES:
            values = getattr(traced[k], name)
            assert summary[f"policy/{key}/{name}/mean"] == pytest.approx(values.mean().item(), rel=1e-5, abs=1e-7)
            assert math.isfinite(summary[f"policy/{key}/{name}/std"])
            assert summary[f"policy/{key}/{name}/histogram"]["_type"] == "histogram"
    assert not any(name.endswith("/unused") for name in summary), "the paper layout uses every unit"


def test_monitoring_leaves_training_unchanged(tmp_path):
    trained = []
    for callbacks in ([], [PolicyMonitor(every_n_steps=1)]):
        torch.manual_seed(0)
        module = TinyLanguageModel(dropout=0.3)
        _fit(module, callbacks, False, tmp_path)
        trained.append(parameters_to_vector(module.parameters()))
    torch.testing.assert_close(trained[0], trained[1], rtol=0, atol=0)


class Wrapper(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.body = nn.ModuleDict({"rnn": aLSTM(E, H, A), "lstm": nn.LSTM(E, H)})


def test_finding_the_encoder():
    module = Wrapper()
    assert PolicyMonitor().find_encoder(module) is module.body["rnn"]
    assert PolicyMonitor(encoder="body.rnn").find_encoder(module) is module.body["rnn"]
    with pytest.raises(ValueError, match="PolicyMonitor: encoder must name a submodule of Wrapper, got 'body.gru'"):
        PolicyMonitor(encoder="body.gru").find_encoder(module)
    with pytest.raises(TypeError, match=r"PolicyMonitor: encoder must name an aLSTM or aRNN, got 'body.lstm' \(LSTM\)"):
        PolicyMonitor(encoder="body.lstm").find_encoder(module)
    del module.body["rnn"]
    with pytest.raises(ValueError, match="PolicyMonitor: pl_module must contain an aLSTM or aRNN, got none in Wrapper"):
        PolicyMonitor().find_encoder(module)


def test_default_encoder_input():
    module = TinyLanguageModel()
    tokens = torch.randint(V, (T, B))
    torch.testing.assert_close(default_encoder_input(module, (tokens, tokens)), module.embedding(tokens))
    features = torch.randn(T, B, E)
    assert default_encoder_input(Wrapper(), [features]) is features
    with pytest.raises(TypeError, match="default_encoder_input: batch must be a tensor or a tuple/list"):
        default_encoder_input(module, {"input": tokens})


def test_argument_errors():
    with pytest.raises(ValueError, match="PolicyMonitor: every_n_steps must be a positive int, got 0"):
        PolicyMonitor(every_n_steps=0)
    with pytest.raises(ValueError, match=r"PolicyMonitor: saturation_threshold must be in \(0, 1\), got 1.0"):
        PolicyMonitor(saturation_threshold=1.0)
    with pytest.raises(TypeError, match="PolicyMonitor: saturation_threshold must be a float"):
        PolicyMonitor(saturation_threshold="0.9")
    with pytest.raises(TypeError, match="PolicyMonitor: encoder must be a str or None"):
        PolicyMonitor(encoder=3)
    with pytest.raises(TypeError, match="PolicyMonitor: encoder_input must be callable"):
        PolicyMonitor(encoder_input="embedding")
