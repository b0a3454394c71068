"""A Weights & Biases logger that goes offline, and says so, when no account can be reached."""

from __future__ import annotations

import logging
import netrc
import os
import socket
from typing import Any, Literal
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger

log = logging.getLogger(__name__)

DEFAULT_WANDB_HOST = "https://api.wandb.ai"


def _has_wandb_credentials(host: str) -> bool:
    """Whether an API key is set in the environment or stored in ``~/.netrc`` for ``host``."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(urlparse(host).hostname or host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _can_reach(host: str, timeout: float) -> bool:
    """Whether a TCP connection to ``host`` (a URL) opens within ``timeout`` seconds."""
    parsed = urlparse(host)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wandb_offline_reason(host: str | None = None, timeout: float = 3.0) -> str | None:
    """Why a W&B run should go offline, or ``None`` when it can go online.

    Reasons: ``WANDB_MODE`` is ``offline``/``dryrun``, no API key is configured, or the server
    does not answer within ``timeout`` seconds.
    """
    host = host or os.environ.get("WANDB_BASE_URL", DEFAULT_WANDB_HOST)
    mode = os.environ.get("WANDB_MODE", "")
    if mode in ("offline", "dryrun"):
        return f"WANDB_MODE={mode}"
    if not _has_wandb_credentials(host):
        return "no W&B API key found (set WANDB_API_KEY or run `wandb login`)"
    if not _can_reach(host, timeout):
        return f"{host} is not reachable"
    return None


class AutoOfflineWandbLogger(WandbLogger):
    """Lightning's :class:`~lightning.pytorch.loggers.WandbLogger`, offline when it must be.

    With no API key, or no network, the run is written to ``save_dir`` offline (upload it later with
    ``wandb sync``) instead of failing, and a warning says why. All arguments are those of
    ``WandbLogger``; ``offline=True`` forces offline mode. To turn W&B off entirely, pass
    ``--trainer.logger false`` on the command line.
    """

    def __init__(
        self,
        name: str | None = None,
        save_dir: str = ".",
        version: str | None = None,
        offline: bool = False,
        project: str | None = None,
        log_model: bool | Literal["all"] = False,
        **kwargs: Any,
    ) -> None:
        #: why the run is offline (``"offline=True"`` when asked), or ``None`` when it is online
        self.offline_reason = "offline=True" if offline else wandb_offline_reason()
        if self.offline_reason is not None and not offline:
            log.warning("W&B logging offline: %s. Upload later with `wandb sync`.", self.offline_reason)
            offline = True
        if offline and log_model:
            # WandbLogger refuses log_model with offline runs: keep the run, skip the upload
            log.warning("W&B: log_model=%r ignored for an offline run (checkpoints stay on disk).", log_model)
            log_model = False
        #: whether checkpoints are uploaded as W&B artifacts
        self.uploads_checkpoints = bool(log_model)
        super().__init__(
            name=name, save_dir=save_dir, version=version, offline=offline, project=project, log_model=log_model, **kwargs
        )
