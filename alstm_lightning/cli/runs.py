"""Run directories with readable names: ``<root>/<experiment>/version_<n>/``, one per invocation.

Each holds the run's resolved ``config.yaml``, its ``checkpoints/`` and its logs (W&B's files, or
the CSV / TensorBoard logger's). A fit resumed from a checkpoint of a run continues in that run's
directory. Only the first process of a distributed run creates one; the others learn it from it.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The prefix of the version directories, as Lightning's CSV and TensorBoard loggers name theirs.
VERSION_PREFIX = "version_"
#: The run directories this process created, for :func:`remove_empty_runs` at its end.
_created: list[Path] = []


def is_first_process() -> bool:
    """Whether this is global rank 0 of a run (or a run of one process), read from the launcher's variables."""
    return all(int(os.environ.get(name, "0")) == 0 for name in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def new_run_directory(root: str | os.PathLike, experiment: str) -> Path:
    """``root/experiment/version_<n>`` with the first free ``n``, created (atomically: concurrent runs get others).

    In a process that is not the first of a distributed run, nothing is created and the path is only
    a placeholder: every use of it is broadcast from the first process.
    """
    base = Path(root) / experiment
    taken = [int(p.name[len(VERSION_PREFIX):]) for p in base.glob(f"{VERSION_PREFIX}*") if p.name[len(VERSION_PREFIX):].isdigit()]
    version = max(taken, default=-1) + 1
    if not is_first_process():
        return base / f"{VERSION_PREFIX}{version}"
    base.mkdir(parents=True, exist_ok=True)
    while True:
        candidate = base / f"{VERSION_PREFIX}{version}"
        try:
            candidate.mkdir()
        except FileExistsError:
            version += 1
            continue
        _created.append(candidate)
        return candidate


def run_directory_of(checkpoint: str | os.PathLike) -> Path | None:
    """The run directory a checkpoint was written to (``<run>/checkpoints/<file>``), or ``None``."""
    path = Path(checkpoint).resolve()
    if path.parent.name == "checkpoints" and path.parent.parent.name.startswith(VERSION_PREFIX):
        return path.parent.parent
    return None


def remove_empty_runs() -> None:
    """Remove the run directories this process created and nothing was written to (a run that failed early),
    and their experiment directories when those are empty too."""
    for directory in _created:
        for path in (directory, directory.parent):
            try:
                path.rmdir()
            except OSError:
                break
    _created.clear()
