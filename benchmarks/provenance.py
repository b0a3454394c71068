"""Where a benchmark's numbers come from: machine, date, torch version and git commit."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

import torch


def _git(*args: str) -> str | None:
    """The output of ``git args`` in the repository, or ``None`` where git or the checkout is missing."""
    try:
        result = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True)
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


#: The tracked files whose changes change the numbers (results files and prose do not).
CODE_PATHS = ("alstm_lightning", "benchmarks/*.py", "pyproject.toml")


def git_commit() -> str:
    """The repository's ``HEAD`` commit, with ``"+uncommitted"`` appended when tracked code differs
    from it (the numbers then come from code no commit holds), or ``"unknown"`` outside a checkout."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return "unknown"
    changed = _git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS)
    return commit + ("+uncommitted" if changed else "")


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
