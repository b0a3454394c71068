"""Shared fixtures: deterministic seeds, offline W&B, and the real corpora beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

#: Where the real corpora live: ``$ALSTM_DATA_DIR``, else ``../shared/data`` beside the repository.
SHARED_DATA = Path(os.environ.get("ALSTM_DATA_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def shared_data() -> Path:
    """The directory of real corpora; the test is skipped with the reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real corpora not found at {SHARED_DATA} (set ALSTM_DATA_DIR to their directory)")
    return SHARED_DATA


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device", default="cpu", help="device for the tests that take the `device` fixture: cpu (default) or cuda"
    )


@pytest.fixture
def device(request: pytest.FixtureRequest) -> torch.device:
    """The device given by ``--device``; the test is skipped with the reason when CUDA is asked for and absent."""
    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(f"--device {name} asked for, but CUDA is not available")
    return torch.device(name)
