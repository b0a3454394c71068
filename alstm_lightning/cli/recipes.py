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


def resolve_recipe_names(argv: list[str]) -> list[str]:
    """``argv`` with each ``--config NAME`` (``-c NAME``, ``--config=NAME``) of a shipped recipe given its path.

    A value that is an existing file, or is not a recipe name, is left as it is (the parser then
    says the file does not exist).
    """
    recipes = shipped_recipes()
    resolved = list(argv)
    for k, argument in enumerate(resolved):
        if argument.startswith("--config="):
            name = argument.split("=", 1)[1]
            if not Path(name).is_file() and name.removesuffix(".yaml") in recipes:
                resolved[k] = f"--config={recipes[name.removesuffix('.yaml')]}"
        elif argument in ("--config", "-c") and k + 1 < len(resolved):
            name = resolved[k + 1]
            if not Path(name).is_file() and name.removesuffix(".yaml") in recipes:
                resolved[k + 1] = str(recipes[name.removesuffix(".yaml")])
    return resolved


def config_stem(argv: list[str]) -> str | None:
    """The file name (without suffix) of the first ``--config`` in ``argv``, the default experiment name."""
    for k, argument in enumerate(argv):
        if argument.startswith("--config="):
            return Path(argument.split("=", 1)[1]).stem
        if argument in ("--config", "-c") and k + 1 < len(argv):
            return Path(argv[k + 1]).stem
    return None
