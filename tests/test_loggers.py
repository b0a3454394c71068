"""The W&B logger goes offline, and says why, instead of failing."""

import logging

import pytest

from alstm_lightning.loggers import AutoOfflineWandbLogger, wandb_offline_reason


@pytest.fixture
def no_wandb_account(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc


def test_no_api_key_means_offline(no_wandb_account):
    assert "no W&B API key" in wandb_offline_reason()


def test_unreachable_server_means_offline(no_wandb_account, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    # port 9 (discard) on loopback: nothing listens there, the connection is refused at once
    assert wandb_offline_reason(host="http://127.0.0.1:9", timeout=1.0) == "http://127.0.0.1:9 is not reachable"


def test_wandb_mode_offline_is_respected(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_offline_reason() == "WANDB_MODE=offline"


def test_logger_goes_offline_and_says_so(no_wandb_account, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="alstm_lightning.loggers"):
        logger = AutoOfflineWandbLogger(save_dir=str(tmp_path), log_model=True)
    assert logger.offline_reason.startswith("no W&B API key found")
    assert logger.uploads_checkpoints is False
    assert "W&B logging offline: no W&B API key found" in caplog.text
    assert "log_model=True ignored for an offline run" in caplog.text
