"""What reaches a task from its DataModule: the linked attributes, the class a ``class_path`` names,
and the arguments a class accepts."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from lightning.pytorch.cli import _InstantiatorFn

from .errors import record_user_error

#: DataModule attributes passed to the task's ``__init__`` argument of the same name, when both exist.
LINKED_DATA_ATTRIBUTES = ("vocab_size", "level", "bptt", "input_size", "pad_index", "num_classes", "objective")
#: Earlier names of linked attributes, read when a (user's) DataModule has only those.
_LINK_ALIASES = {"objective": "task"}


def linked_value(datamodule: Any, name: str) -> Any:
    """The value of the DataModule attribute ``name`` (or its earlier name), ``None`` when it has neither.

    An error while computing it (a missing corpus file, a bad text) is recorded for the
    one-screen report (:mod:`.errors`) before jsonargparse wraps it in its link message.
    """
    try:
        if hasattr(datamodule, name):
            return getattr(datamodule, name)
        return getattr(datamodule, _LINK_ALIASES[name], None) if name in _LINK_ALIASES else None
    except BaseException as error:
        record_user_error(error)
        raise


def import_class(class_path: str) -> Any:
    """The object a dotted ``class_path`` (``package.module.Name``) names, imported.

    Raises:
        ImportError: if the module cannot be imported.
        AttributeError: if the module has no such name.
    """
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def accepted_arguments(cls: type) -> set[str]:
    """The keyword arguments ``cls(...)`` accepts, following ``**kwargs`` up the class hierarchy.

    A subclass written ``def __init__(self, *args, extra=1, **kwargs): super().__init__(*args, **kwargs)``
    accepts ``extra`` and everything its parent's ``__init__`` accepts: the parents are read until
    one without ``**kwargs``.
    """
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(vars(klass)["__init__"]).parameters.values()
        names |= {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return names


class LinkedArgumentsInstantiator(_InstantiatorFn):
    """Lightning's instantiator, recording only the linked values the class accepts, and our errors.

    Every task receives the links of :data:`LINKED_DATA_ATTRIBUTES` that its ``__init__`` names (or
    accepts through ``**kwargs``, see :func:`accepted_arguments`); without this filter the others
    (e.g. ``level`` for a classification task) would land in its saved hyperparameters and break
    ``load_from_checkpoint``. An error raised by the class's ``__init__`` (a bad value, a missing
    file) is recorded for the one-screen report.
    """

    def __call__(self, class_type: type, *args: Any, applied_instantiation_links: dict, **kwargs: Any) -> Any:
        accepted = accepted_arguments(class_type)
        links = {k: v for k, v in applied_instantiation_links.items() if k.rsplit(".", 1)[-1] in accepted}
        try:
            return super().__call__(class_type, *args, applied_instantiation_links=links, **kwargs)
        except BaseException as error:
            record_user_error(error)
            raise
