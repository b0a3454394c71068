"""``--config NAME`` of a shipped recipe, in each of its spellings, becomes the recipe's path."""

from __future__ import annotations

from alstm_lightning.cli.recipes import resolve_recipe_names, shipped_recipes


def test_each_spelling_of_a_recipe_name_becomes_its_path():
    path = str(shipped_recipes()["quickstart"])
    assert resolve_recipe_names(["fit", "--config", "quickstart"]) == ["fit", "--config", path]
    assert resolve_recipe_names(["fit", "-c", "quickstart.yaml"]) == ["fit", "-c", path]
    assert resolve_recipe_names(["fit", "--config=quickstart"]) == ["fit", f"--config={path}"]


def test_files_and_unknown_names_are_left_for_the_parser(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quickstart.yaml").write_text("trainer: {}\n")
    argv = ["fit", "--config", "quickstart.yaml", "--config=nonexistent", "-c"]
    assert resolve_recipe_names(argv) == argv
