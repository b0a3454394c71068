"""What a task adds to its checkpoints so that a resumed fit is the fit it continues.

Lightning saves and restores the weights, optimizer, schedulers, loops and callbacks. Two things
are left to the task:

* **The configuration.** Weights load into any model with the same parameter shapes, so a
  checkpoint of a ``"paper"`` policy layout loads silently into a ``"reference"`` one. Before the
  weights load, :func:`check_compatible_hparams` compares the hyperparameters that define the
  architecture and names every one that differs.
* **The random state.** Dropout masks come from the global generators, which Lightning neither
  saves nor restores; :func:`save_random_state` and :func:`load_random_state` carry them, so a fit
  resumed from an end-of-epoch checkpoint draws the masks the uninterrupted fit draws.

A task wires both in two one-line hooks::

    def on_save_checkpoint(self, checkpoint):
        save_random_state(checkpoint)

    def on_load_checkpoint(self, checkpoint):
        restore_checkpoint(self, checkpoint, ARCHITECTURE_HPARAMS)
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

import lightning as L
import numpy as np
import torch

#: The checkpoint key under which :func:`save_random_state` stores the generators' states.
RANDOM_STATE_KEY = "random_state"


def check_compatible_hparams(
    owner: str, saved: Mapping[str, Any], current: Mapping[str, Any], keys: Iterable[str]
) -> None:
    """Raise if the hyperparameters ``keys`` of a checkpoint differ from the model's.

    A key missing from one side counts as different. Tuples and lists compare equal when their
    items do (a YAML list and a Python tuple are the same setting).

    Args:
        owner: the class name the message starts with.
        saved: the checkpoint's ``"hyper_parameters"``.
        current: the model's ``hparams``.
        keys: the hyperparameters to compare (those that define the architecture).

    Raises:
        ValueError: naming every differing hyperparameter with the checkpoint's and the model's value.
    """
    missing = object()
    differences = []
    for key in keys:
        old = _comparable(saved[key]) if key in saved else missing
        new = _comparable(current[key]) if key in current else missing
        if old != new:
            shown = ["<absent>" if value is missing else repr(value) for value in (old, new)]
            differences.append(f"{key}={shown[0]} in the checkpoint but {key}={shown[1]} in the model")
    if differences:
        raise ValueError(
            f"{owner}: the checkpoint's hyperparameters must match the model's, got {'; '.join(differences)} "
            f"(build the model from the checkpoint with {owner}.load_from_checkpoint, or pass the same arguments)"
        )


def _comparable(value: Any) -> Any:
    return list(value) if isinstance(value, (tuple, list)) else value


def save_random_state(checkpoint: dict[str, Any]) -> None:
    """Store the Python, NumPy and torch (CPU, and CUDA when present) generator states in ``checkpoint``."""
    # NumPy's key array travels as a tensor: Lightning loads checkpoints with torch.load(weights_only=True)
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian)
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    checkpoint[RANDOM_STATE_KEY] = state


def load_random_state(checkpoint: Mapping[str, Any]) -> None:
    """Put back the generator states :func:`save_random_state` stored; a checkpoint without them changes nothing."""
    if RANDOM_STATE_KEY not in checkpoint:
        return
    state = checkpoint[RANDOM_STATE_KEY]
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def restore_checkpoint(module: L.LightningModule, checkpoint: Mapping[str, Any], keys: Iterable[str]) -> None:
    """A task's ``on_load_checkpoint``: check the architecture, and restore the random state when resuming a fit.

    The random state is restored only while a Trainer fits from the checkpoint (``ckpt_path``), never by
    ``load_from_checkpoint`` or an evaluation, which must not reseed the caller's generators.

    Args:
        module: the task the checkpoint loads into.
        checkpoint: the loaded checkpoint.
        keys: the hyperparameters that must match (see :func:`check_compatible_hparams`).

    Raises:
        ValueError: if one of ``keys`` differs between the checkpoint and ``module.hparams``.
    """
    if "hyper_parameters" in checkpoint:  # absent from a checkpoint of a module without save_hyperparameters()
        check_compatible_hparams(type(module).__name__, checkpoint["hyper_parameters"], module.hparams, keys)
    if module._trainer is not None and module.trainer.state.fn == "fit":
        load_random_state(checkpoint)
