"""The shipped recipes: where they are, what each trains (its first comment line), and ``--config NAME``."""

from __future__ import annotations

import sysconfig
from pathlib import Path

#: Where the recipes are, in this order: a source checkout (``recipes/`` beside the package), then an
#: installed wheel's data files (``share/alstm-lightning/recipes``).
RECIPE_DIRECTORIES = (
    Path(__file__).resolve().parents[2] / "recipes",
    Path(sysconfig.get_paths()["data"]) / "share" / "alstm-lightning" / "recipes",
)


def shipped_recipes() -> dict[str, Path]:
    """Each shipped recipe's name (its file name without ``.yaml``) and path, in name order."""
    for directory in RECIPE_DIRECTORIES:
        found = sorted(directory.glob("*.yaml"))
        if found:
            return {path.stem: path for path in found}
    return {}


def recipe_summary(path: Path) -> str:
    """The first line of a recipe's header comment: what it trains."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") and line.strip("# ").strip():
            return line.strip("# ").strip()
    return ""


def _config_values(argv: list[str]) -> list[tuple[int, str, bool]]:
    """Each ``--config`` value of ``argv``: ``(index of the word holding it, the value, whether the word is
    --config=VALUE)``, for ``--config VALUE``, ``-c VALUE`` and ``--config=VALUE``."""
    values = []
    for k, argument in enumerate(argv):
        if argument.startswith("--config="):
            values.append((k, argument.split("=", 1)[1], True))
        elif argument in ("--config", "-c") and k + 1 < len(argv):
            values.append((k + 1, argv[k + 1], False))
    return values


def resolve_recipe_names(argv: list[str]) -> list[str]:
    """``argv`` with each ``--config NAME`` (``-c NAME``, ``--config=NAME``) of a shipped recipe given its path.

    A value that is an existing file, or is not a recipe name, is left as it is (the parser then
    says the file does not exist).
    """
    recipes = shipped_recipes()
    resolved = list(argv)
    for k, name, inline in _config_values(argv):
        recipe = recipes.get(name.removesuffix(".yaml"))
        if recipe is not None and not Path(name).is_file():
            resolved[k] = f"--config={recipe}" if inline else str(recipe)
    return resolved
