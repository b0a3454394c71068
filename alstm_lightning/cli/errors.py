"""Errors on one screen: a mistake in a command line, a config or the data is reported in a few lines, not a traceback.

Three kinds are shortened:

* argument errors of the parser (a mistyped key, a value of the wrong type): the message without
  jsonargparse's ``Union`` bookkeeping, and for an unknown key the nearest valid ones;
* errors our classes raise while they are built or while they run (``<Class>: <what> must be
  <expected>, got <actual>``): recorded where they are raised (:func:`record_user_error`), so they
  are reported as raised, not inside the link or ``Union`` message jsonargparse wraps them in;
* any ``ValueError``, ``TypeError`` or ``OSError`` raised from inside this package.

Anything else (a bug) keeps its whole traceback, and ``ALSTM_TRACEBACK=1`` shows the traceback of
every error.
"""

from __future__ import annotations

import difflib
import os
import re
import traceback
from pathlib import Path

#: Set this environment variable to 1 to see every error's traceback.
TRACEBACK_VARIABLE = "ALSTM_TRACEBACK"
#: The errors a user's setting or data can cause, reported in one message.
USER_ERRORS = (ValueError, TypeError, OSError, ImportError)

_PACKAGE = str(Path(__file__).resolve().parents[1])
_recorded: list[BaseException] = []


def record_user_error(error: BaseException) -> None:
    """Remember ``error`` (the first one only) as the root cause to report, before others wrap it."""
    if not _recorded:
        _recorded.append(error)


def recorded_user_error() -> BaseException | None:
    """The first error :func:`record_user_error` was given in this process, if any."""
    return _recorded[0] if _recorded else None


def show_tracebacks() -> bool:
    """Whether ``ALSTM_TRACEBACK=1`` asks for the traceback of every error."""
    return os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0")


def raised_here(error: BaseException) -> bool:
    """Whether the innermost frame of ``error``'s traceback lies in this package (our own checks raised it)."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and frames[-1].filename.startswith(_PACKAGE)


def user_error_message(error: BaseException) -> str | None:
    """The one-screen message of ``error`` when it is a user's mistake (see the module docstring), else ``None``."""
    root = recorded_user_error() or error
    if isinstance(root, USER_ERRORS) and (root is not error or raised_here(root)):
        return f"{type(root).__name__}: {root}"
    if isinstance(error, USER_ERRORS) and raised_here(error):
        return f"{type(error).__name__}: {error}"
    return None


_NOISE = (
    re.compile(r"^\s*Does not validate against any of the Union subtypes\s*$"),
    re.compile(r"^\s*Subtypes: \[.*\]\s*$"),
    re.compile(r"^\s*Errors:\s*$"),
    re.compile(r"^\s*- Expected a <class 'NoneType'>\s*$"),
    re.compile(r"^\s*Given value type: .*$"),
)
_UNKNOWN_OPTION = re.compile(r"Problem with given class_path '([\w.]+)':\s*\n\s*Option '(\w+)' is not accepted")
_UNEXPECTED_KEY = re.compile(r"(?:Key|key) '([\w.]+)' is not expected|[Uu]nrecognized arguments: (--[\w.]+)")
_WRONG_TYPE = re.compile(r'Parser key "([\w.]+)":(?s:.*?)((?:\n\s*- Expected a <class \'\w+\'>)+)(?s:.*?)Given value: (.*)')
_MISSING_CONFIG = re.compile(r'Parser key "config": File does not exist: (.*)')


def argument_error_message(message: str, known_keys: list[str]) -> str:
    """A parser error in a few lines: jsonargparse's ``Union`` bookkeeping left out, unknown keys with suggestions.

    Args:
        message: the parser's error message.
        known_keys: the parser's own keys (``trainer.max_epochs`` ...), for suggestions.
    """
    unknown = _UNKNOWN_OPTION.search(message)
    if unknown:
        class_path, option = unknown.groups()
        suggestions = difflib.get_close_matches(option, sorted(_class_arguments(class_path)), n=3)
        hint = f"; did you mean {' or '.join(suggestions)}?" if suggestions else ""
        return (
            f"{option!r} is not an argument of {class_path.rsplit('.', 1)[-1]}{hint} "
            f"(--help with the config lists every argument)"
        )
    unexpected = _UNEXPECTED_KEY.search(message)
    if unexpected:
        key = (unexpected.group(1) or unexpected.group(2)).lstrip("-")
        suggestions = difflib.get_close_matches(key, known_keys, n=3)
        hint = f"; did you mean {' or '.join('--' + s for s in suggestions)}?" if suggestions else ""
        return f"--{key} is not an argument{hint}"
    wrong = _WRONG_TYPE.search(message)
    if wrong:
        key, expected, given = wrong.groups()
        types = [t.replace("NoneType", "None") for t in re.findall(r"<class '(\w+)'>", expected)]
        return f"--{key} must be {' or '.join(types)}, got {given.strip()!r}"
    missing = _MISSING_CONFIG.search(message)
    if missing:
        from .recipes import shipped_recipes

        return f"--config must be a YAML file or a shipped recipe ({', '.join(shipped_recipes())}), got {missing.group(1)}"
    lines = [line for line in message.splitlines() if line.strip() and not any(p.match(line) for p in _NOISE)]
    return "\n".join(lines)


def _class_arguments(class_path: str) -> set[str]:
    """The arguments the class at ``class_path`` accepts, or none when it cannot be imported."""
    from .links import accepted_arguments, import_class

    try:
        return accepted_arguments(import_class(class_path))
    except (ImportError, AttributeError, ValueError, TypeError):
        return set()
