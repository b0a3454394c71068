"""Subclassing a task: README's worked example, and subclasses with extra arguments, through Python and the CLI."""

from __future__ import annotations

import textwrap

import pytest
import torch
import torch.nn.functional as F
from lightning import Trainer

from alstm_lightning import CharCorpusDataModule, DigitsDataModule, LanguageModelingTask

from .conftest import cli, readme_block

QUICK = ["--trainer.max_steps", "2", "--trainer.limit_val_batches", "2", "--trainer.max_epochs", "1"]


def quiet_trainer(tmp_path, **kwargs) -> Trainer:
    options = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                   enable_checkpointing=False, default_root_dir=tmp_path)
    return Trainer(**(options | kwargs))


def test_readme_example_trains_logs_its_metric_and_reloads(tmp_path):
    pytest.importorskip("sklearn")
    namespace: dict = {}
    exec(compile(readme_block("# my_tasks.py"), "my_tasks.py", "exec"), namespace)
    focal_classifier = namespace["FocalClassifier"]
    data = DigitsDataModule(batch_size=16)
    task = focal_classifier(num_classes=10, input_size=1, hidden_size=8, adapt_size=4, gamma=1.5)
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=2)
    trainer.fit(task, data)
    assert {"val/top2", "val/acc", "val/f1", "val/loss"} <= set(trainer.callback_metrics)
    outputs, targets = torch.randn(5, 10), torch.tensor([0, 3, 9, 1, 1])
    log_p = F.log_softmax(outputs, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(task.loss(outputs, targets), (-((1 - log_p.exp()) ** 1.5) * log_p).mean())
    trainer.save_checkpoint(tmp_path / "focal.ckpt")
    reloaded = focal_classifier.load_from_checkpoint(tmp_path / "focal.ckpt")
    assert reloaded.gamma == 1.5 and reloaded.hparams.num_classes == 10
    with pytest.raises(ValueError, match="FocalClassifier: gamma must be non-negative, got -1"):
        focal_classifier(num_classes=10, input_size=1, gamma=-1)


class DoubledLoss(LanguageModelingTask):
    def loss(self, logits, target):
        return 2 * super().loss(logits, target) + 1.0


def test_a_custom_training_loss_leaves_the_logged_nll_and_metric_the_models(tmp_path):
    (tmp_path / "text.txt").write_text("abcabdabe\n" * 80)
    data = CharCorpusDataModule(paths=str(tmp_path / "text.txt"), batch_size=2, eval_batch_size=2, bptt=8)
    settings = dict(vocab_size=data.vocab_size, level="char", embedding_size=6, hidden_size=8, adapt_size=3,
                    num_layers=1, bptt=8)
    custom = DoubledLoss(**settings)
    plain = LanguageModelingTask(**settings)
    plain.load_state_dict(custom.state_dict())
    results = [quiet_trainer(tmp_path, limit_val_batches=3).validate(model, data)[0] for model in (custom, plain)]
    assert results[0]["val/loss"] == pytest.approx(results[1]["val/loss"], rel=1e-6)
    assert results[0]["val/bpc"] == pytest.approx(results[1]["val/bpc"], rel=1e-6)
    fit = quiet_trainer(tmp_path, max_steps=1, limit_val_batches=1)
    fit.fit(custom, data)
    logged = fit.callback_metrics
    assert float(logged["train/objective_step"]) == pytest.approx(2 * float(logged["train/loss_step"]) + 1.0, rel=1e-5)


SMOOTHED_LM = '''
    import torch.nn.functional as F
    from alstm_lightning import LanguageModelingTask

    class SmoothedLM(LanguageModelingTask):
        def __init__(self, *args, label_smoothing: float = 0.1, **kwargs):
            super().__init__(*args, **kwargs)
            self.label_smoothing = label_smoothing

        def loss(self, logits, target):
            return F.cross_entropy(logits.flatten(0, 1), target.flatten(), label_smoothing=self.label_smoothing)
'''

HEAD_CLASSIFIER = '''
    from torch import nn
    from alstm_lightning import SequenceClassificationTask

    class MyClassifier(SequenceClassificationTask):
        def __init__(self, num_classes: int, head_hidden: int = 8, **kwargs):
            self.head_hidden = head_hidden
            super().__init__(num_classes, **kwargs)

        def build_head(self):
            width = self.num_directions * self.hparams.hidden_size
            return nn.Sequential(nn.Linear(width, self.head_hidden), nn.Tanh(), nn.Linear(self.head_hidden, self.hparams.num_classes))
'''


def test_subclasses_with_extra_arguments_get_the_datamodule_links_through_the_cli(tmp_path):
    (tmp_path / "my_lm.py").write_text(textwrap.dedent(SMOOTHED_LM))
    (tmp_path / "my_classifier.py").write_text(textwrap.dedent(HEAD_CLASSIFIER))
    lm = cli(["fit", "--config", "quickstart", "--model", "my_lm.SmoothedLM", "--model.init_args.label_smoothing", "0.2",
              "--model.init_args.hidden_size", "16", "--trainer.logger", "false", *QUICK], tmp_path)
    assert lm.returncode == 0, lm.stderr[-3000:]
    (last,) = tmp_path.glob("runs/quickstart/version_0/checkpoints/last.ckpt")
    hparams = torch.load(last, weights_only=True)["hyper_parameters"]
    assert hparams["label_smoothing"] == 0.2 and hparams["vocab_size"] > 50 and hparams["level"] == "char"

    classifier = cli(["fit", "--config", "adding_problem", "--model", "my_classifier.MyClassifier",
                      "--model.init_args.head_hidden", "5", "--data.init_args.seq_len", "20", "--trainer.logger", "false",
                      *QUICK], tmp_path)
    assert classifier.returncode == 0, classifier.stderr[-3000:]
    (last,) = tmp_path.glob("runs/adding_problem/version_0/checkpoints/last.ckpt")
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["hyper_parameters"]["head_hidden"] == 5 and checkpoint["hyper_parameters"]["objective"] == "regression"
    assert checkpoint["state_dict"]["head.0.weight"].shape == (5, 64)
