"""Where a benchmark's numbers come from: machine, date, torch version and git commit."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

import torch


def git_commit() -> str:
    """The repository's ``HEAD`` commit, or ``"unknown"`` outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def machine_info(device: torch.device | None = None) -> dict:
    """Platform, processor, Python, CPU count, torch threads and, when given, the device (with its name on CUDA)."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device is not None:
        info["device"] = str(device)
        if device.type == "cuda":
            info["device_name"] = torch.cuda.get_device_name(device)
    return info


def provenance(device: torch.device | None = None) -> dict:
    """The ``machine``, ``date`` (UTC, ISO 8601), ``torch`` and ``git_commit`` entries of a results JSON."""
    return {
        "machine": machine_info(device),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "git_commit": git_commit(),
    }
