"""LanguageModelingTask with AWD-LSTM: the encoder, plain SGD, and the fine-tuning start from a checkpoint."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from alstm_lightning.layers import AWDLSTM
from alstm_lightning.tasks import LanguageModelingTask, make_encoder

V, E, H = 11, 6, 8


def awd_task(**kwargs) -> LanguageModelingTask:
    settings = dict(vocab_size=V, encoder="awd_lstm", embedding_size=E, hidden_size=H, num_layers=3, bptt=5,
                    weight_dropout=0.5, ar_alpha=2.0, tar_beta=1.0, optimizer="sgd", lr=1.0)
    return LanguageModelingTask(**{**settings, **kwargs})


def batches(n: int = 4) -> DataLoader:
    """n consecutive (input, target) windows of (T=5, B=2) over one fixed stream."""
    stream = torch.arange(5 * n + 1).remainder(V).repeat(2, 1).T  # (5n+1, 2)
    windows = [(stream[5 * i : 5 * i + 5], stream[5 * i + 1 : 5 * i + 6]) for i in range(n)]
    return DataLoader(windows, batch_size=None)


def trainer(tmp_path, **kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, **kwargs,
    )


class WeightsAtTrainStart(L.Callback):
    """Keeps a copy of the module's state_dict as the first training step sees it."""

    def on_train_start(self, trainer, pl_module):
        self.weights = {name: value.clone() for name, value in pl_module.state_dict().items()}


def assert_same_weights(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], msg=name)


def differs(a: dict, b: dict) -> bool:
    return any(not torch.equal(a[name], b[name]) for name in a)


def test_make_encoder_builds_awd_lstm():
    encoder = make_encoder("awd_lstm", E, H, adapt_size=1, output_size=E, num_layers=3, dropout=0.25,
                           weight_dropout=0.5)
    assert isinstance(encoder, AWDLSTM)
    assert encoder.layer_sizes == (H, H, E)
    assert encoder.dropout == 0.25 and encoder.weight_dropout == 0.5
    with pytest.raises(ValueError, match="bidirectional must be False for the encoder 'awd_lstm'"):
        make_encoder("awd_lstm", E, H, adapt_size=1, bidirectional=True)
    with pytest.raises(ValueError, match="weight_dropout must be 0 unless the encoder is .awd_lstm."):
        make_encoder("lstm", E, H, adapt_size=1, weight_dropout=0.5)


def test_task_with_awd_lstm_trains_with_plain_sgd(tmp_path):
    task = awd_task()
    assert isinstance(task.encoder, AWDLSTM) and task.encoder.weight_dropout == 0.5
    assert task.encoder.layer_sizes == (H, H, E)
    optimizer = task.configure_optimizers()["optimizer"]
    assert type(optimizer) is torch.optim.SGD
    assert optimizer.defaults["lr"] == 1.0 and optimizer.defaults["weight_decay"] == 1e-6
    assert optimizer.defaults["momentum"] == 0
    before = {name: value.clone() for name, value in task.state_dict().items()}
    fit = trainer(tmp_path, max_steps=3)
    fit.fit(task, batches())
    # the carried state, as checkpoints keep it: one (h, c) pair per layer, plain tensors
    fit.save_checkpoint(tmp_path / "carried.ckpt")
    state = torch.load(tmp_path / "carried.ckpt", weights_only=True)["truncated_bptt_train_state"]["tensors"]
    assert isinstance(state, list) and len(state) == 3 and [h.shape[-1] for h, _ in state] == [H, H, E]
    after = task.state_dict()
    assert differs(before, after) and all(torch.isfinite(value).all() for value in after.values())


def test_adam_stays_the_default():
    optimizer = awd_task(optimizer="adam", lr=3e-3).configure_optimizers()["optimizer"]
    assert type(optimizer) is torch.optim.Adam and optimizer.defaults["betas"] == (0.0, 0.999)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"encoder": "lstm"}, ValueError, "weight_dropout must be 0 unless the encoder is .awd_lstm."),
        ({"weight_dropout": 1.0}, ValueError, "weight_dropout"),
        ({"optimizer": "rmsprop"}, ValueError, "optimizer must be one of"),
        ({"init_checkpoint": 3}, TypeError, "init_checkpoint must be a str"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        awd_task(**kwargs)


@pytest.fixture
def source_checkpoint(tmp_path):
    """A checkpoint of a task trained one step, and its state_dict."""
    torch.manual_seed(1)
    source = awd_task()
    run = trainer(tmp_path / "source", max_steps=1)
    run.fit(source, batches())
    path = tmp_path / "source.ckpt"
    run.save_checkpoint(path)
    return path, {name: value.clone() for name, value in source.state_dict().items()}


def test_init_checkpoint_is_loaded_when_a_fit_starts_not_before_nor_on_resume(tmp_path, source_checkpoint):
    path, source_weights = source_checkpoint
    # the fine-tuning run: built from its own initialisation, started from the source's weights
    finetuned = awd_task(init_checkpoint=str(path))
    assert differs(finetuned.state_dict(), source_weights), "init_checkpoint must not be loaded in __init__"
    seen = WeightsAtTrainStart()
    run = trainer(tmp_path / "finetune", max_steps=2, callbacks=[seen])
    run.fit(finetuned, batches())
    assert_same_weights(seen.weights, source_weights)
    resume_path = tmp_path / "finetuned.ckpt"
    run.save_checkpoint(resume_path)
    finetuned_weights = {name: value.clone() for name, value in finetuned.state_dict().items()}
    assert differs(finetuned_weights, source_weights)

    # neither resuming nor load_from_checkpoint reads init_checkpoint again: it may be gone by then
    path.unlink()
    resumed = awd_task(init_checkpoint=str(path))
    seen = WeightsAtTrainStart()
    trainer(tmp_path / "resume", max_steps=3, callbacks=[seen]).fit(resumed, batches(), ckpt_path=resume_path)
    assert_same_weights(seen.weights, finetuned_weights)

    loaded = LanguageModelingTask.load_from_checkpoint(resume_path)
    assert loaded.hparams.init_checkpoint == str(path)
    seen = WeightsAtTrainStart()
    trainer(tmp_path / "again", max_steps=1, callbacks=[seen]).fit(loaded, batches())
    assert_same_weights(seen.weights, finetuned_weights)


def test_missing_init_checkpoint_fails_when_the_fit_starts(tmp_path):
    missing = tmp_path / "nowhere.ckpt"
    task = awd_task(init_checkpoint=str(missing))
    with pytest.raises(FileNotFoundError, match=f"init_checkpoint must be an existing checkpoint file, got '{missing}'"):
        trainer(tmp_path, max_steps=1).fit(task, batches())


def test_init_checkpoint_of_another_architecture_names_the_mismatches(tmp_path, source_checkpoint):
    path, _ = source_checkpoint
    wider = awd_task(hidden_size=H + 2)
    with pytest.raises(ValueError, match=f"hidden_size={H} in the checkpoint but hidden_size={H + 2} in the model"):
        wider.load_init_checkpoint(str(path))
    with pytest.raises(ValueError, match="num_layers=3 in the checkpoint but num_layers=2 in the model"):
        awd_task(num_layers=2).load_init_checkpoint(str(path))
    # without hyperparameters (a checkpoint of a module that saved none) the parameters are compared
    bare = tmp_path / "bare.ckpt"
    torch.save({k: v for k, v in torch.load(path, weights_only=False).items() if k != "hyper_parameters"}, bare)
    with pytest.raises(ValueError, match=r"init_checkpoint must hold this model's parameters.*shape mismatch.*"
                                         r"encoder\.layers\.0\.weight_ih_l0 \(32, 6\) \(model: \(40, 6\)\)"):
        wider.load_init_checkpoint(str(bare))
    with pytest.raises(ValueError, match=r"unexpected \['encoder\.layers\.2\.bias_hh_l0'"):
        awd_task(num_layers=2).load_init_checkpoint(str(bare))
    not_a_checkpoint = tmp_path / "weights.pt"
    torch.save({"weights": torch.zeros(1)}, not_a_checkpoint)
    with pytest.raises(ValueError, match="init_checkpoint must be a Lightning checkpoint with a state_dict"):
        awd_task().load_init_checkpoint(str(not_a_checkpoint))
