"""What the tasks add to their checkpoints, and how they read them, so that a checkpoint is the run it continues.

Lightning saves and restores the weights, optimizer, schedulers, loops and callbacks. The rest is
here, plain functions a task calls from its hooks:

* **Reading.** :func:`read_checkpoint` refuses a file that is missing, empty, truncated or
  corrupt with its path, before anything is unpickled; checkpoints are plain data (tensors, lists,
  dicts, strings), read with ``torch.load(weights_only=True)``: using one never runs code.
* **The configuration.** Weights load into any model with the same parameter shapes, so a
  checkpoint of a ``"paper"`` policy layout loads silently into a ``"reference"`` one. Before the
  weights load, :func:`check_compatible_hparams` compares the hyperparameters that define the
  architecture and names every one that differs.
* **The data.** A model is only meaningful with the vocabulary (and labels, and tokenizer) it was
  trained on. :data:`DATA_KEY` keeps them, as plain data, so that ``load_from_checkpoint`` alone
  can encode and decode text; :func:`check_same_data` refuses a DataModule whose vocabulary differs
  from the checkpoint's, even at the same size.
* **The random state.** Dropout masks come from the global generators, which Lightning neither
  saves nor restores; :func:`save_random_state` and :func:`load_random_state` carry them, so a fit
  resumed from a checkpoint draws the masks the uninterrupted fit draws.
* **The fine-tuning start.** :func:`load_init_weights` loads only the weights of a checkpoint of
  the same architecture (AWD-LSTM's second stage), naming every mismatch.
"""

from __future__ import annotations

import os
import random
import zipfile
from collections.abc import Iterable, Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_info

#: The checkpoint key under which :func:`save_random_state` stores the generators' states.
RANDOM_STATE_KEY = "random_state"
#: The checkpoint key of what a task needs to read and write text: vocabulary, labels, tokenizer.
DATA_KEY = "alstm_lightning_data"


def read_checkpoint(owner: str, path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint file with ``torch.load(weights_only=True)``, refusing an unreadable one by its path.

    Raises:
        FileNotFoundError: if there is no file at ``path``.
        ValueError: if the file is empty, truncated or corrupt (not a whole ``torch.save`` archive),
            or holds something other than a checkpoint dict.
    """
    check_checkpoint_file(owner, path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # any failure to unpickle means the file is not what it claims
        raise ValueError(
            f"{owner}: the checkpoint {str(path)!r} must be a readable torch checkpoint, got one torch.load cannot "
            f"read: it is truncated or corrupt ({type(error).__name__}: {str(error).splitlines()[0]})"
        ) from error
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{owner}: the checkpoint {str(path)!r} must hold a dict, got {type(checkpoint).__name__}")
    return checkpoint


def check_checkpoint_file(owner: str, path: str | os.PathLike) -> None:
    """Raise unless ``path`` is a non-empty, complete ``torch.save`` archive (a zip whose every member checks).

    Reading every member's CRC finds a file cut short by a full disk or a killed writer without
    unpickling anything.

    Raises:
        FileNotFoundError: if there is no file at ``path``.
        ValueError: naming the file and the words truncated or corrupt.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{owner}: the checkpoint must be an existing file, got {str(path)!r}")
    size = os.path.getsize(path)
    if size == 0:
        raise ValueError(f"{owner}: the checkpoint {str(path)!r} must hold data, got an empty file: it is truncated")
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ValueError(
            f"{owner}: the checkpoint {str(path)!r} must be a whole torch checkpoint, got {size} bytes that are not: "
            f"it is truncated or corrupt ({type(error).__name__}: {error})"
        ) from error
    if broken is not None:
        raise ValueError(
            f"{owner}: the checkpoint {str(path)!r} must be a whole torch checkpoint, got a damaged member {broken!r}: "
            "it is truncated or corrupt"
        )


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


def check_same_data(owner: str, what: str, saved: Any, current: Any, difference: str | None) -> None:
    """Raise if the data a checkpoint was trained on (its ``what``: vocabulary, labels) differs from the DataModule's.

    Args:
        owner: the class name the message starts with.
        what: what is compared, e.g. ``"vocabulary"``.
        saved: the checkpoint's value; ``None`` (a checkpoint of an earlier version) is not checked.
        current: the DataModule's value; ``None`` (a DataModule without one) is not checked.
        difference: where the two differ, in words, or ``None`` when they are equal.

    Raises:
        ValueError: naming both and where they differ.
    """
    if saved is None or current is None or difference is None:
        return
    raise ValueError(
        f"{owner}: the DataModule's {what} must be the one the checkpoint was trained with, got another "
        f"({difference}: checkpoint vs DataModule); a model scores text only with its own {what}"
    )


def random_state() -> dict[str, Any]:
    """The Python, NumPy and torch (CPU, and CUDA when present) generator states, as plain data.

    NumPy's key array travels as a tensor, so the state can be saved in a checkpoint that Lightning
    loads with ``torch.load(weights_only=True)``.
    """
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian)
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: Mapping[str, Any]) -> None:
    """Put back generator states that :func:`random_state` returned."""
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_random_state(checkpoint: dict[str, Any]) -> None:
    """Store the generators' states (:func:`random_state`) in ``checkpoint``."""
    checkpoint[RANDOM_STATE_KEY] = random_state()


def load_random_state(checkpoint: Mapping[str, Any]) -> None:
    """Put back the generator states :func:`save_random_state` stored; a checkpoint without them changes nothing."""
    if RANDOM_STATE_KEY in checkpoint:
        set_random_state(checkpoint[RANDOM_STATE_KEY])


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
    if is_fitting(module):
        load_random_state(checkpoint)


def reload_random_state_mid_epoch(module: L.LightningModule, checkpoint: Mapping[str, Any] | None) -> bool:
    """In a fit resumed mid-epoch, put the checkpoint's random state back once more; return whether it did.

    Call it from ``on_train_start``. The state was put back when the checkpoint loaded, but since
    then Lightning has built a new iterator over the training batches, which draws a seed from the
    global generator; the uninterrupted fit drew it at the epoch's start, before the checkpoint was
    written. At an epoch boundary there is nothing to do: the new epoch's iterator is drawn anyway.
    """
    if checkpoint is None or not module.trainer.fit_loop.restarted_mid_epoch:
        return False
    load_random_state(checkpoint)
    return True


def is_fitting(module: L.LightningModule) -> bool:
    """Whether ``module`` is attached to a Trainer that is running ``fit``."""
    return module._trainer is not None and module.trainer.state.fn == "fit"


def load_init_weights(module: L.LightningModule, path: str, keys: Iterable[str]) -> None:
    """Load the weights (the ``state_dict`` only: no optimizer, epoch or callback state) of a checkpoint into ``module``.

    Args:
        module: the task; its ``hparams`` are compared with the checkpoint's on ``keys``.
        path: a local Lightning checkpoint of a model of this architecture.
        keys: the hyperparameters that define the architecture.

    Raises:
        FileNotFoundError: if there is no file at ``path``.
        ValueError: if the file is unreadable, holds no ``state_dict``, parameters whose names or shapes
            differ from the module's (all of them are named), or architecture hyperparameters that differ.
    """
    owner = type(module).__name__
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{owner}: init_checkpoint must be an existing checkpoint file, got {path!r} (the checkpoint of the "
            "run to start from: fit that run first, or pass its path)"
        )
    checkpoint = read_checkpoint(owner, path)
    if "state_dict" not in checkpoint:
        raise ValueError(f"{owner}: init_checkpoint must be a Lightning checkpoint with a state_dict, got {path!r}")
    if "hyper_parameters" in checkpoint:  # a checkpoint of the same parameter shapes may still differ
        check_compatible_hparams(owner, checkpoint["hyper_parameters"], module.hparams, keys)
    loaded, own = checkpoint["state_dict"], module.state_dict()
    problems = []
    if missing := sorted(own.keys() - loaded.keys()):
        problems.append(f"missing {missing}")
    if unexpected := sorted(loaded.keys() - own.keys()):
        problems.append(f"unexpected {unexpected}")
    if mismatched := [
        f"{name} {tuple(loaded[name].shape)} (model: {tuple(own[name].shape)})"
        for name in sorted(own.keys() & loaded.keys())
        if loaded[name].shape != own[name].shape
    ]:
        problems.append(f"shape mismatch {mismatched}")
    if problems:
        raise ValueError(
            f"{owner}: init_checkpoint must hold this model's parameters, got {path!r} with " + "; ".join(problems)
        )
    module.load_state_dict(loaded)
    rank_zero_info(f"{owner}: loaded the weights of init_checkpoint={path!r}")
